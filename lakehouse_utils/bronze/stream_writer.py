"""The `foreachBatch` function of the bronze stream: an idempotent, exactly-once batch write.

Per batch: skip when already committed; delete what a crashed attempt left; flag late
rows and count the already classified lines; write the new events (staged, then moved
into the batch's ingest-date partition under names tagged with the batch id); write the
quarantine rows the same way; save the watermark state; write the commit marker with the
batch's counts; merge small files of the partitions it wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.bronze.events_parsing import BRONZE_PARTITION
from lakehouse_utils.bronze.stream_batch import (
    QUARANTINE_RULES,
    batch_metrics,
    bronze_rows,
    quarantine_rows,
    with_lateness,
)
from lakehouse_utils.bronze.stream_compaction import compact_after_batch
from lakehouse_utils.bronze.stream_dedupe import (
    ID_MARKER,
    LINE,
    NEW,
    ROW_KIND,
    classify,
    id_lookup,
    is_keyed_event,
    is_marker,
    lines_of,
    new_pairs_of_known_ids,
)
from lakehouse_utils.bronze.stream_files import (
    StreamTargets,
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
from lakehouse_utils.report import ReconciliationError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Bronze files per micro-batch: at most the session's parallelism, each of at most this many rows.
# A file cut at this size (~100 bytes a row in Parquet) is over the compaction's FULL_FILE_BYTES, so
# the merge after a batch never rewrites a big batch's own files (at 1M rows it rewrote all 4.32M
# rows of a 100x batch in one task: 40 s; ADR 090.11).
ROWS_PER_FILE = 2_000_000
# A lookup table up to this many rows is broadcast onto the batch's lines (the usual case).
BROADCAST_MAX_ROWS = 1_000_000


def _iso(micros: int | None) -> str | None:
    """Epoch microseconds -> ISO-8601 UTC text (how times are kept in the JSON state)."""
    return None if micros is None else (EPOCH + timedelta(microseconds=micros)).isoformat()


def _micros(text: str | None) -> int | None:
    return None if text is None else (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def refuse_unless_equal(spark, staging: str, batch_id: int, table: str, classified: int, written: int) -> None:
    """Stop before a batch's staged files are published when the writer received other rows than were classified."""
    if written == classified:
        return
    io.delete(spark, staging)
    raise ReconciliationError(
        f"bronze_stream batch {batch_id} was not committed: {classified} lines were classified for {table} but its "
        f"writer received {written} rows. A transform between the classification and the write lost or invented rows; "
        "nothing was published and the batch is redone from its files on the next run. Report it with this message.")


def bronze_partition_name(ingest_date: str) -> str:
    return f"{BRONZE_PARTITION}={ingest_date}"


@dataclass
class BronzeBatchWriter:
    """Callable for `writeStream.foreachBatch`: commits each micro-batch to Bronze exactly once.

    `on_commit(new_events, record)`, when given, is called once per committed batch with the
    events newly accepted into Bronze (a cached DataFrame in Bronze's columns, valid only
    during the call) and the batch's counts; a live layer reads them there. This run's
    batch records are kept for the report.
    """

    targets: StreamTargets
    run_id: str
    delay: timedelta
    on_commit: Callable[[DataFrame, dict], None] | None = None
    # True: the merge of small files after a batch waits for `compact_pending()` (the live layer
    # calls it once Cassandra has the batch's rows, so the merge is not in the freshness path).
    defer_compaction: bool = False
    records: list[dict] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    # What a batch raised: the streaming query wraps it in a Java exception; `bronze.stream.run` raises this one.
    failure: BaseException | None = None
    _token: str | None = None
    _pending_partition: str | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        try:
            self.commit(batch, batch_id)
        except BaseException as error:
            self.failure = error
            raise

    def commit(self, batch: DataFrame, batch_id: int) -> dict | None:
        """Write one classified micro-batch to Bronze and quarantine; its record, or None if already committed."""
        spark, checkpoint = batch.sparkSession, self.targets.checkpoint
        if is_committed(spark, checkpoint, batch_id):
            self.skipped.append(batch_id)  # committed before a crash; Spark did not log it yet
            # The dedupe state of this batch is saved only when its plan runs: run it, write nothing.
            batch.write.format("noop").mode("overwrite").save()
            return None
        started = time.perf_counter()
        # The union batch is cached: its state-store dedupe must run once per attempt, and the
        # files are read and parsed once (uncompressed: `stream_dedupe.QUERY_CONF`).
        self._token = self._token or query_token(spark, checkpoint)
        remove_batch_files(spark, [self.targets.bronze, self.targets.quarantine], self._token, batch_id)
        max_before = _micros(previous_max_event_ts(spark, checkpoint, batch_id))
        watermark = None if max_before is None else max_before - self.delay // timedelta(microseconds=1)
        raw = batch.persist()
        cached = [raw]
        try:
            classified = with_lateness(self._classify(raw, cached), watermark)
            record, new_rows = self._write(classified, batch_id, started)
            max_after = max((m for m in (max_before, record["max_event_ts"]) if m is not None), default=None)
            record.update(
                watermark=_iso(watermark), max_event_ts=_iso(record["max_event_ts"]),
                min_event_ts=_iso(record["min_event_ts"]), max_event_ts_after=_iso(max_after),
            )
            save_max_event_ts(spark, checkpoint, batch_id, _iso(max_after), _iso(watermark))
            record["seconds"] = round(time.perf_counter() - started, 3)
            record["rows_per_second"] = round(record["lines"] / record["seconds"], 1) if record["seconds"] else None
            write_commit(spark, checkpoint, batch_id, record)
            self.records.append(record)
            # Only after the commit marker: merged files no longer carry the batch's tag, so a
            # redo of an uncommitted batch could not find them. A crash mid-swap is rolled forward.
            self._pending_partition = bronze_partition_name(record["ingest_date"])
            if not self.defer_compaction:
                self.compact_pending(spark)
            if self.on_commit is not None:
                self.on_commit(new_rows, record)
        finally:
            for frame in cached:
                frame.unpersist()
        return record

    def compact_pending(self, spark) -> None:
        """Merge small files where the last committed batch wrote (see `compact_after_batch`)."""
        if self._pending_partition is not None:
            partition, self._pending_partition = self._pending_partition, None
            compact_after_batch(spark, self.targets, partition)

    def _classify(self, raw: DataFrame, cached: list[DataFrame]) -> DataFrame:
        """The lines of the cached union batch, classified against the dedupe markers (no Bronze read)."""
        # One job without a shuffle: runs the batch's plan (state store included) into the cache and
        # counts keyed lines and new-id markers. Equal counts mean every keyed line has its own id, never
        # seen before (an id's marker comes out once, only for a new id): the usual case, no lookup.
        sizes = raw.agg(F.count_if((F.col(ROW_KIND) == LINE) & is_keyed_event()).alias("keyed"),
                        F.count_if(is_marker(ID_MARKER)).alias("new_ids")).first()
        if sizes["keyed"] == sizes["new_ids"]:
            return classify(lines_of(raw), None, None)
        lookup = id_lookup(raw).persist()
        cached.append(lookup)
        sizes = lookup.agg(F.count(F.lit(1)).alias("rows"), F.count_if(~F.col("_id_new")).alias("known")).first()
        pairs = None
        if sizes["known"]:
            pairs = new_pairs_of_known_ids(raw, lookup).persist()
            cached.append(pairs)
            pairs = F.broadcast(pairs) if pairs.count() <= BROADCAST_MAX_ROWS else pairs
        lookup = F.broadcast(lookup) if sizes["rows"] <= BROADCAST_MAX_ROWS else lookup
        return classify(lines_of(raw), lookup, pairs)

    def _write(self, classified: DataFrame, batch_id: int, started: float) -> tuple[dict, DataFrame]:
        """Write the batch's Bronze rows, counting every line on the way; then its quarantine rows."""
        now = datetime.now(timezone.utc)
        phases = {"classify_seconds": time.perf_counter() - started}
        tag = batch_tag(self._token, batch_id)
        # The counts are observed while the Bronze rows are written: one job for both.
        observation = Observation(f"bronze_batch_{batch_id}")
        observed = classified.observe(observation, *batch_metrics())
        bronze_written, bronze_files = self._write_bronze(bronze_rows(observed, self.run_id, batch_id, now),
                                                          observation, batch_id, now, tag)
        metrics = observation.get
        phases["write_seconds"] = time.perf_counter() - started - phases["classify_seconds"]
        quarantined = sum(metrics[rule] for rule in QUARANTINE_RULES)
        quarantine_written, quarantine_files = (self._write_quarantine(classified, quarantined, batch_id, now, tag)
                                                if quarantined else (0, []))
        record = {
            **metrics, **{k: round(v, 3) for k, v in phases.items()}, "batch_id": batch_id, "run_id": self.run_id,
            "committed_at": datetime.now(timezone.utc).isoformat(), "ingest_date": now.date().isoformat(),
            "bronze_files": len(bronze_files), "quarantine_files": len(quarantine_files),
            "bronze_rows_written": bronze_written, "quarantine_rows_written": quarantine_written,
        }
        return record, bronze_rows(classified, self.run_id, batch_id, now)

    def _write_bronze(self, rows: DataFrame, observation: Observation, batch_id: int, now: datetime,
                      tag: str) -> tuple[int, list[str]]:
        """(rows the writer received, files published): the batch's new events, staged, checked, then published."""
        spark = rows.sparkSession
        staging = staging_uri(self.targets.checkpoint, f"batch-{batch_id}-bronze")
        io.delete(spark, staging)
        # Counted again as they reach the writer, in the same job: the commit records what was written.
        tally = io.WriteTally(rows, None)
        # One partition (the batch's ingest date), at most the session's parallelism of writers and
        # ROWS_PER_FILE rows a file, sorted by event date so that readers filtering on it skip row groups.
        partition = bronze_partition_name(now.date().isoformat())
        (tally.df.drop(BRONZE_PARTITION).coalesce(spark.sparkContext.defaultParallelism)
         .sortWithinPartitions("event_date").write.option("maxRecordsPerFile", ROWS_PER_FILE)
         .parquet(join(staging, partition)))
        if not observation.get[NEW]:  # Spark still wrote a schema-only file: publish nothing
            io.delete(spark, staging)
            return 0, []
        written = tally.result().rows
        refuse_unless_equal(spark, staging, batch_id, "usage_events", observation.get[NEW], written)
        return written, publish_staged(spark, staging, self.targets.bronze, tag)

    def _write_quarantine(self, classified: DataFrame, quarantined: int, batch_id: int, now: datetime,
                          tag: str) -> tuple[int, list[str]]:
        """(rows the writer received, files published) of the batch's `quarantined` lines."""
        spark = classified.sparkSession
        staging = staging_uri(self.targets.checkpoint, f"batch-{batch_id}-quarantine")
        io.delete(spark, staging)
        tally = io.WriteTally(quarantine_rows(classified, self.run_id, batch_id, now), None)
        tally.df.coalesce(1).write.parquet(staging)
        written = tally.result().rows
        refuse_unless_equal(spark, staging, batch_id, "usage_events_raw", quarantined, written)
        return written, publish_staged(spark, staging, self.targets.quarantine, tag)
