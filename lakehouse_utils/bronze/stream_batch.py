"""One micro-batch of the bronze stream: lateness flags, counts, Bronze rows, quarantine rows.

Pure DataFrame functions over the lines `stream_dedupe.classify` classified;
`stream_writer.BronzeBatchWriter` runs them inside `foreachBatch` and makes the write
idempotent. Output schemas: `contracts.bronze`.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils.bronze.events_parsing import (
    BRONZE_EVENTS_COLUMNS,
    JSON_FIELD_COLUMNS,
    KIND_BLANK,
    KIND_MALFORMED,
    KIND_NOT_OBJECT,
    RAW_QUARANTINE_SCHEMA,
)
from lakehouse_utils.bronze.stream_dedupe import CONFLICT, DUPLICATE, NEW

QUARANTINE_RULES = (KIND_MALFORMED, KIND_NOT_OBJECT, CONFLICT)
OUTCOMES = (KIND_BLANK, KIND_MALFORMED, KIND_NOT_OBJECT, NEW, DUPLICATE, CONFLICT)
# upper bounds (seconds) of the lateness histogram; a last bucket takes the rest
LATENESS_BUCKETS = (("late_le_1h", 3_600), ("late_le_6h", 21_600), ("late_le_24h", 86_400), ("late_le_7d", 604_800))


def with_lateness(events: DataFrame, watermark_micros: int | None) -> DataFrame:
    """`is_late`/`lateness_seconds` against the watermark of earlier batches (epoch µs); null when event_ts is null."""
    event_ts = F.col("event_ts")
    has_time = event_ts.isNotNull()
    if watermark_micros is None:  # first batch: nothing to be late against
        return events.withColumns({"is_late": F.when(has_time, F.lit(False)),
                                   "lateness_seconds": F.when(has_time, F.lit(0).cast(T.LongType()))})
    mark = F.timestamp_micros(F.lit(watermark_micros))
    is_late = event_ts < mark
    behind = F.unix_seconds(mark) - F.unix_seconds(event_ts)
    return events.withColumns({"is_late": is_late,
                               "lateness_seconds": F.when(is_late, behind).when(has_time, F.lit(0).cast(T.LongType()))})


def batch_metrics() -> list[Column]:
    """Counts of one batch, aggregated over the cached classified rows."""
    outcome = F.col("_outcome")
    is_new = outcome == NEW
    is_late_new = is_new & F.col("is_late")
    metrics = [F.count(F.lit(1)).alias("lines")]
    metrics += [F.count_if(outcome == name).alias(name) for name in OUTCOMES]
    metrics += [
        F.count_if(is_new & F.col("type_error_line").isNotNull()).alias("type_error_rows"),
        F.count_if(is_new & F.col("event_ts").isNull()).alias("null_event_ts"),
        F.count_if(is_late_new).alias("late"),
        # epoch microseconds: Python's datetime conversion would apply the driver's local zone
        F.unix_micros(F.max(F.when(is_new, F.col("event_ts")))).alias("max_event_ts"),
        F.unix_micros(F.min(F.when(is_new, F.col("event_ts")))).alias("min_event_ts"),
        F.max(F.when(is_late_new, F.col("lateness_seconds"))).alias("max_lateness_seconds"),
        # what arrived (the live layer's lag and file list come from here, not from a second pass)
        F.sort_array(F.collect_set("source_file")).alias("source_files"),
        F.unix_micros(F.max("file_modification_time")).alias("newest_file_micros"),
    ]
    lower = 0
    for name, upper in LATENESS_BUCKETS:
        in_bucket = (F.col("lateness_seconds") > lower) & (F.col("lateness_seconds") <= upper)
        metrics.append(F.count_if(is_late_new & in_bucket).alias(name))
        lower = upper
    metrics.append(F.count_if(is_late_new & (F.col("lateness_seconds") > lower)).alias("late_gt_7d"))
    return metrics


def bronze_rows(classified: DataFrame, run_id: str, batch_id: int, ingest_ts: datetime) -> DataFrame:
    """The new events of the batch in Bronze's columns (the partition column `ingest_date` included)."""
    technical = {
        "ingest_ts": F.lit(ingest_ts).cast(T.TimestampType()),
        "run_id": F.lit(run_id),
        "batch_id": F.lit(batch_id).cast(T.LongType()),
        "event_date": F.to_date("event_ts"),
        "ingest_date": F.lit(ingest_ts.date()).cast(T.DateType()),
    }
    return classified.where(F.col("_outcome") == NEW).withColumns(technical).select(*BRONZE_EVENTS_COLUMNS)


def reserialised_event() -> Column:
    """JSON of the parsed fields (null ones omitted), for a conflicting event whose raw text is not kept."""
    return F.to_json(F.struct(*[F.col(column).alias(field) for field, column in JSON_FIELD_COLUMNS]))


def quarantine_rows(classified: DataFrame, run_id: str, batch_id: int, quarantined_at: datetime) -> DataFrame:
    outcome = F.col("_outcome")
    rejected = classified.where(outcome.isin(*QUARANTINE_RULES))
    known_before = F.coalesce(F.col("_known_before"), F.lit(False))
    conflict_reason = (
        F.when(known_before, F.concat(F.lit("event_id "), F.col("event_id"),
                                      F.lit(" is already in Bronze with different content; the first arrival is kept")))
        .otherwise(F.concat(F.lit("event_id "), F.col("event_id"), F.lit(" arrived first in "), F.col("_first_file"),
                            F.lit(" with different content; the first arrival is kept")))
    )
    reason = (
        F.when(outcome == KIND_MALFORMED, F.lit("line is not valid JSON (truncated, garbage or a broken encoding)"))
        .when(outcome == KIND_NOT_OBJECT, F.lit("line is valid JSON but not an object (array, string, number or null)"))
        .otherwise(conflict_reason)
    )
    return rejected.select(
        outcome.alias("rule"),
        reason.alias("reason"),
        F.coalesce("raw_line", "type_error_line", reserialised_event()).alias("raw_line"),
        "event_id",
        "source_file",
        "line_number",
        F.lit(run_id).alias("run_id"),
        F.lit(batch_id).cast(T.LongType()).alias("batch_id"),
        F.lit(quarantined_at).cast(T.TimestampType()).alias("quarantined_at"),
    ).select(*[F.col(f.name).cast(f.dataType) for f in RAW_QUARANTINE_SCHEMA.fields])
