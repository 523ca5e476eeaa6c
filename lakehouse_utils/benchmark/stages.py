"""Benchmark: every stage, in one process, at several data scales.

`python -m lakehouse_utils benchmark --scales 1,10,100` generates each dataset once
(cached under data/benchmark/), runs the stages with the functions the notebooks use
against the local Cassandra, and writes the figures and a log-log plot to
docs/performance.md. The numbers are printed by the run, never typed by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from pathlib import Path

import psutil

from lakehouse_utils.config import PROJECT_ROOT, Settings
from lakehouse_utils.paths import LakePaths

STAGE_ORDER = ["bronze_batch", "bronze_stream", "silver", "gold", "serving"]


def stage_list(text: str) -> list[str]:
    """argparse type: the pipeline's stage names, comma-separated."""
    from lakehouse_utils.pipeline import UnknownStageError, parse_stages

    try:
        return parse_stages(text)
    except UnknownStageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def scales(text: str) -> list[float]:
    """argparse type: comma-separated multiples of the course volume, each greater than 0."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers greater than 0, e.g. 1,10,100; got {text!r}")
    return values


class PeakRss:
    """Samples the RSS of this Python process plus its children (the Spark driver JVM)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop.clear()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def dataset(scale: float, cache_dir: Path) -> Path:
    """The generated landing folder for a scale, generated once."""
    from lakehouse_utils.generator.landing import generate

    folder = cache_dir / f"landing_scale_{scale:g}"
    if not (folder / "_generator_manifest.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        generate(folder, seed=7, scale=scale, progress=scale >= 10)
        print(f"generated scale {scale:g} in {time.perf_counter() - started:.1f}s -> {folder}")
    return folder


def run_scale(spark, scale: float, cache_dir: Path, settings: Settings, stages: list[str],
              landing: Path | None = None) -> list[dict]:
    """Every stage on one dataset (generated for `scale`, or the given landing folder) into an empty lake."""
    from lakehouse_utils.evidence.inventory import lake_inventory
    from lakehouse_utils.pipeline import new_run_id, run_stage

    landing = landing or dataset(scale, cache_dir)
    lake = cache_dir / f"lake_scale_{scale:g}"
    shutil.rmtree(lake, ignore_errors=True)
    paths = LakePaths.from_roots(lake, landing)
    run_id = new_run_id()
    rows = []
    total_started = time.perf_counter()
    for stage in stages:
        with PeakRss() as rss:
            started = time.perf_counter()
            report = run_stage(spark, paths, stage, run_id, settings=settings, target="local",
                               watermark_delay=settings.watermark_delay)
            seconds = time.perf_counter() - started
        rows_in = sum(t.rows_in for t in report.tables)
        rows_out = sum(t.rows_out for t in report.tables)
        jobs = report.extra.get("spark_jobs")
        rows.append({"scale": scale, "stage": stage, "seconds": round(seconds, 2), "spark_jobs": jobs,
                     "rows_in": rows_in, "rows_out": rows_out, "rows_per_s": round(rows_in / seconds) if seconds else 0,
                     "peak_rss_mb": round(rss.peak / 2**20), "reconciles": report.reconciles})
        print(f"  scale {scale:g} {stage:<14}{seconds:8.1f}s  {jobs!s:>5} jobs  in {rows_in:>10,}  out {rows_out:>10,}  "
              f"peak RSS {rss.peak / 2**20:,.0f} MB")
    inventory = lake_inventory(spark, paths, fingerprints=False)  # files and bytes only: no full read
    for zone in ("bronze", "silver", "gold", "quarantine"):
        zone_rows = [r for r in inventory if r["zone"] == zone]
        rows.append({"scale": scale, "stage": f"[{zone} written]", "files": sum(r["files"] for r in zone_rows),
                     "bytes": sum(r["bytes"] for r in zone_rows),
                     "max_files_per_partition": _max_files_per_partition(spark, paths, zone)})
    # All stages, as the targets count them (the inventory listing above is evidence, not pipeline work).
    timed = [r for r in rows if "seconds" in r]
    jobs = [r["spark_jobs"] for r in timed]
    rows.append({"scale": scale, "stage": "TOTAL", "seconds": round(sum(r["seconds"] for r in timed), 2),
                 "spark_jobs": sum(jobs) if None not in jobs else None,
                 "wall_with_inventory": round(time.perf_counter() - total_started, 2)})
    return rows


# Issue #10 targets (2-core machine): seconds for all stages per scale, throughput floors, file bound.
STAGE_SECONDS_TARGETS = {1.0: 30.0, 10.0: 60.0, 100.0: 360.0}
STREAM_EVENTS_PER_S_TARGET = 50_000
SERVING_ROWS_PER_S_TARGET = 10_000
MAX_FILES_PER_PARTITION_TARGET = 4


def target_checks(rows: list[dict]) -> list[dict]:
    """Each target that the measured scales allow to check: target, measured value, met, factor off."""
    def row(scale: float, stage: str) -> dict | None:
        return next((r for r in rows if r["scale"] == scale and r["stage"] == stage), None)

    def check(name: str, target: float, measured: float, higher_is_better: bool) -> dict:
        met = measured >= target if higher_is_better else measured <= target
        factor = (target / measured if higher_is_better else measured / target) if measured else None
        return {"target": name, "goal": target, "measured": round(measured, 2), "met": met,
                "off_by": "" if met or factor is None else f"{factor:.1f}x"}

    scales = sorted({r["scale"] for r in rows})
    checks = []
    for scale in scales:
        total = row(scale, "TOTAL")
        if scale in STAGE_SECONDS_TARGETS and total:
            checks.append(check(f"scale {scale:g}: all stages, seconds", STAGE_SECONDS_TARGETS[scale],
                                total["seconds"], higher_is_better=False))
    largest = scales[-1]
    stream, serving = row(largest, "bronze_stream"), row(largest, "serving")
    if stream:
        checks.append(check(f"scale {largest:g}: bronze_stream events/s", STREAM_EVENTS_PER_S_TARGET,
                            stream["rows_per_s"], higher_is_better=True))
    if serving:
        checks.append(check(f"scale {largest:g}: serving rows/s (stage wall time)", SERVING_ROWS_PER_S_TARGET,
                            serving["rows_per_s"], higher_is_better=True))
    if 10.0 in scales and 100.0 in scales:
        growth = row(100.0, "TOTAL")["seconds"] / row(10.0, "TOTAL")["seconds"]
        checks.append(check("time 10x -> 100x grows at most linearly (ratio)", 10.0, growth, higher_is_better=False))
    worst = max((r.get("max_files_per_partition") or 0 for r in rows), default=0)
    checks.append(check("files per partition, any zone", MAX_FILES_PER_PARTITION_TARGET, worst,
                        higher_is_better=False))
    return checks


def _max_files_per_partition(spark, paths: LakePaths, zone: str) -> int:
    from lakehouse_utils import io
    from lakehouse_utils.evidence.inventory import lake_tables
    from lakehouse_utils.paths import join

    worst = 0
    for table_zone, table in lake_tables(spark, paths):
        if table_zone == zone:
            for partition in io.partition_inventory(spark, join(paths.zone(zone), table)):
                worst = max(worst, partition["files"])
    return worst


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from lakehouse_utils.benchmark import sections

    parser.add_argument("--sections", default=sections.DEFAULT_SECTIONS,
                        help=f"report sections to (re)measure, comma-separated, of {', '.join(sections.SECTIONS)} "
                             f"(default {sections.DEFAULT_SECTIONS}); the others already in the report are kept")
    parser.add_argument("--scales", type=scales, default="1,10,100", help="comma-separated scales (default 1,10,100)")
    parser.add_argument("--stages", type=stage_list, default=",".join(STAGE_ORDER), help="stages to time (default: all)")
    parser.add_argument("--cache-dir", default=str(PROJECT_ROOT / "data" / "benchmark"))
    parser.add_argument("--output", default=str(PROJECT_ROOT / "docs" / "performance.md"),
                        help="markdown report (a .png plot is written beside it)")
    sections.configure_parsers(parser)


def run_cli(args: argparse.Namespace) -> int:
    from lakehouse_utils.benchmark import sections
    from lakehouse_utils.benchmark.stages_report import stages_markdown
    from lakehouse_utils.spark import get_spark

    names = sections.parse_sections(args.sections)
    # A keyspace of its own, so a benchmark never overwrites the demo's tables.
    settings = Settings.load(cassandra_keyspace=os.environ.get("BENCHMARK_KEYSPACE", "cloud_analytics_bench"))
    output = Path(args.output)
    # From an installed copy the default report folder (docs/ of the working folder) may not exist yet.
    output.parent.mkdir(parents=True, exist_ok=True)
    spark, fresh, ok = None, {}, True
    for name in names:
        if spark is None and (name == "stages" or sections.wants(name, "spark")):
            # One JVM for every scale up to 100x: C2's code pays off there (ADR 090.25).
            spark = get_spark("benchmark", settings, small_data=False)
        if name == "stages":
            rows = stage_rows(spark, args, settings)
            fresh[name] = stages_markdown(rows, output)
            ok = all(r.get("reconciles", True) is not False for r in rows)
        else:
            fresh[name] = sections.run_section(name, spark=spark, settings=settings, args=args)
        existing = output.read_text() if output.exists() else ""
        output.write_text(sections.merge(existing, fresh))  # after every section: a later failure keeps it
    print(f"wrote {output} (sections: {', '.join(names)})")
    return 0 if ok else 1


def stage_rows(spark, args: argparse.Namespace, settings: Settings) -> list[dict]:
    cache_dir = Path(args.cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stages = args.stages
    rows: list[dict] = []
    for scale in args.scales:
        rows += run_scale(spark, scale, cache_dir, settings, stages)
    return rows
