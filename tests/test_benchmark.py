"""The benchmark runs end to end at a tiny scale, so it cannot rot."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_benchmark_measures_every_stage_and_writes_the_report(spark, tmp_path, cassandra_endpoint, monkeypatch):
    from lakehouse_utils.benchmark.stages import STAGE_ORDER, run_scale, write_report
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
    text = report.read_text()
    assert "bronze_stream" in text and "## Targets" in text and "files per partition" in text
    assert (tmp_path / "performance.png").stat().st_size > 0


def test_target_checks_say_which_targets_are_missed_and_by_how_much():
    from lakehouse_utils.benchmark.stages import target_checks

    def stage_rows(scale, total, stream_rate, serving_rate, files):
        return [{"scale": scale, "stage": "bronze_stream", "seconds": 1.0, "rows_per_s": stream_rate},
                {"scale": scale, "stage": "serving", "seconds": 1.0, "rows_per_s": serving_rate},
                {"scale": scale, "stage": "[gold written]", "max_files_per_partition": files},
                {"scale": scale, "stage": "TOTAL", "seconds": total}]

    rows = [*stage_rows(1.0, 20.0, 1_000, 1_000, 1), *stage_rows(10.0, 90.0, 9_000, 9_000, 2),
            *stage_rows(100.0, 450.0, 60_000, 8_000, 6)]
    checks = {c["target"]: c for c in target_checks(rows)}
    assert checks["scale 1: all stages, seconds"]["met"] is True
    assert (checks["scale 10: all stages, seconds"]["met"], checks["scale 10: all stages, seconds"]["off_by"]) == (
        False, "1.5x")
    assert checks["scale 100: all stages, seconds"]["off_by"] == "1.2x"
    assert checks["scale 100: bronze_stream events/s"]["met"] is True
    assert checks["scale 100: serving rows/s (stage wall time)"]["off_by"] == "1.2x"
    assert checks["time 10x -> 100x grows at most linearly (ratio)"]["measured"] == 5.0
    assert checks["files per partition, any zone"]["met"] is False
