"""Write a fully computed mart, touching only the partitions whose content changed.

Each partition gets a fingerprint: its row count and the sum of a 64-bit hash of
every row. The new mart's fingerprints (one Spark job, which also caches the mart)
are compared on the driver with those recorded by the previous write in
`<table>/_fingerprints.json`, checked against the partition folders on disk.
Changed or new partitions are rewritten with `io.overwrite_partitions`, vanished
ones are deleted, identical ones are not touched. No table or record yet, a
different schema, or `full_refresh` means a whole-table `io.replace_table`.
The write counts what it writes (rows and the sum of their hashes) in its own job, and that
must equal the fingerprints of the partitions it rewrote: `WriteResult.rows` is then
the mart's rows on disk (written now, or unchanged since the write that recorded them).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.fingerprint import row_hash
from lakehouse_utils.paths import join
from lakehouse_utils.report import ReconciliationError

# Marts written at once (issue 17).
PARALLEL_WRITES = 3
_WHOLE_TABLE = "__table__"
# Written inside the table folder: Spark readers skip `_` files, and a whole-table swap
# replaces the record together with the data it describes.
FINGERPRINT_FILE = "_fingerprints.json"


@dataclass
class WriteResult:
    """What one mart write did: mode is 'full', 'replaced' (unpartitioned, changed), 'incremental' or 'unchanged'."""

    mode: str
    rows: int
    partitions: int
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    measure_total: float | int | None = None

    def as_details(self) -> dict:
        return {"write_mode": self.mode, "partitions": self.partitions,
                "partitions_written": len(self.written), "partitions_deleted": len(self.deleted)}


def fingerprints(df: DataFrame, partition_col: str | None, measure: str | None = None) -> DataFrame:
    """One row per partition: partition value (as string), rows, content hash, optional measure sum."""
    key = F.col(partition_col).cast("string") if partition_col else F.lit(_WHOLE_TABLE)
    content_hash = row_hash(df, (partition_col,) if partition_col else ())
    return df.groupBy(key.alias("partition")).agg(
        F.count("*").alias("rows"),
        F.sum(content_hash).alias("hash"),
        (F.sum(measure) if measure else F.lit(None)).cast("long").alias("measure"),
    )


def _stored_fingerprints(spark: SparkSession, uri: str, schema: str, partition_col: str | None) -> dict | None:
    """Fingerprints recorded by the last write, checked against the partitions on disk.

    None (meaning: rebuild the whole table) when there is no record, the schema or the
    partitioning changed, or an unpartitioned table has no data file. A partition on disk
    without a record gets fingerprint None, so it is rewritten or deleted; a recorded
    partition missing on disk is forgotten.
    """
    state = io.read_json(spark, join(uri, FINGERPRINT_FILE))
    if state is None or state.get("schema") != schema or state.get("partition_col") != partition_col:
        return None
    recorded = {key: tuple(value) for key, value in state["partitions"].items()}
    if partition_col is None:
        # its data files deleted by hand, the record alone would keep an empty table as it is
        return recorded if io.list_files(spark, uri) else None
    prefix = f"{partition_col}="
    folders = [p["partition"] for p in io.partition_inventory(spark, uri)]
    return {folder[len(prefix):]: recorded.get(folder[len(prefix):]) for folder in folders if folder.startswith(prefix)}


def _record_fingerprints(spark: SparkSession, uri: str, schema: str, partition_col: str | None, new: dict) -> None:
    record = {"schema": schema, "partition_col": partition_col,
              "partitions": {key: [rows, digest] for key, (rows, digest) in new.items()}}
    io.write_json(spark, join(uri, FINGERPRINT_FILE), record)


@dataclass(frozen=True)
class MartWrite:
    """One mart to write: the complete DataFrame, where, how it is partitioned, what to total."""

    name: str
    df: DataFrame
    uri: str
    partition_col: str | None = None
    measure: str | None = None


def write_marts(spark: SparkSession, marts: list[MartWrite], full_refresh: bool = False) -> dict[str, WriteResult]:
    """Write every mart, rewriting only changed partitions; mart name -> what was done.

    The fingerprints of all marts come from one `collect`, so Spark can schedule their
    stages together instead of one small job after another.
    """
    cached = [replace(mart, df=mart.df.persist()) for mart in marts]
    try:
        per_mart = [
            fingerprints(m.df, m.partition_col, m.measure).withColumn("mart", F.lit(m.name)) for m in cached
        ]
        rows = reduce(DataFrame.unionByName, per_mart).collect()
        # Each write is a small job of mostly fixed latency (plan, commit, renames): overlapping a few
        # keeps both cores busy. Marts share nothing on disk.
        with ThreadPoolExecutor(max_workers=PARALLEL_WRITES) as pool:
            results = pool.map(lambda m: _write_one(spark, m, [r for r in rows if r["mart"] == m.name], full_refresh),
                               cached)
            return {m.name: result for m, result in zip(cached, results, strict=True)}
    finally:
        for mart in cached:
            mart.df.unpersist()


def write_mart(
    spark: SparkSession,
    df: DataFrame,
    uri: str,
    partition_col: str | None = None,
    full_refresh: bool = False,
    measure: str | None = None,
) -> WriteResult:
    """Write one complete mart to `uri`, rewriting only changed partitions."""
    return write_marts(spark, [MartWrite("mart", df, uri, partition_col, measure)], full_refresh)["mart"]


def _write_one(spark: SparkSession, mart: MartWrite, rows: list, full_refresh: bool) -> WriteResult:
    schema = mart.df.schema.simpleString()
    old = None if full_refresh else _stored_fingerprints(spark, mart.uri, schema, mart.partition_col)
    new = {r["partition"]: (r["rows"], str(r["hash"])) for r in rows}
    measures = [r["measure"] for r in rows if r["measure"] is not None]
    total = sum(measures) if measures else None
    result = WriteResult("full", sum(n for n, _ in new.values()), len(new), measure_total=total)
    _apply(spark, mart.df, mart.uri, mart.partition_col, new, old, result)
    if result.mode != "unchanged":
        _record_fingerprints(spark, mart.uri, schema, mart.partition_col, new)
    return result


def _apply(
    spark: SparkSession, df: DataFrame, uri: str, partition_col: str | None,
    new: dict, old: dict | None, result: WriteResult,
) -> None:
    """Replace the table, or overwrite changed partitions and delete vanished ones."""
    by = [partition_col] if partition_col else None
    changed = sorted(p for p, fingerprint in new.items() if old is None or old.get(p) != fingerprint)
    vanished = sorted(set(old or ()) - set(new))
    sums = {"hash": row_hash(df, (partition_col,) if partition_col else ())}
    if old is None or (partition_col is None and (changed or vanished)):
        written = io.replace_table(spark, df, uri, partition_by=by, sums=sums)
        result.mode, result.written = ("full" if old is None else "replaced"), sorted(new)
        _check_written(uri, written, [new[p] for p in new])
        return
    result.mode = "incremental" if changed or vanished else "unchanged"
    if changed:
        written = io.overwrite_partitions(
            spark, df.filter(F.col(partition_col).cast("string").isin(changed)), uri,
            partition_by=by, sums=sums,
        )
        _check_written(uri, written, [new[p] for p in changed])
    for value in vanished:
        io.delete(spark, join(uri, f"{partition_col}={value}"))
    result.written, result.deleted = changed, vanished


def _check_written(uri: str, written: io.Written, expected: list[tuple[int, str]]) -> None:
    """The rows the write counted must be the rows the fingerprints describe (same count, same hash sum)."""
    rows, digest = sum(n for n, _ in expected), sum(int(h) for _, h in expected)
    written_digest = int(written.sums["hash"] or 0)
    if (written.rows, written_digest) != (rows, digest):
        raise ReconciliationError(
            f"mart at {uri}: the write received {written.rows} rows (hash sum {written_digest}) but the "
            f"partitions it rewrote hold {rows} rows (hash sum {digest}); the mart is not what Gold computed, "
            "re-run with full_refresh")
