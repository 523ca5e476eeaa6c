"""Runs the stages in order with the same functions the notebooks call."""

from __future__ import annotations

import argparse
import importlib
import secrets
import sys
import time
from datetime import datetime, timezone

from lakehouse_utils.benchmark.jobs import JobCounter
from lakehouse_utils.config import Settings, positive_int
from lakehouse_utils.lock import lake_lock
from lakehouse_utils.paths import LakePaths
from lakehouse_utils.report import StageReport
from lakehouse_utils.serving.connection import SERVING_TARGETS

# stage name -> module whose `run(spark, paths, run_id, **options)` implements it
STAGES: dict[str, str] = {
    "bronze_batch": "lakehouse_utils.bronze.batch",
    "bronze_stream": "lakehouse_utils.bronze.stream",
    "silver": "lakehouse_utils.silver.stage",
    "gold": "lakehouse_utils.gold.stage",
    "serving": "lakehouse_utils.serving.stage",
}


class UnknownStageError(ValueError):
    """A stage name that is not one of STAGES (a typo on the command line)."""


def _check_stages(stages: list[str]) -> None:
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise UnknownStageError(f"unknown stage {', '.join(map(repr, unknown))}; expected one of "
                                f"{', '.join(STAGES)} or all")


def parse_stages(text: str) -> list[str]:
    """`all`, or comma-separated stage names (spaces allowed) -> the stages, checked; for every command's option."""
    stages = list(STAGES) if text.strip() == "all" else [stage.strip() for stage in text.split(",")]
    _check_stages(stages)
    return stages


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_stage(spark, paths: LakePaths, stage: str, run_id: str | None = None, **options) -> StageReport:
    """Run one stage and time it. Options a stage does not know are ignored."""
    _check_stages([stage])
    module = importlib.import_module(STAGES[stage])
    accepted = module.run.__code__.co_varnames[: module.run.__code__.co_argcount + module.run.__code__.co_kwonlyargcount]
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    started = time.perf_counter()
    with JobCounter(spark, f"stage {stage}") as jobs:
        report = module.run(spark, paths, run_id or new_run_id(), **kwargs)
    report.seconds = time.perf_counter() - started
    # Load-independent cost figure (issue 17): on a shared 2-core box seconds vary, job counts do not.
    report.extra["spark_jobs"] = jobs.count
    return report


def run_pipeline(spark, paths: LakePaths, stages: list[str] | None = None, **options) -> list[StageReport]:
    """Run stages in order under the lake lock; stop at the first failure."""
    run_id = new_run_id()
    reports = []
    with lake_lock(paths.lake_root, purpose=f"pipeline {run_id}"):
        for stage in stages or list(STAGES):
            report = run_stage(spark, paths, stage, run_id, **options)
            reports.append(report)
            # progress on stderr: stdout of some commands is JSON
            print(f"  {stage}: {report.seconds:.1f}s, {report.extra.get('spark_jobs')} Spark jobs",
                  file=sys.stderr, flush=True)
    return reports


def preflight(stages: list[str], settings: Settings, target: str | None = None) -> None:
    """What a run needs that Spark does not give, checked before the JVM starts: the stage names, and a
    Cassandra target that answers when serving is among the stages. A wrong name or an unreachable
    AstraDB bundle then fails in a second, not after the JVM has started and the stages before serving ran."""
    _check_stages(stages)
    if "serving" in stages:
        from lakehouse_utils.serving.connection import open_session, target_from_settings

        with open_session(target_from_settings(settings, target), use_keyspace=False):
            pass


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--landing", help="landing folder (default: LANDING_DIR, data/landing, or the generated dataset)")
    parser.add_argument("--lake", help="lake root URI (default: LAKE_ROOT, data/lake)")
    parser.add_argument("--stage", default="all", help=f"one of {', '.join(STAGES)}, or all (default)")
    parser.add_argument("--max-files-per-trigger", type=positive_int,
                        help="bronze_stream: files per micro-batch (default: all)")
    parser.add_argument("--watermark-delay", help="bronze_stream: event-time watermark delay, e.g. '2 hours'")
    parser.add_argument("--full-refresh", action="store_true",
                        help="bronze_batch, silver, gold, serving: rewrite everything (the stream adds new files only)")
    parser.add_argument("--target", choices=SERVING_TARGETS, help="serving: Cassandra target (default SERVING_TARGET)")


def run_cli(args: argparse.Namespace) -> int:
    from lakehouse_utils.shipping import cluster_summary, is_local_master
    from lakehouse_utils.spark import get_spark

    settings = Settings.load(lake_root=args.lake, landing_dir=args.landing)
    paths = LakePaths.from_settings(settings)
    stages = parse_stages(args.stage)
    preflight(stages, settings, args.target)
    # Files per trigger make a stream of many micro-batches running the same plans again: C2's code pays off
    # there, on any landing (ADR 090.25); otherwise the landing's size decides.
    spark = get_spark("pipeline", settings, small_data=False if args.max_files_per_trigger else None)
    print(f"landing: {paths.landing_root}\nlake:    {paths.lake_root}")
    reports = run_pipeline(
        spark, paths, stages,
        max_files_per_trigger=args.max_files_per_trigger,
        watermark_delay=args.watermark_delay or settings.watermark_delay,
        full_refresh=args.full_refresh or None,
        target=args.target or settings.serving_target,
        settings=settings,
    )
    for report in reports:
        print(report.format())
    if not is_local_master(spark.sparkContext.master):
        print(cluster_summary(spark))
    broken = [r.stage for r in reports if not r.reconciles]
    if broken:
        print(f"RECONCILIATION FAILED in: {', '.join(broken)}")
        return 1
    return 0
