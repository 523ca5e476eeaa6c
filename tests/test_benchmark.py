"""The benchmark's target checks. Its end-to-end run at a tiny scale is the installed-package test
(tests/test_packaging.py), which runs it from an installed copy."""

from __future__ import annotations


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
