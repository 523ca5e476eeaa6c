"""A pytest plugin for CI: a skip must have a reason CI accepts, or the run fails.

A skip is silent: a test that guards itself with a stale `importorskip` or a missing fixture
reports "s" for ever while proving nothing (it happened: ADR 153, session 12). With
`TESTS_REFUSE_SKIPS=1` (set by `.ci/run`), every skip whose reason is not listed in
`ACCEPTED_SKIP_REASONS` fails the run, and the summary names the test and its reason.
"""

from __future__ import annotations

import os

import pytest

REFUSE_VARIABLE = "TESTS_REFUSE_SKIPS"
# The course dataset is not part of a clone (../shared is outside the project); nothing else may skip.
ACCEPTED_SKIP_REASONS = ("course dataset not found",)

_refused: list[tuple[str, str]] = []


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = skip_reason(report)
        if not any(accepted in reason for accepted in ACCEPTED_SKIP_REASONS):
            _refused.append((report.nodeid, reason))


def pytest_terminal_summary(terminalreporter) -> None:
    if _refused and os.environ.get(REFUSE_VARIABLE):
        terminalreporter.section(f"skips refused ({REFUSE_VARIABLE} is set)", red=True)
        for nodeid, reason in _refused:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(f"only these reasons may skip: {', '.join(ACCEPTED_SKIP_REASONS)}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _refused and os.environ.get(REFUSE_VARIABLE) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
