"""Write a fully computed mart, touching only the partitions whose content changed.

Each partition gets a fingerprint: its row count and the sum of a 64-bit hash of
every row. The new mart's fingerprints (one Spark job, which also caches the mart)
are compared on the driver with those recorded by the previous write in
`<table>/_fingerprints.json`, checked against the partition folders on disk.
Changed or new partitions are rewritten with `io.overwrite_partitions`, vanished
ones are deleted, identical ones are not touched. No table or record yet, a
different schema, or `full_refresh` means a whole-table `io.replace_table`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils import io
from lakehouse_utils.paths import join

# Doubles are hashed after rounding: sums computed in a different order differ in the last
# bits, and that noise must not count as a change. 1e-9 is far below a cent or a token.
HASH_DECIMALS = 9
FILES_PER_PARTITION = 1
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


def _canonical(schema_field: T.StructField) -> Column:
    """A column in a form whose hash ignores float noise and map entry order."""
    column, data_type = F.col(schema_field.name), schema_field.dataType
    if isinstance(data_type, (T.DoubleType, T.FloatType)):
        return F.round(column, HASH_DECIMALS)
    if isinstance(data_type, T.MapType):
        if isinstance(data_type.valueType, (T.DoubleType, T.FloatType)):
            column = F.transform_values(column, lambda _, value: F.round(value, HASH_DECIMALS))
        # Spark refuses to hash maps; sorted entries carry the same content.
        return F.array_sort(F.map_entries(column))
    return column


def row_hash(df: DataFrame, exclude: tuple[str, ...] = ()) -> Column:
    """xxhash64 over every column except `exclude`, as decimal so that sums cannot overflow."""
    parts = [_canonical(f) for f in df.schema.fields if f.name not in exclude]
    # ANSI mode makes a bigint sum overflow an error; decimal(38,0) holds 10^19 rows' worth.
    return F.xxhash64(*parts).cast("decimal(38,0)")


def fingerprints(df: DataFrame, partition_col: str | None, measure: str | None = None) -> DataFrame:
    """One row per partition: partition value (as string), rows, content hash, optional measure sum."""
    key = F.col(partition_col).cast("string") if partition_col else F.lit(_WHOLE_TABLE)
    aggregates = [F.count("*").alias("rows"), F.sum(row_hash(df, (partition_col,) if partition_col else ())).alias("hash")]
    aggregates.append(F.sum(measure).alias("measure") if measure else F.lit(None).alias("measure"))
    return df.groupBy(key.alias("partition")).agg(*aggregates)


def _stored_fingerprints(spark: SparkSession, uri: str, schema: str, partition_col: str | None) -> dict | None:
    """Fingerprints recorded by the last write, checked against the partitions on disk.

    None (meaning: rebuild the whole table) when there is no record or the schema or the
    partitioning changed. A partition on disk without a record gets fingerprint None, so
    it is rewritten or deleted; a recorded partition missing on disk is forgotten.
    """
    state = io.read_json(spark, join(uri, FINGERPRINT_FILE))
    if state is None or state.get("schema") != schema or state.get("partition_col") != partition_col:
        return None
    recorded = {key: tuple(value) for key, value in state["partitions"].items()}
    if partition_col is None:
        return recorded
    prefix = f"{partition_col}="
    on_disk = {p["partition"][len(prefix):] for p in io.partition_inventory(spark, uri) if p["partition"].startswith(prefix)}
    return {key: recorded.get(key) for key in on_disk}


def _record_fingerprints(spark: SparkSession, uri: str, schema: str, partition_col: str | None, new: dict) -> None:
    partitions = {key: [rows, digest] for key, (rows, digest) in new.items()}
    io.write_json(spark, join(uri, FINGERPRINT_FILE), {"schema": schema, "partition_col": partition_col, "partitions": partitions})


def write_mart(
    spark: SparkSession,
    df: DataFrame,
    uri: str,
    partition_col: str | None = None,
    full_refresh: bool = False,
    measure: str | None = None,
) -> WriteResult:
    """Write `df` (the complete mart) to `uri`, rewriting only changed partitions."""
    schema = df.schema.simpleString()
    old = None if full_refresh else _stored_fingerprints(spark, uri, schema, partition_col)
    df = df.persist()
    try:
        rows = fingerprints(df, partition_col, measure).collect()
        new = {r["partition"]: (r["rows"], str(r["hash"])) for r in rows}
        measures = [r["measure"] for r in rows if r["measure"] is not None]
        result = WriteResult("full", sum(n for n, _ in new.values()), len(new), measure_total=sum(measures) if measures else None)
        _apply(spark, df, uri, partition_col, new, old, result)
        if result.mode != "unchanged":
            _record_fingerprints(spark, uri, schema, partition_col, new)
        return result
    finally:
        df.unpersist()


def _apply(
    spark: SparkSession, df: DataFrame, uri: str, partition_col: str | None, new: dict, old: dict | None, result: WriteResult
) -> None:
    """Replace the table, or overwrite changed partitions and delete vanished ones."""
    by = [partition_col] if partition_col else None
    changed = sorted(p for p, fingerprint in new.items() if old is None or old.get(p) != fingerprint)
    vanished = sorted(set(old or ()) - set(new))
    if old is None or (partition_col is None and (changed or vanished)):
        io.replace_table(spark, df, uri, partition_by=by, files_per_partition=FILES_PER_PARTITION)
        result.mode, result.written = ("full" if old is None else "replaced"), sorted(new)
        return
    result.mode = "incremental" if changed or vanished else "unchanged"
    if changed:
        io.overwrite_partitions(
            spark, df.filter(F.col(partition_col).cast("string").isin(changed)), uri,
            partition_by=by, files_per_partition=FILES_PER_PARTITION,
        )
    for value in vanished:
        io.delete(spark, join(uri, f"{partition_col}={value}"))
    result.written, result.deleted = changed, vanished
