"""Speed layer: stream `usage_events_stream/*.jsonl` into `bronze/usage_events`, losslessly.

Grain: one row per unique event_id (first arrival wins), partitioned by `ingest_date`
(the UTC day its micro-batch was committed; `event_date` is a column). The dedupe state
lives in the checkpoint's RocksDB state store, so a micro-batch never reads Bronze back.
The landing files are not in time order (each spans all 60 days), so no row is ever
dropped for being late: late rows are flagged (`is_late`, `lateness_seconds`) and
written. Malformed lines and conflicting duplicates go to
`quarantine/usage_events_raw`; exact replays are counted as duplicates, blank lines as
ignored. See docs/decisions/040-streaming-late-data.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.bronze.events_parsing import (
    BRONZE_EVENTS_SCHEMA,
    BRONZE_PARTITION,
    RAW_QUARANTINE_SCHEMA,
    parse_lines,
    split_files,
)
from lakehouse_utils.bronze.stream_batch import LATENESS_BUCKETS, QUARANTINE_RULES
from lakehouse_utils.bronze.stream_compaction import compact_table, roll_forward
from lakehouse_utils.bronze.stream_dedupe import start_query, with_markers
from lakehouse_utils.bronze.stream_files import StreamTargets, query_token, read_commits
from lakehouse_utils.bronze.stream_folder import event_folder_warnings
from lakehouse_utils.bronze.stream_guard import check_stream
from lakehouse_utils.bronze.stream_writer import BronzeBatchWriter
from lakehouse_utils.config import DEFAULTS, SettingError, parse_duration
from lakehouse_utils.paths import LakePaths, join
from lakehouse_utils.report import StageReport, TableCounts

TABLE, QUARANTINE_TABLE, CHECKPOINT = "usage_events", "usage_events_raw", "bronze_usage_events"
DEFAULT_WATERMARK_DELAY = DEFAULTS["WATERMARK_DELAY"]
MAX_FILE_AGE = "36500d"  # the seen-files list is then never purged: fine for ~1e5 files
TRIGGERS = ("availableNow", "processingTime")
HISTOGRAM_KEYS = (*(name for name, _ in LATENESS_BUCKETS), "late_gt_7d")
BATCH_PROGRESS_KEYS = ("batch_id", "lines", "new", "seconds", "rows_per_second", "watermark")


class EventFolderMissingError(FileNotFoundError):
    """The landing has no `usage_events_stream` folder."""


def parse_delay(text: str) -> timedelta:
    """'2 hours', '90 minutes', '1 day 6 hours' -> timedelta (the forms `withWatermark` accepts)."""
    delay = parse_duration(text)
    if delay is None:
        raise SettingError(f"invalid watermark delay {text!r} (WATERMARK_DELAY or --watermark-delay): expected e.g. "
                           "'2 hours', '30 minutes' or '1 day 6 hours'")
    return delay


def event_stream(
    spark: SparkSession, paths: LakePaths, watermark_delay: str, max_files_per_trigger: int | None
) -> DataFrame:
    """Every raw line of the landing files, parsed and watermarked, with the key markers of the dedupe state."""
    # maxFileAge: by default the source skips a new file whose modification time is 7 days
    # older than the newest file it has seen (a copy that kept its old mtime): silent loss.
    reader = spark.readStream.format("text").options(pathGlobFilter="*.jsonl", maxFileAge=MAX_FILE_AGE,
                                                     wholetext=True)
    if max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", int(max_files_per_trigger))
    files = reader.load(paths.landing_events()).select(
        "value",
        F.col("_metadata.file_path").alias("source_file"),
        F.col("_metadata.file_modification_time").alias("file_modification_time"),
    )
    parsed = parse_lines(split_files(files))
    # The watermark is on the lines only: the dedupe's key branch has no event-time column, so
    # no operator evicts an id or drops a row for its event time. It feeds the query's
    # event-time progress; our own per-batch watermark flags late rows (see BronzeBatchWriter).
    return with_markers(parsed, parsed.withWatermark("event_ts", watermark_delay))


def _check_preconditions(spark: SparkSession, paths: LakePaths, trigger: str) -> None:
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}; expected one of {', '.join(TRIGGERS)}")
    zone = spark.conf.get("spark.sql.session.timeZone")
    if zone not in ("UTC", "Etc/UTC", "Z", "+00:00"):
        raise ValueError(f"spark.sql.session.timeZone is {zone!r}; event times without a zone are read as UTC, "
                         "so the session must be UTC (use lakehouse_utils.spark.get_spark)")
    if not io.exists(spark, paths.landing_events()):
        raise EventFolderMissingError(f"no event folder at {paths.landing_events()}: put the usage_events_stream/*.jsonl "
                                      "files there or point LANDING_DIR (or --landing) at the landing folder")


def _await(query, trigger: str, timeout_seconds: float | None) -> None:
    """availableNow ends by itself; processingTime runs until the timeout, then stops between batches."""
    if trigger == "availableNow":
        query.awaitTermination()
        return
    query.awaitTermination(timeout_seconds or 60)
    while query.isActive and query.status.get("isTriggerActive"):
        time.sleep(0.2)  # let the running batch commit before stopping
    query.stop()
    if query.exception():
        raise query.exception()


def run(
    spark: SparkSession,
    paths: LakePaths,
    run_id: str,
    max_files_per_trigger: int | None = None,
    watermark_delay: str | None = DEFAULT_WATERMARK_DELAY,
    trigger: str = "availableNow",
    interval: str = "5 seconds",
    timeout_seconds: float | None = None,
    on_commit: Callable[[DataFrame, dict], None] | None = None,
    **_: object,
) -> StageReport:
    """Stream new landing files into Bronze and compact small files; returns reconciled counts.

    `on_commit(new_events, record)` is called for every committed micro-batch (see
    `BronzeBatchWriter`).
    """
    delay_text = watermark_delay or DEFAULT_WATERMARK_DELAY
    delay = parse_delay(delay_text)
    _check_preconditions(spark, paths, trigger)
    targets = StreamTargets(paths.bronze(TABLE), paths.quarantine(QUARANTINE_TABLE), paths.checkpoint(CHECKPOINT))
    check_stream(spark, targets.checkpoint, targets.bronze, paths.landing_events(), paths.state(CHECKPOINT))
    roll_forward(spark, targets.checkpoint)
    writer = BronzeBatchWriter(targets, run_id, delay, on_commit=on_commit)
    stream_writer = (
        event_stream(spark, paths, delay_text, max_files_per_trigger)
        .writeStream.foreachBatch(writer)
        .option("checkpointLocation", targets.checkpoint)
        .queryName(f"bronze_stream_{run_id[-6:]}")
    )
    if trigger == "availableNow":
        triggered = stream_writer.trigger(availableNow=True)
    else:
        triggered = stream_writer.trigger(processingTime=interval)
    started = time.perf_counter()
    query = start_query(spark, triggered)
    try:
        _await(query, trigger, timeout_seconds)
    except StreamingQueryException:
        if writer.failure is not None:
            raise writer.failure from None
        raise
    stream_seconds = time.perf_counter() - started
    compaction = _compact(spark, targets)
    report = _report(run_id, writer, stream_seconds, compaction, delay_text, max_files_per_trigger, trigger)
    report.warnings += event_folder_warnings(spark, paths.landing_events(), targets.checkpoint)
    io.write_json(spark, join(paths.state(CHECKPOINT), "runs", f"{run_id}.json"), report.to_dict())
    return report


def _compact(spark: SparkSession, targets: StreamTargets) -> dict:
    if not io.exists(spark, join(targets.checkpoint, "metadata")):
        return {}
    token = query_token(spark, targets.checkpoint)
    committed = {record["batch_id"] for record in read_commits(spark, targets.checkpoint)}
    checkpoint = targets.checkpoint
    compacted = {
        TABLE: compact_table(spark, targets.bronze, BRONZE_EVENTS_SCHEMA, checkpoint, token, committed,
                             BRONZE_PARTITION),
        QUARANTINE_TABLE: compact_table(spark, targets.quarantine, RAW_QUARANTINE_SCHEMA, checkpoint, token, committed),
    }
    return {
        table: {"partitions": len(parts), "files_before": sum(p["files_before"] for p in parts),
                "files_after": len(parts)}
        for table, parts in compacted.items()
    }


def summarize(records: list[dict]) -> dict:
    """Totals over batch records (this run's, or every commit of the checkpoint)."""
    keys = ("lines", "blank", "malformed_json", "not_a_json_object", "new", "duplicate", "conflicting_duplicate",
            "type_error_rows", "null_event_ts", "late", *HISTOGRAM_KEYS)
    return {key: sum(int(r.get(key) or 0) for r in records) for key in keys}


def _written(record: dict, key: str, classified: int) -> int:
    """A batch's rows as its writer counted them (batches committed before that count was kept: as classified)."""
    value = record.get(key)
    return classified if value is None else int(value)


def table_counts(records: list[dict]) -> TableCounts:
    """rows_in counted on the lines read; rows_out and quarantined on what the two writers received."""
    totals = summarize(records)
    return TableCounts(
        table=TABLE,
        rows_in=totals["lines"],
        rows_out=sum(_written(r, "bronze_rows_written", int(r.get("new") or 0)) for r in records),
        duplicates=totals["duplicate"],
        quarantined=sum(_written(r, "quarantine_rows_written", sum(int(r.get(rule) or 0) for rule in QUARANTINE_RULES))
                        for r in records),
        ignored=totals["blank"],
    )


def committed_totals(spark: SparkSession, paths: LakePaths) -> TableCounts:
    """Counts over every batch ever committed on this checkpoint (survives crashes and restarts)."""
    return table_counts(read_commits(spark, paths.checkpoint(CHECKPOINT)))


def _report(run_id: str, writer: BronzeBatchWriter, seconds: float, compaction: dict, delay: str,
            max_files: int | None, trigger: str) -> StageReport:
    records = writer.records
    counts = table_counts(records)
    totals = summarize(records)
    counts.details = {
        "batches": [{k: r[k] for k in BATCH_PROGRESS_KEYS} for r in records],
        "skipped_committed_batches": writer.skipped,
        "malformed_json": totals["malformed_json"],
        "not_a_json_object": totals["not_a_json_object"],
        "conflicting_duplicates": totals["conflicting_duplicate"],
        "type_error_rows": totals["type_error_rows"],
        "null_event_ts": totals["null_event_ts"],
        "late_rows": totals["late"],
        "lateness_histogram": {k: totals[k] for k in HISTOGRAM_KEYS},
        "on_time_rows": totals["new"] - totals["late"] - totals["null_event_ts"],
        "max_lateness_seconds": max((r.get("max_lateness_seconds") or 0 for r in records), default=0),
        "watermark_delay": delay,
        "max_files_per_trigger": max_files,
        "trigger": trigger,
        "stream_seconds": round(seconds, 2),
        "events_per_second": round(totals["lines"] / seconds, 1) if seconds else None,
        "compaction": compaction,
    }
    report = StageReport(stage="bronze_stream", run_id=run_id)
    report.add(counts)
    return report
