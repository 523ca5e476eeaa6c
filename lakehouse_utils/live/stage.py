"""`python -m lakehouse_utils live`: landing files to Bronze and to Cassandra's Q1 and Q5 tables within seconds.

The live query *is* the Bronze stream's query: same file source, same checkpoint, same
`BronzeBatchWriter`, so Bronze ends up exactly as `pipeline --stage bronze_stream` would
write it (and a later stream run finds nothing new). Its `foreachBatch` first commits the
micro-batch to Bronze, then recomputes the full figures of every (org, day, service) the
batch's new events touch from all live events (`state.LiveEvents`) and upserts them into
`daily_usage_by_org_month` and `genai_usage_by_org_month`, the rows the batch layer serves.
Spark commits the batch only after Cassandra acknowledged them. Decision: docs/decisions/120-live-speed-layer.md.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.bronze import stream as bronze_stream
from lakehouse_utils.bronze.stream_compaction import roll_forward
from lakehouse_utils.bronze.stream_dedupe import lines_of, start_query
from lakehouse_utils.bronze.stream_files import query_token, read_commits
from lakehouse_utils.bronze.stream_folder import event_folder_warnings
from lakehouse_utils.bronze.stream_guard import check_stream
from lakehouse_utils.bronze.stream_writer import BronzeBatchWriter, StreamTargets
from lakehouse_utils.config import interval, positive_int, positive_seconds
from lakehouse_utils.live.metrics import DAILY_TABLE, GENAI_TABLE, load_references, served_rows
from lakehouse_utils.live.state import LiveEvents, LiveMarkers
from lakehouse_utils.live.upsert import LiveStopped, LiveUpserter
from lakehouse_utils.paths import LakePaths, join
from lakehouse_utils.serving.connection import SERVING_TARGETS, CassandraTarget

DEFAULT_INTERVAL = "2 seconds"
MASTERS_READ = ("customers_orgs", "resources")


class LiveQueryError(RuntimeError):
    """The streaming query stopped with an error that no batch of ours raised (Spark's own message, shortened)."""


@dataclass
class LiveRun:
    """What one `live` run did (also written to `<lake>/_state/live/runs/<run_id>.json`)."""

    run_id: str
    batches: list[dict] = field(default_factory=list)
    catch_up: dict = field(default_factory=dict)
    stopped_reason: str = ""
    warnings: list[str] = field(default_factory=list)

    def totals(self) -> dict:
        keys = ("files", "lines", "new_events", "rows_upserted")
        return {key: sum(b.get(key, 0) for b in self.batches) for key in keys} | {"batches": len(self.batches)}


class LiveBatch:
    """The `foreachBatch` of the live query: Bronze commit, then live upserts, then the marker."""

    def __init__(self, writer: BronzeBatchWriter, events: LiveEvents, upserter: LiveUpserter, markers: LiveMarkers,
                 committed_before: set[int], run: LiveRun, say) -> None:
        self.writer, self.events, self.upserter, self.markers = writer, events, upserter, markers
        self.committed_before, self.run, self.say = committed_before, run, say
        self.failure: BaseException | None = None
        self._accepted: dict | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        try:
            self._process(batch, batch_id)
        except BaseException as error:
            self.failure = error  # the query wraps it in a Java exception; run() re-raises this one
            raise

    def accept(self, new_events: DataFrame, record: dict) -> None:
        """The Bronze writer's `on_commit`: the batch's new Bronze rows join the live events.

        Called once per batch, right after its Bronze commit; `new_events` is only valid during
        the call, so `LiveEvents.add` materialises what it keeps.
        """
        self.events.add(new_events)
        self._accepted = record

    def _process(self, batch: DataFrame, batch_id: int) -> None:
        started = time.time()
        spark = batch.sparkSession
        self._accepted = None
        self.writer(batch, batch_id)  # Bronze first, exactly as the stream stage; calls accept() once committed
        if self._accepted is not None:  # the writer counted the files with the batch (no second pass)
            arrived = {"files": self._accepted["source_files"], "lines": self._accepted["lines"],
                       "newest": self._accepted["newest_file_micros"]}
        else:  # skipped: committed before a crash (rare), so read the batch's lines again
            arrived = lines_of(batch).agg(
                F.collect_set("source_file").alias("files"), F.count(F.lit(1)).alias("lines"),
                F.max(F.unix_micros("file_modification_time")).alias("newest")).first()
        token = query_token(spark, self.writer.targets.checkpoint)
        rows = {DAILY_TABLE: [], GENAI_TABLE: []}
        new_events, rejected = 0, ""
        # A batch committed before a crash is skipped by the writer (no accept): caught up at start.
        if self._accepted is not None and batch_id not in self.committed_before:
            new_events = int(self._accepted.get("new") or 0)
            rejected = _rejected(self._accepted)
            if new_events:
                rows = served_rows(self.events.frame, self.events.keys_of({batch_id}),
                                   self.events.references["customers_orgs"])
        upserted = self.upserter.upsert(rows, batch_id) if any(rows.values()) else 0
        finished = time.time()
        record = {
            "batch_id": batch_id, "run_id": self.run.run_id, "files": len(arrived["files"]),
            "source_files": sorted(arrived["files"]), "lines": int(arrived["lines"]), "new_events": new_events,
            "rows_upserted": upserted, "daily_rows": len(rows[DAILY_TABLE]), "genai_rows": len(rows[GENAI_TABLE]),
            "seconds": round(finished - started, 3),
            "lag_seconds": None if arrived["newest"] is None else round(finished - arrived["newest"] / 1e6, 3),
            "upserted_at": datetime.fromtimestamp(finished, timezone.utc).isoformat(),
        }
        self.markers.write(token, batch_id, record)
        self.writer.compact_pending(spark)  # after Cassandra has the rows: not in the freshness path
        self.run.batches.append(record)
        lag = "?" if record["lag_seconds"] is None else f"{record['lag_seconds']:.1f} s"
        self.say(f"live batch {batch_id}: {record['files']} file(s), {record['lines']} lines, {new_events} new events,"
                 f"{rejected} {upserted} rows upserted ({record['daily_rows']} daily, {record['genai_rows']} genai) in "
                 f"{record['seconds']:.1f} s; lag {lag}")


def _rejected(record: dict) -> str:
    """`, 2 duplicates, 1 quarantined` (empty when nothing was): a batch line says where its other lines went."""
    duplicates = int(record.get("duplicate") or 0)
    quarantined = int(record.get("quarantine_rows_written") or 0)
    parts = [f"{duplicates} duplicate(s)"] * bool(duplicates) + [f"{quarantined} quarantined"] * bool(quarantined)
    return "".join(f" {part}," for part in parts)


def ensure_masters(spark: SparkSession, paths: LakePaths, run_id: str, say) -> None:
    """Bronze masters are the reference of the event rules: ingest them first when they are missing."""
    if all(io.exists(spark, paths.bronze(table)) for table in MASTERS_READ):
        return
    from lakehouse_utils.pipeline import run_stage

    say("Bronze masters missing: running the bronze_batch stage first")
    run_stage(spark, paths, "bronze_batch", run_id)


def catch_up(spark, events: LiveEvents, upserter: LiveUpserter, markers: LiveMarkers, checkpoint: str,
             committed: set[int], run: LiveRun, say, resend_all: bool = False) -> None:
    """Upsert the keys of Bronze batches that never reached this target (a crash, or a stream-stage run);
    every batch when `resend_all` (a keyspace that does not hold what the markers say it was sent)."""
    if not committed:
        return
    token = query_token(spark, checkpoint)
    pending = set(committed) if resend_all else committed - markers.done(token)
    if not pending:
        return
    started = time.time()
    rows = served_rows(events.frame, events.keys_of(pending), events.references["customers_orgs"])
    upserted = upserter.upsert(rows)
    for batch_id in sorted(pending):
        markers.write(token, batch_id, {"batch_id": batch_id, "run_id": run.run_id, "caught_up": True,
                                        "upserted_at": datetime.now(timezone.utc).isoformat()})
    run.catch_up = {"batches": len(pending), "rows_upserted": upserted, "seconds": round(time.time() - started, 3)}
    say(f"live catch-up: {len(pending)} Bronze batch(es) without a live upsert; {upserted} rows upserted in "
        f"{run.catch_up['seconds']:.1f} s")


def run(spark: SparkSession, paths: LakePaths, run_id: str, target: CassandraTarget, duration: float | None = None,
        interval: str = DEFAULT_INTERVAL, watermark_delay: str | None = None, max_files_per_trigger: int | None = None,
        stop: threading.Event | None = None, say=print, interrupted: threading.Event | None = None) -> LiveRun:
    """Run the live query until `stop` is set or `duration` seconds passed; Bronze is compacted at the end."""
    from lakehouse_utils.serving.claim import Claim, check_claim, lake_id
    from lakehouse_utils.serving.connection import open_session
    from lakehouse_utils.serving.stage import apply_schema

    stop = stop or threading.Event()
    delay_text = watermark_delay or bronze_stream.DEFAULT_WATERMARK_DELAY
    bronze_stream._check_preconditions(spark, paths, "processingTime")
    targets = StreamTargets(paths.bronze(bronze_stream.TABLE), paths.quarantine(bronze_stream.QUARANTINE_TABLE),
                            paths.checkpoint(bronze_stream.CHECKPOINT))
    check_stream(spark, targets.checkpoint, targets.bronze, paths.landing_events(), paths.state(bronze_stream.CHECKPOINT))
    ensure_masters(spark, paths, run_id, say)
    apply_schema(target)
    with open_session(target) as session:  # before any Bronze write: another lake's keyspace is refused
        claim = check_claim(session, target,
                            Claim(lake_id(spark, paths), paths.lake_root, run_id, datetime.now(timezone.utc)),
                            f"`live` of this lake ({paths.lake_root}) writes two tables and empties none, so it "
                            "cannot take a keyspace over")
        empty = [table for table in (DAILY_TABLE, GENAI_TABLE)
                 if session.execute(f"SELECT org_id FROM {table} LIMIT 1").one() is None]
    roll_forward(spark, targets.checkpoint)
    writer = BronzeBatchWriter(targets, run_id, bronze_stream.parse_delay(delay_text), defer_compaction=True)
    committed = {record["batch_id"] for record in read_commits(spark, targets.checkpoint)}
    events = LiveEvents(spark, load_references(spark, paths))
    say(f"live: {events.rebuild(targets.bronze, committed)} valid events from {len(committed)} committed Bronze "
        f"batch(es); writing to {target.endpoint} keyspace {target.keyspace}")
    upserter = LiveUpserter(target, stop, say)
    markers = LiveMarkers(spark, paths, target.slug)
    live_run = LiveRun(run_id)
    _warn_about_event_folder(spark, paths, targets.checkpoint, live_run, say)
    try:
        # No claim before this run (the keyspace is new, was dropped and re-created, or is another node's), or an
        # empty live table (dropped, truncated): what this lake's markers say was upserted is not there, so every
        # committed batch is sent again. A dataset without GenAI events pays one full catch-up per start for it.
        catch_up(spark, events, upserter, markers, targets.checkpoint, committed, live_run, say,
                 resend_all=claim == "claimed" or bool(empty))
        handler = LiveBatch(writer, events, upserter, markers, committed, live_run, say)
        writer.on_commit = handler.accept
        query = start_query(spark, (
            bronze_stream.event_stream(spark, paths, delay_text, max_files_per_trigger)
            .writeStream.foreachBatch(handler)
            .option("checkpointLocation", targets.checkpoint)
            .queryName(f"live_{run_id[-6:]}")
            .trigger(processingTime=interval)
        ))
        live_run.stopped_reason = _wait(query, handler, stop, duration, interrupted)
    finally:
        upserter.close()
    bronze_stream._compact(spark, targets)
    _warn_about_event_folder(spark, paths, targets.checkpoint, live_run, say)
    io.write_json(spark, join(paths.state("live"), "runs", f"{run_id}.json"),
                  {"run_id": run_id, "catch_up": live_run.catch_up, "batches": live_run.batches,
                   "stopped": live_run.stopped_reason, "totals": live_run.totals(), "warnings": live_run.warnings})
    return live_run


def _warn_about_event_folder(spark: SparkSession, paths: LakePaths, checkpoint: str, live_run: LiveRun, say) -> None:
    """Said when `live` starts (files it will not read) and when it stops (files that arrived or changed since)."""
    for warning in event_folder_warnings(spark, paths.landing_events(), checkpoint):
        if warning not in live_run.warnings:
            live_run.warnings.append(warning)
            say(f"warning: {warning}")


def _wait(query, handler: LiveBatch, stop: threading.Event, duration: float | None,
          interrupted: threading.Event | None = None) -> str:
    """Block until stopped (Ctrl-C, `stop`, `duration`); stop between two micro-batches."""
    deadline = None if duration is None else time.monotonic() + duration
    reason = "duration reached"
    try:
        while query.isActive and not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.2)
        if stop.is_set():
            reason = "interrupted (Ctrl-C)" if interrupted is not None and interrupted.is_set() else "stop requested"
    except KeyboardInterrupt:
        reason = "interrupted (Ctrl-C)"
    stop.set()  # an upsert waiting for Cassandra gives up at its next retry: the batch stays uncommitted
    while query.isActive and query.status.get("isTriggerActive"):
        time.sleep(0.2)  # let the running batch commit
    query.stop()
    if isinstance(handler.failure, LiveStopped):
        return f"{reason}; {handler.failure}"
    if handler.failure is not None:
        raise handler.failure
    if query.exception():
        raise LiveQueryError(f"the live query failed: {str(query.exception())[:500]}")
    return reason


def stop_on_ctrl_c(stop: threading.Event) -> threading.Event:
    """Ctrl-C stops `live` between two micro-batches; a second Ctrl-C interrupts at once. Returns the event
    that says Ctrl-C was pressed.

    PySpark's own handler cancels every running job first: a batch cut mid-write printed ~800 lines of Java and
    Python stack traces, and `live` stopped without its summary or compaction (the batch was redone by the next
    run, so nothing was lost, only the exit was ugly).
    """
    pressed = threading.Event()

    def handler(_signum, _frame) -> None:
        print("Ctrl-C: stopping after the running micro-batch (press Ctrl-C again to interrupt it)", flush=True)
        pressed.set()
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    return pressed


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--landing", help="landing folder (default: LANDING_DIR, data/landing, or the generated dataset)")
    parser.add_argument("--lake", help="lake root URI (default: LAKE_ROOT, data/lake)")
    parser.add_argument("--duration", type=positive_seconds, help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--trigger-interval", type=interval, default=DEFAULT_INTERVAL,
                        help=f"micro-batch interval, e.g. '2 seconds' (default {DEFAULT_INTERVAL!r})")
    parser.add_argument("--max-files-per-trigger", type=positive_int,
                        help="files per micro-batch (default: all new files)")
    parser.add_argument("--target", choices=SERVING_TARGETS, help="Cassandra target (default SERVING_TARGET)")


def run_cli(args: argparse.Namespace) -> int:
    from lakehouse_utils.config import Settings
    from lakehouse_utils.lock import lake_lock
    from lakehouse_utils.pipeline import new_run_id
    from lakehouse_utils.serving.connection import target_from_settings
    from lakehouse_utils.spark import get_spark

    settings = Settings.load(lake_root=args.lake, landing_dir=args.landing)
    paths = LakePaths.from_settings(settings)
    target = target_from_settings(settings, args.target)
    run_id = new_run_id()
    print(f"landing: {paths.landing_root}\nlake:    {paths.lake_root}\nlive run {run_id}: every "
          f"{args.trigger_interval}, {'until Ctrl-C' if args.duration is None else f'for {args.duration:g} s'}",
          flush=True)
    with lake_lock(paths.lake_root, purpose=f"live {run_id}"):
        # Runs until stopped, every trigger the same plans: C2's code pays off whatever the landing (ADR 090.25).
        spark = get_spark("live", settings, small_data=False)
        stop = threading.Event()
        interrupted = stop_on_ctrl_c(stop)
        live_run = run(spark, paths, run_id, target, args.duration, args.trigger_interval, settings.watermark_delay,
                       args.max_files_per_trigger, stop=stop, say=lambda text: print(text, flush=True),
                       interrupted=interrupted)
    totals = live_run.totals()
    print(f"live stopped ({live_run.stopped_reason}): {totals['batches']} batch(es), {totals['files']} file(s), "
          f"{totals['new_events']} new events, {totals['rows_upserted']} rows upserted", flush=True)
    return 0
