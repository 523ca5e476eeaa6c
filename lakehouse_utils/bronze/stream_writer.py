"""The `foreachBatch` function of the bronze stream: an idempotent, exactly-once batch write.

Per batch: skip when already committed; delete what a crashed attempt left; classify and
write the new events (staged, then moved into their partitions under names tagged with
the batch id); write the quarantine rows the same way; save the watermark state; write
the commit marker with the batch's counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.bronze.events_parsing import BRONZE_EVENTS_SCHEMA
from lakehouse_utils.bronze.stream_batch import (
    NEW,
    QUARANTINE_RULES,
    batch_metrics,
    bronze_rows,
    known_matches,
    quarantine_rows,
    read_known_events,
    repeated_ids,
    with_lateness,
    with_outcome,
)
from lakehouse_utils.bronze.stream_files import (
    batch_tag,
    is_committed,
    previous_max_event_ts,
    publish_staged,
    query_token,
    remove_batch_files,
    save_max_event_ts,
    staging_uri,
    write_commit,
)
from lakehouse_utils.paths import join

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
BROADCAST_MAX_ROWS = 1_000_000


@dataclass(frozen=True)
class StreamTargets:
    bronze: str
    quarantine: str
    checkpoint: str


def _iso(micros: int | None) -> str | None:
    """Epoch microseconds -> ISO-8601 UTC text (how times are kept in the JSON state)."""
    return None if micros is None else (EPOCH + timedelta(microseconds=micros)).isoformat()


def _micros(text: str | None) -> int | None:
    return None if text is None else (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def _small(frame: DataFrame, cached: list[DataFrame]) -> DataFrame:
    """Cache a lookup table and broadcast it when it is small enough (the usual case).

    Broadcasting keeps the wide batch rows from being shuffled; a huge lookup (a whole
    landing re-sent to a fresh checkpoint) falls back to a shuffle join.
    """
    frame = frame.persist()
    cached.append(frame)
    return F.broadcast(frame) if frame.count() <= BROADCAST_MAX_ROWS else frame


@dataclass
class BronzeBatchWriter:
    """Callable for `writeStream.foreachBatch`; keeps this run's batch records for the report."""

    targets: StreamTargets
    run_id: str
    delay: timedelta
    records: list[dict] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    _token: str | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark, checkpoint = batch.sparkSession, self.targets.checkpoint
        if is_committed(spark, checkpoint, batch_id):
            self.skipped.append(batch_id)  # committed before a crash; Spark did not log it yet
            return
        started = time.perf_counter()
        self._token = self._token or query_token(spark, checkpoint)
        remove_batch_files(spark, [self.targets.bronze, self.targets.quarantine], self._token, batch_id)
        max_before = _micros(previous_max_event_ts(spark, checkpoint, batch_id))
        watermark = None if max_before is None else max_before - self.delay // timedelta(microseconds=1)
        record = self._write(batch, batch_id, watermark)
        max_after = max((m for m in (max_before, record["max_event_ts"]) if m is not None), default=None)
        record.update(
            watermark=_iso(watermark), max_event_ts=_iso(record["max_event_ts"]),
            min_event_ts=_iso(record["min_event_ts"]), max_event_ts_after=_iso(max_after),
            seconds=round(time.perf_counter() - started, 3),
        )
        record["rows_per_second"] = round(record["lines"] / record["seconds"], 1) if record["seconds"] else None
        save_max_event_ts(spark, checkpoint, batch_id, _iso(max_after), _iso(watermark))
        write_commit(spark, checkpoint, batch_id, record)
        self.records.append(record)

    def accepted_events(self, spark, batch_id: int) -> DataFrame | None:
        """The Bronze rows this batch added (its tagged files), None when it added none.

        Also right for a batch that was committed before a crash and is skipped on the replay,
        as long as compaction (which runs only after the query) has not merged its files.
        """
        token = self._token or query_token(spark, self.targets.checkpoint)
        tag = batch_tag(token, batch_id)
        files = [uri for pattern in (f"{tag}*", f"*/{tag}*") for uri in io.glob(spark, join(self.targets.bronze, pattern))]
        if not files:
            return None
        return spark.read.schema(BRONZE_EVENTS_SCHEMA).option("basePath", self.targets.bronze).parquet(*files)

    def _write(self, batch: DataFrame, batch_id: int, watermark: int | None) -> dict:
        spark, now, started = batch.sparkSession, datetime.now(timezone.utc), time.perf_counter()
        # The parsed batch is cached: the source files are read and parsed once per batch. The
        # cache is read back 3-4 times and then dropped, so compressing it costs more CPU than it
        # saves (measured: -35 % CPU to fill it). `spark` is the query's own clone of the session.
        spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")
        parsed = batch.withColumn("_row_pos", F.monotonically_increasing_id()).persist()
        cached = [parsed]
        try:
            repeats = _small(repeated_ids(parsed), cached)
            known = read_known_events(spark, self.targets.bronze)
            known = None if known is None else _small(known_matches(parsed, known), cached)
            classified = with_lateness(with_outcome(parsed, repeats, known), watermark)
            metrics = classified.agg(*batch_metrics()).first().asDict()
            phases = {"classify_seconds": time.perf_counter() - started}
            tag = batch_tag(self._token, batch_id)
            bronze_files = self._write_bronze(classified, batch_id, now, tag) if metrics[NEW] else []
            phases["write_seconds"] = time.perf_counter() - started - phases["classify_seconds"]
            quarantined = sum(metrics[rule] for rule in QUARANTINE_RULES)
            quarantine_files = self._write_quarantine(classified, batch_id, now, tag) if quarantined else []
        finally:
            for frame in cached:
                frame.unpersist()
        return {
            **metrics, **{k: round(v, 3) for k, v in phases.items()}, "batch_id": batch_id, "run_id": self.run_id,
            "committed_at": datetime.now(timezone.utc).isoformat(),
            "bronze_files": len(bronze_files), "quarantine_files": len(quarantine_files),
        }

    def _write_bronze(self, classified: DataFrame, batch_id: int, now: datetime, tag: str) -> list[str]:
        spark = classified.sparkSession
        staging = staging_uri(self.targets.checkpoint, f"batch-{batch_id}-bronze")
        io.delete(spark, staging)
        # At most one file per event_date per batch: repartition by the partition column.
        rows = bronze_rows(classified, self.run_id, batch_id, now)
        rows.repartition("event_date").write.partitionBy("event_date").parquet(staging)
        return publish_staged(spark, staging, self.targets.bronze, tag)

    def _write_quarantine(self, classified: DataFrame, batch_id: int, now: datetime, tag: str) -> list[str]:
        spark = classified.sparkSession
        staging = staging_uri(self.targets.checkpoint, f"batch-{batch_id}-quarantine")
        io.delete(spark, staging)
        quarantine_rows(classified, self.run_id, batch_id, now).coalesce(1).write.parquet(staging)
        return publish_staged(spark, staging, self.targets.quarantine, tag)
