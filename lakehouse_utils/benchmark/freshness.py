"""Freshness benchmark of the live speed layer: landing file dropped -> its usage visible in Cassandra.

`python -m lakehouse_utils.benchmark.freshness` starts `live` on a landing that holds the
masters only, then drops the event files (the course's 120, or a generated scale-1 set) one
per second, each written under a hidden temporary name and then renamed. Meanwhile it polls
Cassandra's total `event_count` (a file is visible when the total reaches the valid events of
every file dropped up to it) and, after the last drop, snapshots the daily table until it
equals the batch layer's result (the Gold mart built afterwards on the same lake). Prints and
returns a markdown section for docs/performance.md. Decision: docs/decisions/120-live-speed-layer.md.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

from lakehouse_utils.config import COURSE_LANDING, PROJECT_ROOT, Settings
from lakehouse_utils.live.demo import drop_file, prepare_landing
from lakehouse_utils.paths import LakePaths

KEYSPACE = "cloud_analytics_freshness"
BATCH_LINE = re.compile(r"^live batch \d+: (\d+) file\(s\)")
TOTAL_CQL = "SELECT sum(event_count) AS events FROM daily_usage_by_org_month"


class CassandraWatch:
    """Polls the total event_count; after `snapshot_from` is set, also full (cost, count) snapshots."""

    def __init__(self, target) -> None:
        self.target, self.totals, self.snapshots = target, [], []
        self.stop, self.snapshot_from = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from lakehouse_utils.serving.connection import open_session

        with open_session(self.target) as session:
            while not self.stop.is_set():
                try:
                    total = session.execute(TOTAL_CQL, timeout=60).one().events or 0
                    self.totals.append((time.time(), int(total)))
                    if self.snapshot_from.is_set():
                        rows = session.execute("SELECT org_id, usage_date, service, daily_cost_usd, event_count "
                                               "FROM daily_usage_by_org_month", timeout=60)
                        self.snapshots.append((time.time(), {(r.org_id, r.usage_date.date(), r.service):
                                                             (r.daily_cost_usd, r.event_count) for r in rows}))
                except Exception:  # noqa: BLE001 - a slow poll on a loaded machine: try again
                    pass
                self.stop.wait(0.5)


def valid_events_per_file(spark, paths: LakePaths) -> dict[str, int]:
    """Valid events (the Silver rules) that each file added to Bronze, keyed by file name."""
    from pyspark.sql import functions as F

    from lakehouse_utils import io
    from lakehouse_utils.live.metrics import load_references
    from lakehouse_utils.silver.events import check_events

    references = load_references(spark, paths)
    valid, _, _ = check_events(io.read_parquet(spark, paths.bronze("usage_events")), references["customers_orgs"],
                               references["resources"])
    counts = valid.groupBy(F.element_at(F.split("source_file", "/"), -1).alias("name")).count().collect()
    return {row["name"]: int(row["count"]) for row in counts}


def run_benchmark(source: Path, work: Path, interval_s: float = 1.0, trigger: str = "1 second",
                  settle_timeout_s: float = 600.0) -> dict:
    from lakehouse_utils.live import stage as live
    from lakehouse_utils.live.compare import gold_measures
    from lakehouse_utils.pipeline import run_stage
    from lakehouse_utils.serving.connection import CassandraTarget, open_session, target_from_settings
    from lakehouse_utils.spark import get_spark

    landing, files = prepare_landing(source, work)
    paths = LakePaths.from_roots(work / "lake", landing)
    settings = Settings.load(cassandra_keyspace=KEYSPACE)
    target: CassandraTarget = target_from_settings(settings, "local", KEYSPACE)
    with open_session(target, use_keyspace=False) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)
    spark = get_spark("freshness", settings)
    stop, messages = threading.Event(), []
    runner = threading.Thread(target=lambda: live.run(spark, paths, live_run_id(), target, interval=trigger,
                                                      stop=stop, say=messages.append), daemon=True)
    runner.start()
    metadata = work / "lake" / "_checkpoints" / "bronze_usage_events" / "metadata"
    while not metadata.exists() and runner.is_alive():
        time.sleep(0.2)
    watch = CassandraWatch(target)
    watch.thread.start()
    drops, folder, started = [], landing / "usage_events_stream", time.time()
    for index, path in enumerate(files):
        time.sleep(max(0.0, started + index * interval_s - time.time()))
        drop_file(path, folder)
        drops.append((path.name, time.time()))
    watch.snapshot_from.set()
    deadline = time.time() + settle_timeout_s
    while time.time() < deadline and files_consumed(messages) < len(files):
        time.sleep(0.5)
    time.sleep(2.0)  # one more snapshot after the last batch
    watch.stop.set()
    watch.thread.join(120)
    stop.set()
    runner.join(600)
    return _measure(spark, paths, drops, watch, messages, gold_measures, run_stage)


def files_consumed(messages: list[str]) -> int:
    """Files the live batches reported so far (their progress lines)."""
    return sum(int(match.group(1)) for match in map(BATCH_LINE.match, messages) if match)


def live_run_id() -> str:
    from lakehouse_utils.pipeline import new_run_id

    return new_run_id()


def _measure(spark, paths, drops, watch, messages, gold_measures, run_stage) -> dict:
    per_file = valid_events_per_file(spark, paths)
    latencies, cumulative = [], 0
    for name, dropped in drops:
        cumulative += per_file.get(name, 0)
        seen = next((t for t, total in watch.totals if t >= dropped and total >= cumulative), None)
        latencies.append(None if seen is None else seen - dropped)
    for stage in ("silver", "gold"):
        run_stage(spark, paths, stage).assert_reconciles()
    batch = {(key[0], key[2], key[3]): (values[0], values[6])
             for key, values in gold_measures(spark, paths, "daily_usage_by_org_month").items()}
    last_drop = drops[-1][1]
    equal_at = next((t for t, snapshot in watch.snapshots if snapshot == batch), None)
    measured = [x for x in latencies if x is not None]
    return {
        "files": len(drops), "events": cumulative, "daily_rows": len(batch),
        "p50_s": statistics.median(measured) if measured else None,
        "p95_s": sorted(measured)[max(0, round(0.95 * len(measured)) - 1)] if measured else None,
        "max_s": max(measured) if measured else None, "never_visible": latencies.count(None),
        "equal_after_last_drop_s": None if equal_at is None else equal_at - last_drop,
        "batches": sum(1 for m in messages if m.startswith("live batch ")),
        "retries": sum(1 for m in messages if "Cassandra unavailable" in m),
        "load_average": os.getloadavg(),
    }


def markdown(result: dict, source: Path) -> str:
    def seconds(value) -> str:
        return "—" if value is None else f"{value:.1f} s"

    load = ", ".join(f"{x:.1f}" for x in result["load_average"])
    return "\n".join([
        "## Freshness of the live speed layer (`live`)",
        "",
        f"{result['files']} files from `{source}` dropped one per second into a landing that held only the masters "
        f"(temp name, then rename), with `live --trigger-interval '1 second'` running; {result['events']} valid "
        f"events, {result['daily_rows']} daily rows, {result['batches']} micro-batches. Load average at the end: "
        f"{load} (2 cores).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| drop → visible in Cassandra, p50 | {seconds(result['p50_s'])} | |",
        f"| drop → visible in Cassandra, p95 | {seconds(result['p95_s'])} | ≤ 10 s |",
        f"| drop → visible in Cassandra, max | {seconds(result['max_s'])} | |",
        f"| last drop → daily table equals the batch result (cost, event count) | "
        f"{seconds(result['equal_after_last_drop_s'])} | ≤ 20 s |",
        f"| files never seen visible / Cassandra retries | {result['never_visible']} / {result['retries']} | 0 / 0 |",
        "",
    ])


def default_source() -> Path:
    """The course data when present, else a generated scale-1 dataset (made once)."""
    if (COURSE_LANDING / "customers_orgs.csv").exists():
        return COURSE_LANDING
    from lakehouse_utils.generator.landing import generate

    source = PROJECT_ROOT / "data" / "benchmark" / "freshness_scale_1"
    if not (source / "customers_orgs.csv").exists():
        generate(source, seed=7, scale=1.0)
    return source


def section() -> str:
    """The `freshness` section of `python -m lakehouse_utils benchmark --sections ...`."""
    source = default_source()
    return markdown(run_benchmark(source, Path(tempfile.gettempdir()) / "freshness_benchmark"), source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lakehouse_utils.benchmark.freshness", description=__doc__)
    parser.add_argument("--source", type=Path, help="landing with masters and usage_events_stream/ (default: the "
                        "course data, else a generated scale-1 dataset)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "freshness_benchmark",
                        help="scratch folder for the landing and the lake (outside the project: course files are copied)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two drops (default 1)")
    args = parser.parse_args(argv)
    source = args.source or default_source()
    result = run_benchmark(source, args.work, args.interval)
    print(markdown(result, source))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
