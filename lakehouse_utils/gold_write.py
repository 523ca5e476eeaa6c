"""Write a fully computed mart, touching only the partitions whose content changed.

Each partition gets a fingerprint: its row count and the sum of a 64-bit hash of
every row. The new mart's fingerprints and the stored table's are computed in one
Spark job and compared on the driver (one small row per partition). Changed or
new partitions are rewritten with `io.overwrite_partitions`, vanished ones are
deleted, identical ones are not touched. No table yet, a different schema, or
`full_refresh` means a whole-table `io.replace_table`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.errors import AnalysisException
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


def _existing_table(spark: SparkSession, uri: str) -> DataFrame | None:
    """The stored mart, or None when absent or unreadable (e.g. a folder without files)."""
    if not io.exists(spark, uri):
        return None
    try:
        return spark.read.parquet(uri)
    except AnalysisException:
        return None


def _same_schema(stored: DataFrame, new: DataFrame) -> bool:
    """Same column names and types; order and nullability do not matter."""
    def shape(df: DataFrame) -> set[tuple[str, str]]:
        return {(f.name, f.dataType.simpleString()) for f in df.schema.fields}

    return shape(stored) == shape(new)


def write_mart(
    spark: SparkSession,
    df: DataFrame,
    uri: str,
    partition_col: str | None = None,
    full_refresh: bool = False,
    measure: str | None = None,
) -> WriteResult:
    """Write `df` (the complete mart) to `uri`, rewriting only changed partitions."""
    stored = None if full_refresh else _existing_table(spark, uri)
    if stored is not None and not _same_schema(stored, df):
        stored = None
    df = df.persist()
    try:
        new_side = fingerprints(df, partition_col, measure).withColumn("side", F.lit("new"))
        if stored is not None:
            old_side = fingerprints(stored, partition_col).withColumn("side", F.lit("old"))
            new_side = new_side.unionByName(old_side)
        rows = new_side.collect()
        return _apply(spark, df, uri, partition_col, rows, full=stored is None)
    finally:
        df.unpersist()


def _apply(spark: SparkSession, df: DataFrame, uri: str, partition_col: str | None, rows: list, full: bool) -> WriteResult:
    new = {r["partition"]: (r["rows"], r["hash"]) for r in rows if r["side"] == "new"}
    old = {r["partition"]: (r["rows"], r["hash"]) for r in rows if r["side"] == "old"}
    measures = [r["measure"] for r in rows if r["side"] == "new" and r["measure"] is not None]
    result = WriteResult("full", sum(n for n, _ in new.values()), len(new), measure_total=sum(measures) if measures else None)
    by = [partition_col] if partition_col else None
    changed = sorted(p for p, fingerprint in new.items() if old.get(p) != fingerprint)
    vanished = sorted(set(old) - set(new))
    if full or (partition_col is None and (changed or vanished)):
        io.replace_table(spark, df, uri, partition_by=by, files_per_partition=FILES_PER_PARTITION)
        result.written = sorted(new)
        result.mode = "full" if full else "replaced"
        return result
    result.mode = "incremental" if changed or vanished else "unchanged"
    if changed:
        io.overwrite_partitions(
            spark, df.filter(F.col(partition_col).cast("string").isin(changed)), uri,
            partition_by=by, files_per_partition=FILES_PER_PARTITION,
        )
    for value in vanished:
        io.delete(spark, join(uri, f"{partition_col}={value}"))
    result.written, result.deleted = changed, vanished
    return result
