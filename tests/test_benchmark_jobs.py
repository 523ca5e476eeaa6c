"""Spark job counting and the sections of the benchmark report (issue 17)."""

from __future__ import annotations

import sys
import threading

import pytest


def test_job_counter_counts_the_jobs_of_every_thread(spark):
    from lakehouse_utils.benchmark.jobs import JobCounter

    with JobCounter(spark, "test nothing") as idle:
        pass
    numbers = spark.sparkContext.parallelize(range(10), 2)  # an RDD action is exactly one job
    with JobCounter(spark, "test three jobs") as jobs:
        numbers.count()
        numbers.sum()
        # a job from another thread (as the parallel master writes and streaming queries run them)
        worker = threading.Thread(target=numbers.collect)
        worker.start()
        worker.join()
    assert idle.count == 0
    assert jobs.count == 3


def test_pipeline_reports_spark_jobs_per_stage(course_chain):
    _, reports = course_chain  # run_stage, stage by stage
    assert all(report.extra["spark_jobs"] > 0 for report in reports.values()), {
        stage: report.extra.get("spark_jobs") for stage, report in reports.items()}


def test_sections_merge_replaces_fresh_sections_and_keeps_the_others():
    from lakehouse_utils.benchmark import sections

    first = sections.merge("", {"stages": "## Stages\nold figures", "freshness": "## Freshness\nlag 3 s"})
    second = sections.merge(first, {"stages": "## Stages\nnew figures"})
    assert second.startswith("# Performance")
    assert "new figures" in second and "old figures" not in second
    assert "lag 3 s" in second
    assert second.index("## Stages") < second.index("## Freshness")  # report order, not run order


def test_a_report_from_before_sections_is_kept_as_the_stages_section():
    from lakehouse_utils.benchmark import sections

    merged = sections.merge("# Performance\n\n## Every stage\nlegacy table\n", {"stream": "## Stream\n50k/s"})
    assert sections.existing_blocks(merged)["stages"].strip() == "## Every stage\nlegacy table"
    assert "50k/s" in merged


def test_a_section_module_is_found_by_name_and_gets_only_what_it_declares(tmp_path, monkeypatch):
    from lakehouse_utils.benchmark import sections

    (tmp_path / "bench_section_for_test.py").write_text(
        "def section(settings):\n    return f'## Test section\\nkeyspace {settings}'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sections.SECTIONS, "testsection", "bench_section_for_test")
    try:
        assert sections.parse_sections("stages, testsection") == ["stages", "testsection"]
        text = sections.run_section("testsection", spark=None, settings="ks1", args=None)
    finally:
        sys.modules.pop("bench_section_for_test", None)
    assert text == "## Test section\nkeyspace ks1\n"


def test_unknown_or_absent_sections_fail_with_what_to_do(monkeypatch):
    from lakehouse_utils.benchmark import sections

    with pytest.raises(sections.SectionError, match="unknown benchmark section.*nope.*expected some of stages"):
        sections.parse_sections("stages,nope")
    monkeypatch.setitem(sections.SECTIONS, "absent", "lakehouse_utils.benchmark.no_such_module")
    assert "absent" not in sections.available()
    with pytest.raises(sections.SectionError, match="needs lakehouse_utils.benchmark.no_such_module.*--sections stages"):
        sections.run_section("absent")


def test_the_course_run_reads_the_pipeline_progress_lines_and_checks_the_targets():
    from lakehouse_utils.benchmark.course import course_markdown, parse_progress

    stderr = ("WARNING: noise\n  bronze_batch: 4.0s, 21 Spark jobs\n  silver: 9.5s, 60 Spark jobs\n"
              "  serving: 12.0s, None Spark jobs\n")
    stages = parse_progress(stderr)
    assert stages == [{"stage": "bronze_batch", "seconds": 4.0, "spark_jobs": 21},
                      {"stage": "silver", "seconds": 9.5, "spark_jobs": 60},
                      {"stage": "serving", "seconds": 12.0, "spark_jobs": None}]
    text = course_markdown({"landing": "/data/course", "wall": 31.0, "stages": stages})
    flat = " ".join(text.split())
    assert "whole command, wall seconds 30.0 31.0 False" in flat
    assert "stage seconds without serving 20.0 13.5 True" in flat
    assert "bronze_batch 4.0 21 52" in flat  # measured jobs beside the recorded 52
