"""CI's skip policy (tests/skip_policy.py) refuses a skip it does not accept, in a real pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from skip_policy import ACCEPTED_SKIP_REASONS, REFUSE_VARIABLE

TESTS_DIR = Path(__file__).resolve().parent


def run_pytest(tmp_path: Path, reason: str, refuse: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n"
        "def test_passes():\n    assert True\n\n"
        f"def test_skips():\n    pytest.skip({reason!r})\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != REFUSE_VARIABLE}
    env["PYTHONPATH"] = str(TESTS_DIR)
    if refuse:
        env[REFUSE_VARIABLE] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "skip_policy", "-p", "no:cacheprovider", "-q",
                           "test_sample.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_ci_fails_on_a_skip_it_does_not_accept_and_names_it(tmp_path):
    refused = run_pytest(tmp_path, "module lakehouse_utils.bronze_batch not importable", refuse=True)
    assert refused.returncode == 1, refused.stdout
    assert "test_sample.py::test_skips: module lakehouse_utils.bronze_batch not importable" in refused.stdout
    accepted = run_pytest(tmp_path, f"{ACCEPTED_SKIP_REASONS[0]} at /x (set COURSE_LANDING_DIR)", refuse=True)
    assert accepted.returncode == 0, accepted.stdout
    developer = run_pytest(tmp_path, "anything at all", refuse=False)  # outside CI a skip stays a skip
    assert developer.returncode == 0, developer.stdout
