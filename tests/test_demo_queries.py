"""cql/demo_queries.cql runs through the real cqlsh client (PyPI) and every query returns rows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_of_lake

from lakehouse_utils.config import Settings
from lakehouse_utils.serving.connection import CQL_DIR, CassandraTarget, open_session, split_statements

DEMO_FILE = CQL_DIR / "demo_queries.cql"
CQLSH = Path(sys.executable).parent / "cqlsh"
USE_LINE = "USE cloud_analytics;"
# The course-data literals of the file -> values that exist in the small Gold of tests/serving_gold.py.
SMALL_GOLD_VALUES = {
    "'org_53lc58dr'": "'org_a'", "'org_d14ve92m'": "'org_b'", "'org_pbhsahxt'": "'org_a'",
    "usage_month = '2025-08'": "usage_month = '2025-07'", "created_month = '2025-08'": "created_month = '2025-07'",
    "'2025-08-25'": "'2025-07-25'", "'2025-08-31'": "'2025-07-31'", "'2025-08-02'": "'2025-07-02'",
}


def _cqlsh(host: str, port: int, script: Path) -> subprocess.CompletedProcess:
    if not CQLSH.exists():
        pytest.skip(f"cqlsh not found next to {sys.executable}: pip install -r requirements-dev.txt")
    return subprocess.run([str(CQLSH), host, str(port), "-f", str(script)], capture_output=True, text=True, timeout=180)


def _row_counts(output: str) -> list[int]:
    """cqlsh prints '(N rows)' after each SELECT."""
    return [int(n) for n in re.findall(r"^\((\d+) rows?\)$", output, flags=re.MULTILINE)]


def _run_file(text: str, keyspace: str, endpoint: tuple[str, int], tmp_path: Path) -> subprocess.CompletedProcess:
    assert text.count(USE_LINE) == 1, f"{DEMO_FILE.name} should select its keyspace once with `{USE_LINE}`"
    script = tmp_path / "demo_queries.cql"
    script.write_text(text.replace(USE_LINE, f"USE {keyspace};"), encoding="utf-8")
    return _cqlsh(*endpoint, script)


def test_the_demo_file_is_five_commented_literal_queries():
    text = DEMO_FILE.read_text(encoding="utf-8")
    statements = [s for s in split_statements(text) if not s.upper().startswith("USE ")]
    assert len(statements) == 5 and all(s.upper().startswith("SELECT ") for s in statements)
    assert ":" not in " ".join(re.sub(r"'[^']*'", "''", s) for s in statements), "bind markers cannot be pasted"
    assert not any("ALLOW FILTERING" in s.upper() for s in statements)
    for number in range(1, 6):
        assert re.search(rf"^-- Q{number}\. .+\n(--.*\n)*SELECT ", text, flags=re.MULTILINE), f"Q{number} needs a comment"


@pytest.fixture
def small_served_keyspace(small_served) -> str:
    """The keyspace holding the small hand-made Gold marts (conftest `small_served`)."""
    return small_served[1]


def test_every_demo_query_returns_rows_through_cqlsh(small_served_keyspace, cassandra_endpoint, tmp_path):
    text = DEMO_FILE.read_text(encoding="utf-8")
    for course_value, small_value in SMALL_GOLD_VALUES.items():
        assert course_value in text, f"{course_value} is no longer in {DEMO_FILE.name}: update SMALL_GOLD_VALUES"
        text = text.replace(course_value, small_value)
    out = _run_file(text, small_served_keyspace, cassandra_endpoint, tmp_path)
    assert out.returncode == 0 and "Error" not in out.stderr, out.stderr[-2000:]
    counts = _row_counts(out.stdout)
    # Q1: 7 days x 3 services; Q2: LIMIT 5 over 3 services; Q3: critical days of July from the 2nd; Q4: 3 months;
    # Q5: org_a's GenAI days of the range, 2025-07-20 (the small Gold's first day) to 07-31.
    assert len(counts) == 5, out.stdout[-3000:]
    assert counts[:2] == [21, 3] and counts[3:] == [3, 12] and counts[2] > 0, counts


def test_a_query_on_values_that_do_not_exist_shows_zero_rows(small_served_keyspace, cassandra_endpoint, tmp_path):
    """The row check above can fail: the same file on an org that does not exist returns no row."""
    text = DEMO_FILE.read_text(encoding="utf-8").replace("'org_53lc58dr'", "'org_missing'")
    out = _run_file(text, small_served_keyspace, cassandra_endpoint, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert _row_counts(out.stdout)[:2] == [0, 0]


@pytest.mark.slow
def test_the_committed_values_return_rows_on_the_course_data(spark, course_chain, cassandra_endpoint, tmp_path):
    """The file exactly as committed (only the keyspace changed), after serving the course data's Gold
    (a copy of the session's course chain, so that this run's serving state stays out of the shared lake)."""
    from lakehouse_utils.serving import stage as serving

    paths = copy_of_lake(course_chain[0], tmp_path)
    host, port = cassandra_endpoint
    keyspace = "demo_cql_course"
    settings = Settings.load(cassandra_host=host, cassandra_port=str(port), cassandra_keyspace=keyspace)
    try:
        serving.run(spark, paths, "run-demo-cql-course", settings=settings).assert_reconciles()
        out = _run_file(DEMO_FILE.read_text(encoding="utf-8"), keyspace, cassandra_endpoint, tmp_path)
        assert out.returncode == 0 and "Error" not in out.stderr, out.stderr[-2000:]
        counts = _row_counts(out.stdout)
        assert len(counts) == 5 and all(n > 0 for n in counts), out.stdout[-3000:]
    finally:
        with open_session(CassandraTarget("local", keyspace, host=host, port=port), use_keyspace=False) as session:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
