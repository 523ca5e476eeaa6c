"""The benchmark runs end to end at a tiny scale, so it cannot rot."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_benchmark_measures_every_stage_and_writes_the_report(spark, tmp_path, cassandra_endpoint, monkeypatch):
    from lakehouse_utils.benchmark import STAGE_ORDER, run_scale, write_report
    from lakehouse_utils.config import Settings

    host, port = cassandra_endpoint
    monkeypatch.setenv("CASSANDRA_HOST", host)
    monkeypatch.setenv("CASSANDRA_PORT", str(port))
    settings = Settings.load(cassandra_keyspace="cloud_analytics_benchtest")
    rows = run_scale(spark, 0.02, tmp_path, settings, STAGE_ORDER)

    timed = {row["stage"]: row for row in rows if row["stage"] in STAGE_ORDER}
    assert list(timed) == STAGE_ORDER
    assert all(row["reconciles"] and row["seconds"] > 0 and row["rows_in"] > 0 for row in timed.values())
    assert timed["bronze_stream"]["rows_out"] == timed["bronze_stream"]["rows_in"]  # clean data: every line is an event
    written = {row["stage"]: row for row in rows if row["stage"].startswith("[")}
    assert written["[bronze written]"]["files"] > 0
    assert all(row["max_files_per_partition"] <= 4 for row in written.values())

    report = tmp_path / "performance.md"
    write_report(rows, report)
    assert "bronze_stream" in report.read_text() and (tmp_path / "performance.png").stat().st_size > 0
