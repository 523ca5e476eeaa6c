"""Content fingerprints: the row count and an order-independent hash of every row of a table.

A row's hash is xxhash64 over all of its columns in a canonical form, plus a mask of
which columns are null (xxhash64 skips nulls, so without it `(a, null)` and
`(null, a)` would collide). The table's hash is the sum of its rows' hashes, so it
does not depend on row order, partitioning or file layout, and changing any value of
any row changes it. Gold's incremental writer (`gold.write`) records it per partition;
the evidence inventory computes it per table, and for a Cassandra table from a full
read of it, with the same canonical form, so that a served table's fingerprint
equals its Gold mart's.

`code_version` fingerprints the code instead: a stage that skips work because its inputs are
unchanged must not skip it once the code that turns them into output has changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache, reduce
from importlib import resources

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

# Doubles are hashed after rounding: sums computed in a different order differ in the last
# bits, and that noise must not count as a change. 1e-9 is far below a cent or a token.
HASH_DECIMALS = 9
_FLOATS = (T.DoubleType, T.FloatType)
_HASH_SUM_TYPE = "decimal(38,0)"  # ANSI mode makes a bigint sum overflow an error; this holds 10^19 rows


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    digest: str  # 16 hex digits: the sum of the row hashes modulo 2^64

    def __str__(self) -> str:
        return f"{self.rows}:{self.digest}"


def canonical(schema_field: T.StructField, as_set: bool = False) -> Column:
    """A column in a form whose hash ignores float noise and map entry order.

    `as_set`: an array whose order carries no meaning (a Cassandra set): sorted, and a
    null array counts as an empty one (Cassandra does not tell them apart).
    """
    column, data_type = F.col(schema_field.name), schema_field.dataType
    if isinstance(data_type, _FLOATS):
        return F.round(column, HASH_DECIMALS)
    if isinstance(data_type, T.ArrayType):
        if isinstance(data_type.elementType, _FLOATS):
            column = F.transform(column, lambda value: F.round(value, HASH_DECIMALS))
        return F.array_sort(F.coalesce(column, F.array().cast(data_type))) if as_set else column
    if isinstance(data_type, T.MapType):
        if isinstance(data_type.valueType, _FLOATS):
            column = F.transform_values(column, lambda _, value: F.round(value, HASH_DECIMALS))
        # Spark refuses to hash maps; sorted entries carry the same content.
        return F.array_sort(F.map_entries(column))
    return column


def row_hash(df: DataFrame, exclude: tuple[str, ...] = (), sets: bool = False) -> Column:
    """xxhash64 over every column except `exclude` (plus their null mask), as decimal so sums cannot overflow."""
    fields = [f for f in df.schema.fields if f.name not in exclude]
    parts = [canonical(f, as_set=sets) for f in fields]
    null_mask = F.concat_ws("", *[F.when(part.isNull(), F.lit("1")).otherwise(F.lit("0")) for part in parts])
    return F.xxhash64(*parts, null_mask).cast(_HASH_SUM_TYPE)


def _aggregate(df: DataFrame, exclude: tuple[str, ...], sets: bool) -> DataFrame:
    return df.agg(F.count(F.lit(1)).alias("rows"), F.sum(row_hash(df, exclude, sets)).alias("hash"))


def _digest(hash_sum) -> str:
    return f"{int(hash_sum or 0) % 2**64:016x}"


def fingerprint(df: DataFrame, exclude: tuple[str, ...] = (), sets: bool = False) -> Fingerprint:
    """The fingerprint of one DataFrame (one Spark job)."""
    return fingerprint_many([df], exclude, sets)[0]


def fingerprint_many(frames: list[DataFrame], exclude: tuple[str, ...] = (), sets: bool = False) -> list[Fingerprint]:
    """Fingerprints of several DataFrames from one `collect` (one row per frame), in order."""
    if not frames:
        return []
    per_frame = [_aggregate(df, exclude, sets).withColumn("__index", F.lit(i)) for i, df in enumerate(frames)]
    rows = {row["__index"]: row for row in reduce(DataFrame.unionByName, per_frame).collect()}
    return [Fingerprint(int(rows[i]["rows"]), _digest(rows[i]["hash"])) for i in range(len(frames))]


@cache
def code_version() -> str:
    """16 hex digits over the package's Python sources and the pyspark version (read once per process).

    Works for a checkout, an installed wheel and the zip shipped to a cluster (importlib.resources)."""
    import pyspark

    digest = hashlib.sha256(pyspark.__version__.encode())

    def add(folder, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                add(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".py"):
                digest.update(f"{prefix}{entry.name}\0".encode())
                digest.update(entry.read_bytes())

    add(resources.files("lakehouse_utils"), "")
    return digest.hexdigest()[:16]
