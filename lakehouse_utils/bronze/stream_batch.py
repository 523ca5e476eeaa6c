"""One micro-batch of the bronze stream: first-arrival dedupe, lateness flags, quarantine rows.

Pure DataFrame functions; `bronze.stream_writer.BronzeBatchWriter` runs them inside
`foreachBatch` and makes the write idempotent. Output schemas: `contracts.bronze`.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils import io
from lakehouse_utils.bronze.events_parsing import (
    BRONZE_EVENTS_COLUMNS,
    BRONZE_EVENTS_SCHEMA,
    JSON_FIELD_COLUMNS,
    KIND_BLANK,
    KIND_EVENT,
    KIND_MALFORMED,
    KIND_NOT_OBJECT,
    RAW_QUARANTINE_SCHEMA,
)

NEW, DUPLICATE, CONFLICT = "new", "duplicate", "conflicting_duplicate"
QUARANTINE_RULES = (KIND_MALFORMED, KIND_NOT_OBJECT, CONFLICT)
OUTCOMES = (KIND_BLANK, KIND_MALFORMED, KIND_NOT_OBJECT, NEW, DUPLICATE, CONFLICT)
# upper bounds (seconds) of the lateness histogram; a last bucket takes the rest
LATENESS_BUCKETS = (("late_le_1h", 3_600), ("late_le_6h", 21_600), ("late_le_24h", 86_400), ("late_le_7d", 604_800))
# Within one batch the first arrival is the first file in the source's own order (modification
# time, then name), then the first line of that file.
ARRIVAL_ORDER = ("file_modification_time", "source_file", "file_block_start", "_row_pos")


def has_event_id() -> Column:
    return F.coalesce(F.col("event_id") != F.lit(""), F.lit(False))


def _is_keyed_event() -> Column:
    return (F.col("line_kind") == KIND_EVENT) & has_event_id()


def read_known_events(spark: SparkSession, bronze: str) -> DataFrame | None:
    """(event_id, content_hash) of every event already in Bronze; None while Bronze is empty."""
    if not io.exists(spark, bronze):
        return None
    known = spark.read.schema(BRONZE_EVENTS_SCHEMA).parquet(bronze).where(has_event_id())
    return known.select("event_id", F.col("content_hash").alias("_known_hash"))


def repeated_ids(parsed: DataFrame) -> DataFrame:
    """Event ids that occur more than once in the batch, with their first arrival's key, hash and file.

    A hash count over the ids finds the (usually few) repeated ones; only their rows are
    ranked. The result is small and joins back without shuffling the wide batch rows.
    """
    events = parsed.where(_is_keyed_event()).select("event_id", *ARRIVAL_ORDER, "content_hash")
    repeated = events.groupBy("event_id").count().where(F.col("count") > 1).select("event_id")
    copies = events.join(repeated, on="event_id", how="left_semi")
    first = F.min(F.struct(*ARRIVAL_ORDER, "content_hash"))  # structs compare field by field
    firsts = copies.groupBy("event_id").agg(first.alias("_first"))
    return firsts.select(
        "event_id",
        F.struct(*[F.col(f"_first.{name}").alias(name) for name in ARRIVAL_ORDER]).alias("_first_key"),
        F.col("_first.content_hash").alias("_first_hash"),
        F.col("_first.source_file").alias("_first_file"),
    )


def known_matches(parsed: DataFrame, known: DataFrame) -> DataFrame:
    """The Bronze (event_id, hash) pairs whose id arrives again in this batch (usually few)."""
    batch_ids = parsed.where(_is_keyed_event()).select("event_id")
    # Bronze holds each id once; dropDuplicates guards against a partition seen twice mid-compaction.
    return known.join(batch_ids, on="event_id", how="left_semi").dropDuplicates(["event_id"])


def with_outcome(parsed: DataFrame, repeats: DataFrame, known: DataFrame | None) -> DataFrame:
    """Add `_outcome`: the line kind, or new / duplicate / conflicting_duplicate for events.

    `repeats` and `known` are the small results of `repeated_ids` and `known_matches`. The
    reference content of an event_id is its Bronze row when there is one, else the batch's
    first arrival. Events without an id are each new (Silver quarantines them).
    """
    joined = parsed.join(repeats, on="event_id", how="left")
    if known is None:
        joined = joined.withColumn("_known_hash", F.lit(None).cast(T.StringType()))
    else:
        joined = joined.join(known, on="event_id", how="left")
    is_event = F.col("line_kind") == KIND_EVENT
    is_known = F.col("_known_hash").isNotNull()
    is_first_in_batch = F.col("_first_key").isNull() | (F.struct(*ARRIVAL_ORDER) == F.col("_first_key"))
    is_first_arrival = ~is_known & is_first_in_batch
    same_content = F.col("content_hash") == F.coalesce("_known_hash", "_first_hash")
    outcome = (
        F.when(~is_event, F.col("line_kind"))
        .when(~has_event_id() | is_first_arrival, F.lit(NEW))
        .when(same_content, F.lit(DUPLICATE))
        .otherwise(F.lit(CONFLICT))
    )
    return joined.withColumn("_outcome", outcome)


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
    ]
    lower = 0
    for name, upper in LATENESS_BUCKETS:
        in_bucket = (F.col("lateness_seconds") > lower) & (F.col("lateness_seconds") <= upper)
        metrics.append(F.count_if(is_late_new & in_bucket).alias(name))
        lower = upper
    metrics.append(F.count_if(is_late_new & (F.col("lateness_seconds") > lower)).alias("late_gt_7d"))
    return metrics


def bronze_rows(classified: DataFrame, run_id: str, batch_id: int, ingest_ts: datetime) -> DataFrame:
    technical = {
        "ingest_ts": F.lit(ingest_ts).cast(T.TimestampType()),
        "run_id": F.lit(run_id),
        "batch_id": F.lit(batch_id).cast(T.LongType()),
        "event_date": F.to_date("event_ts"),
    }
    return classified.where(F.col("_outcome") == NEW).withColumns(technical).select(*BRONZE_EVENTS_COLUMNS)


def _line_offsets(classified: DataFrame) -> DataFrame:
    """Per file block: what to add to `_row_pos` to get the 1-based line number in the file.

    `_row_pos` grows by one per line inside a block; blocks of one file follow each other.
    """
    blocks = classified.groupBy("source_file", "file_block_start").agg(
        F.min("_row_pos").alias("_first_pos"), F.count(F.lit(1)).alias("_lines"))
    earlier = Window.partitionBy("source_file").orderBy("file_block_start").rowsBetween(Window.unboundedPreceding, -1)
    lines_before = F.coalesce(F.sum("_lines").over(earlier), F.lit(0))
    offset = lines_before + 1 - F.col("_first_pos")
    return blocks.select("source_file", "file_block_start", offset.alias("_line_offset"))


def reserialised_event() -> Column:
    """JSON of the parsed fields (null ones omitted), for a conflicting event whose raw text is not kept."""
    return F.to_json(F.struct(*[F.col(column).alias(field) for field, column in JSON_FIELD_COLUMNS]))


def quarantine_rows(classified: DataFrame, run_id: str, batch_id: int, quarantined_at: datetime) -> DataFrame:
    outcome = F.col("_outcome")
    rejected = classified.where(outcome.isin(*QUARANTINE_RULES))
    numbered = rejected.join(F.broadcast(_line_offsets(classified)), on=["source_file", "file_block_start"], how="left")
    known_before = F.col("_known_hash").isNotNull()
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
    return numbered.select(
        outcome.alias("rule"),
        reason.alias("reason"),
        F.coalesce("raw_line", "type_error_line", reserialised_event()).alias("raw_line"),
        "event_id",
        "source_file",
        (F.col("_row_pos") + F.col("_line_offset")).alias("line_number"),
        F.lit(run_id).alias("run_id"),
        F.lit(batch_id).cast(T.LongType()).alias("batch_id"),
        F.lit(quarantined_at).cast(T.TimestampType()).alias("quarantined_at"),
    ).select(*[F.col(f.name).cast(f.dataType) for f in RAW_QUARANTINE_SCHEMA.fields])
