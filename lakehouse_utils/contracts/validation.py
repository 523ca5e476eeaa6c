"""Compare a DataFrame's schema with its contract and say exactly what differs.

Used where a stage reads the table another stage wrote: a missing column or a
changed type there would otherwise fail later as an AnalysisException (or a cast
to null) far from its cause. Only names and types are compared; nullability is
not, because Spark reads every Parquet column back as nullable.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import types as T


@dataclass(frozen=True)
class TableContract:
    """A zone table: its columns in the order the stage writes them, and its partition columns."""

    table: str
    schema: T.StructType
    partition_by: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return self.schema.fieldNames()

    @property
    def stored(self) -> T.StructType:
        """The schema as Spark reads the table back: partition columns move to the end."""
        fields = [f for f in self.schema.fields if f.name not in self.partition_by]
        by_name = {f.name: f for f in self.schema.fields}
        return T.StructType(fields + [by_name[name] for name in self.partition_by])


class SchemaMismatchError(ValueError):
    """A table's columns differ from its contract in lakehouse_utils.contracts."""

    def __init__(self, table: str, missing: list[str], unexpected: list[str], mismatched: list[str],
                 misordered: bool, expected: T.StructType, found: T.StructType, fix: str = ""):
        self.table, self.missing, self.unexpected, self.mismatched = table, missing, unexpected, mismatched
        self.misordered = misordered
        lines = [f"{table} does not match its contract (lakehouse_utils.contracts):"]
        if missing:
            lines.append(f"  missing column(s):    {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected column(s): {', '.join(unexpected)}")
        if mismatched:
            lines.append(f"  type mismatch(es):    {'; '.join(mismatched)}")
        if misordered:
            lines.append("  the columns are in another order")
        lines.append(f"  expected: {describe(expected)}")
        lines.append(f"  found:    {describe(found)}")
        if fix:
            lines.append(f"  fix: {fix}")
        super().__init__("\n".join(lines))


def describe(schema: T.StructType) -> str:
    return ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in schema.fields)


def _without_nullability(dtype: T.DataType) -> T.DataType:
    if isinstance(dtype, T.StructType):
        return T.StructType([T.StructField(f.name, _without_nullability(f.dataType)) for f in dtype.fields])
    if isinstance(dtype, T.ArrayType):
        return T.ArrayType(_without_nullability(dtype.elementType))
    if isinstance(dtype, T.MapType):
        return T.MapType(_without_nullability(dtype.keyType), _without_nullability(dtype.valueType))
    return dtype


def project(schema: T.StructType, columns: tuple[str, ...] | list[str]) -> T.StructType:
    """The contract of only `columns` (what a reader selects), in that order."""
    by_name = {f.name: f for f in schema.fields}
    unknown = [c for c in columns if c not in by_name]
    if unknown:
        raise KeyError(f"column(s) {unknown} are not in the contract ({describe(schema)})")
    return T.StructType([by_name[c] for c in columns])


def validate_schema(
    df_or_schema: DataFrame | T.StructType, expected: T.StructType | TableContract, *, table: str,
    allow_extra: bool = False, ordered: bool = False, fix: str = "",
    error: type[SchemaMismatchError] = SchemaMismatchError,
) -> T.StructType:
    """Return the found schema when it matches `expected`; raise `error` listing every difference.

    `allow_extra` accepts columns beyond the contract (a reader that selects a subset);
    `ordered` also requires the contract's column order. A TableContract is compared
    in its stored (read-back) order. Reading `df.schema` starts no Spark job.
    """
    found = df_or_schema if isinstance(df_or_schema, T.StructType) else df_or_schema.schema
    wanted = expected.stored if isinstance(expected, TableContract) else expected
    found_types = {f.name: f.dataType for f in found.fields}
    wanted_names = wanted.fieldNames()
    missing = [f"{f.name} {f.dataType.simpleString()}" for f in wanted.fields if f.name not in found_types]
    unexpected = [] if allow_extra else [
        f"{f.name} {f.dataType.simpleString()}" for f in found.fields if f.name not in wanted_names
    ]
    mismatched = [
        f"{f.name}: expected {f.dataType.simpleString()}, found {found_types[f.name].simpleString()}"
        for f in wanted.fields
        if f.name in found_types and _without_nullability(found_types[f.name]) != _without_nullability(f.dataType)
    ]
    found_order = [name for name in found.fieldNames() if name in wanted_names]
    misordered = ordered and not missing and found_order != wanted_names
    if missing or unexpected or mismatched or misordered:
        raise error(table, missing, unexpected, mismatched, misordered, wanted, found, fix)
    return found
