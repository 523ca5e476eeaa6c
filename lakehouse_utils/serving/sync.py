"""Keep one Cassandra table equal to its Gold mart, one streaming micro-batch at a time.

Gold rewrites whole partitions (or, unpartitioned, the whole table), so a batch of
new Gold files holds the complete new content of every Gold partition it touches.
A mirror of the primary keys loaded so far, per Gold partition, lives in Parquet
under `paths.state("serving")`; for each batch:

1. upsert every row of the batch (idempotent INSERTs);
2. delete the keys the mirror lists for the touched partitions that the batch
   no longer has (a top-N rank that moved, an anomaly that disappeared);
3. rewrite the mirror (atomic swap).

A failure at any step fails the batch before Spark commits it, and every step is
idempotent, so the next run replays the batch without loss or duplicates.
Partitions that vanished from Gold entirely send no files at all; `remove_vanished`
compares the mirror with Gold's current partitions after the stream.
Invariant: a Gold partition column is part of the Cassandra primary key (or the mart is
unpartitioned), so a key never moves from one Gold partition to another.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from urllib.parse import unquote

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils import io
from lakehouse_utils.serving.connection import (
    CassandraError,
    CassandraTarget,
    CassandraUnavailableError,
    CassandraWriteError,
    KeyspaceMissingError,
    open_session,
)
from lakehouse_utils.serving.model import ServingTable
from lakehouse_utils.serving.writer import CQL_DATE_EPOCH_DAYS, write_partition

PARTITION_ID = "_gold_partition"
WHOLE_TABLE = "__all__"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
# One write task per this many rows (each task opens its own Cluster, ~0.2 s).
ROWS_PER_WRITE_TASK = 20_000
_EXECUTOR_ERROR = re.compile(r"(CassandraUnavailableError|CassandraWriteError|KeyspaceMissingError): ([^\n]*)")


@dataclass
class SyncCounts:
    rows_in: int = 0
    rows_out: int = 0
    duplicates: int = 0
    quarantined: int = 0
    deleted: int = 0
    batches: int = 0
    write_seconds: float = 0.0


def gold_partition_columns(spark: SparkSession, gold_uri: str) -> list[str]:
    """Hive-style partition columns of a Gold mart, read from its first data file's path."""
    files = io.list_files(spark, gold_uri)
    if not files:
        return []
    directories = files[0].path.split("/")[:-1]
    columns: list[str] = []
    for segment in reversed(directories):
        if "=" not in segment:
            break
        columns.insert(0, segment.split("=", 1)[0])
    return columns


def gold_partition_ids(spark: SparkSession, gold_uri: str, columns: list[str]) -> list[str]:
    """The `partition_id` of every Gold partition that has files, from the listing (no Spark job)."""
    files = io.list_files(spark, gold_uri)
    if not columns:
        return [WHOLE_TABLE] if files else []
    ids = {"/".join(unquote(s) for s in entry.path.split("/")[-1 - len(columns):-1]) for entry in files}
    return sorted(ids)


def date_positions(df: DataFrame) -> tuple[int, ...]:
    """Positions of the date columns of `df`."""
    return tuple(i for i, field in enumerate(df.schema.fields) if isinstance(field.dataType, T.DateType))


def with_cql_wire_dates(df: DataFrame) -> DataFrame:
    """`df` with every date column as the number the Cassandra driver sends for a CQL `date`.

    A Python `date` costs the writers twice per value: pyspark builds it from Spark's day number, then
    the driver turns it back into days through `calendar.timegm` (~17 % of a writer's CPU). An int
    the driver sends as it is, as the wire form: days since 1970-01-01 plus 2**31. Same bytes.
    """
    dates = date_positions(df)
    return df.select(*[(F.unix_date(F.col(name)) + F.lit(CQL_DATE_EPOCH_DAYS)).alias(name) if i in dates
                       else F.col(name) for i, name in enumerate(df.columns)])


def partition_id(columns: list[str]) -> Column:
    """`col=value/...` of a row's Gold partition (the same text for the batch and the current table)."""
    if not columns:
        return F.lit(WHOLE_TABLE)
    parts = [F.concat(F.lit(f"{c}="), F.coalesce(F.col(c).cast("string"), F.lit(NULL_PARTITION))) for c in columns]
    return F.concat_ws("/", *parts)


class TableSync:
    """The foreachBatch side of loading one serving table."""

    def __init__(self, spark: SparkSession, table: ServingTable, target: CassandraTarget, mirror_uri: str,
                 quarantine_uri: str, gold_partitions: list[str], run_id: str, concurrency: int,
                 on_change: Callable[[], object] | None = None) -> None:
        self.spark, self.table, self.target = spark, table, target
        self.mirror_uri, self.quarantine_uri, self.run_id = mirror_uri, quarantine_uri, run_id
        # Partition ids the mirror may hold (a superset): lets a run with no vanished partition skip Spark.
        self.index_uri = f"{mirror_uri}.partitions.json"
        self.gold_partitions, self.concurrency = gold_partitions, concurrency
        self.on_change = on_change or (lambda: None)
        self.counts = SyncCounts()
        self.failure: BaseException | None = None

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        try:
            self.process_batch(batch_df)
        except BaseException as error:
            self.failure = error  # the streaming query wraps it; load_table re-raises this one
            raise

    def process_batch(self, batch_df: DataFrame) -> None:
        with open_session(self.target):
            pass  # fail fast, on the driver, with the clear "cannot reach" message
        pk = list(self.table.primary_key)
        staged = batch_df.select(partition_id(self.gold_partitions).alias(PARTITION_ID), *self.table.select_columns())
        staged = staged.persist()
        try:
            has_null_key = reduce(lambda a, b: a | b, [F.col(key).isNull() for key in pk])
            # countDistinct skips rows with a null in any key column: it counts exactly the valid keys.
            # The touched Gold partitions come from the same job (a handful of ids, one per partition).
            totals = staged.agg(F.count("*").alias("rows"), F.count(F.when(has_null_key, 1)).alias("bad"),
                                F.countDistinct(*pk).alias("keys"),
                                F.collect_set(F.when(~has_null_key, F.col(PARTITION_ID))).alias("touched")).first()
            if totals["rows"] == 0 and self.gold_partitions:
                return  # a partitioned mart writes no file for an empty partition: remove_vanished covers it
            if totals["bad"]:
                self._quarantine(staged.where(has_null_key))
            valid = staged.where(~has_null_key)
            if totals["rows"] - totals["bad"] > totals["keys"]:
                valid = valid.dropDuplicates(pk)  # a grain violation in Gold: one row per key is served
            written = self._execute(valid.drop(PARTITION_ID), self.table.insert_cql(), totals["keys"], timed=True)
            deleted = self._sync_mirror(valid.select(PARTITION_ID, *pk), sorted(totals["touched"]))
            self.on_change()  # inside the batch: a failure here replays the batch, defaults never go stale
        finally:
            staged.unpersist()
        self.counts.rows_in += totals["rows"]
        self.counts.quarantined += totals["bad"]
        self.counts.duplicates += totals["rows"] - totals["bad"] - totals["keys"]
        self.counts.rows_out += written
        self.counts.deleted += deleted
        self.counts.batches += 1

    def _sync_mirror(self, keys: DataFrame, touched_ids: list[str]) -> int:
        """Delete keys of the touched partitions that the batch no longer has; then record the batch's keys."""
        if not self.gold_partitions:  # any file of an unpartitioned mart is the whole new table, even an empty one
            touched_ids = [WHOLE_TABLE]
        self._write_index(sorted(set(self._read_index() or []) | set(touched_ids)))  # before the mirror: a superset
        mirror = self._read_mirror()
        if mirror is None:
            io.replace_table(self.spark, keys, self.mirror_uri)
            return 0
        pk = list(self.table.primary_key)
        is_touched = F.col(PARTITION_ID).isin(touched_ids)
        stale = mirror.where(is_touched).join(keys.select(*pk), pk, "left_anti")
        deleted = self._delete(stale.select(*pk))
        io.replace_table(self.spark, mirror.where(~is_touched).unionByName(keys), self.mirror_uri)
        return deleted

    def remove_vanished(self, current_partitions: list[str]) -> int:
        """Delete the keys of Gold partitions that no longer exist (no new file announces those)."""
        known = self._read_index()
        gone = sorted(set(known) - set(current_partitions)) if known is not None else None
        if gone == []:
            return 0  # the common case: nothing vanished, no Spark job
        mirror = self._read_mirror()
        deleted = 0
        if mirror is not None:
            if gone is not None:
                is_gone = F.col(PARTITION_ID).isin(gone)
            else:  # no index yet (a mirror from before it existed): compare with Gold's partitions
                is_gone = ~F.col(PARTITION_ID).isin(current_partitions) if current_partitions else F.lit(True)
            deleted = self._delete(mirror.where(is_gone).select(*self.table.primary_key))
            if deleted:
                io.replace_table(self.spark, mirror.where(~is_gone), self.mirror_uri)
            self.on_change()
        self._write_index(sorted(set(known) - set(gone)) if gone is not None else sorted(current_partitions))
        self.counts.deleted += deleted
        return deleted

    def _read_index(self) -> list[str] | None:
        payload = io.read_json(self.spark, self.index_uri)
        return None if payload is None else list(payload["partitions"])

    def _write_index(self, partition_ids: list[str]) -> None:
        io.write_json(self.spark, self.index_uri, {"table": self.table.name, "partitions": partition_ids})

    def _read_mirror(self) -> DataFrame | None:
        return io.read_parquet(self.spark, self.mirror_uri) if io.list_files(self.spark, self.mirror_uri) else None

    def _delete(self, stale_keys: DataFrame) -> int:
        # Usually nothing is stale: one task, and it connects only when a row arrives.
        return self._execute(stale_keys, self.table.delete_cql(), rows=None)

    def _execute(self, df: DataFrame, cql: str, rows: int | None, timed: bool = False) -> int:
        """Run `cql` per row on the executors, rows of one Cassandra partition together (batched)."""
        key = list(self.table.partition_key)
        tasks = 1 if rows is None else max(1, min(self.spark.sparkContext.defaultParallelism,
                                                  -(-rows // ROWS_PER_WRITE_TASK)))
        ordered = with_cql_wire_dates(df).repartition(tasks, *key).sortWithinPartitions(*key)
        target, table, concurrency, width = self.target, self.table.name, self.concurrency, len(key)
        dates = date_positions(df)
        started = time.perf_counter()
        try:
            written = ordered.rdd.mapPartitions(
                lambda partition: write_partition(partition, target, cql, table, concurrency, width, dates)
            ).sum()
        except CassandraError:
            raise
        except Exception as error:  # noqa: BLE001 - Py4J/PythonException carrying the executor's error
            raise _executor_error(error, target) from None
        if timed:
            self.counts.write_seconds += time.perf_counter() - started
        return int(written)

    def _quarantine(self, bad_rows: DataFrame) -> None:
        rule = "primary_key_not_null"
        reason = f"a primary-key column of {self.table.name} ({', '.join(self.table.primary_key)}) is null"
        (
            bad_rows.drop(PARTITION_ID)
            .select(F.lit(rule).alias("rule"), F.lit(reason).alias("reason"),
                    F.lit(self.table.mart).alias("source_file"), F.lit(self.run_id).alias("run_id"),
                    F.current_timestamp().alias("quarantined_at"), "*")
            .coalesce(1).write.mode("append").parquet(self.quarantine_uri)
        )


def _executor_error(error: BaseException, target: CassandraTarget) -> CassandraError:
    """The executor's own Python error line, without the JVM stack around it (token scrubbed)."""
    text = target.scrub(str(error))
    line = _last_python_error_line(text) or text[-300:]
    match = _EXECUTOR_ERROR.search(line)
    classes = {"CassandraUnavailableError": CassandraUnavailableError, "CassandraWriteError": CassandraWriteError,
               "KeyspaceMissingError": KeyspaceMissingError}
    if match:
        return classes[match.group(1)](match.group(2))
    return CassandraWriteError(f"writing to {target.endpoint} failed on an executor: {line}")


def _last_python_error_line(text: str) -> str | None:
    start = text.find("Traceback (most recent call last):")
    if start < 0:
        return None
    block = re.split(r"\n\s*\n|\n\tat ", text[start:], maxsplit=1)[0]
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    return lines[-1] if lines else None
