"""Bronze tables and their quarantines: the seven masters and the usage events.

Column meanings: docs/table_contracts.md, "Bronze". Schemas here are exactly what
the Bronze stages write (tests/test_contracts.py compares them on a generated run).
"""

from __future__ import annotations

from pyspark.sql import types as T

from lakehouse_utils.contracts.landing import TECHNICAL_COLUMNS, master_schema
from lakehouse_utils.contracts.validation import TableContract

_S, _L, _TS = T.StringType(), T.LongType(), T.TimestampType()


def struct(*columns: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(name, dtype, True) for name, dtype in columns])


# Partition column -> the date column it is derived from (None: the column itself, already monthly).
# Monthly, not daily: a day holds ~10 tickets or touches, so daily partitions meant ~120 files
# of 4 KB per table and twice the stage time (measured, see docs/decisions/030-bronze-batch.md).
BRONZE_PARTITIONING: dict[str, tuple[str, str | None]] = {
    "billing_monthly": ("month", None),
    "support_tickets": ("created_month", "created_at"),
    "marketing_touches": ("touch_month", "timestamp"),
}


def bronze_struct(source: str) -> T.StructType:
    """Schema of `bronze/<source>` as Spark reads it back (partition column last)."""
    schema = master_schema(source)
    partition_column, copied_from = BRONZE_PARTITIONING.get(source, (None, None))
    fields = [T.StructField(n, d, True) for n, d in schema.columns if n != partition_column or copied_from]
    fields += [T.StructField(n, d, True) for n, d in TECHNICAL_COLUMNS]
    if partition_column:
        fields.append(T.StructField(partition_column, T.DateType(), True))
    return T.StructType(fields)


def bronze_input_struct(source: str) -> T.StructType:
    """The columns of `bronze/<source>` that Silver reads: the typed CSV columns and the technical ones."""
    return struct(*master_schema(source).columns, *TECHNICAL_COLUMNS)


def master_quarantine_struct(source: str) -> T.StructType:
    """`quarantine/<master>`: rule and reason, the CSV fields as text, where the record was."""
    return struct(
        ("rule", _S), ("reason", _S), *[(name, _S) for name in master_schema(source).column_names],
        ("raw_line", _S), ("line_number", _L), ("record_number", _L), ("source_file", _S), ("run_id", _S),
        ("quarantined_at", _TS),
    )


# Business fields of an event, in contract order; the content hash covers these (event_ts aside).
EVENT_FIELDS: tuple[tuple[str, T.DataType], ...] = (
    ("event_id", T.StringType()), ("event_ts", T.TimestampType()), ("timestamp_raw", T.StringType()),
    ("org_id", T.StringType()), ("resource_id", T.StringType()), ("service", T.StringType()),
    ("region", T.StringType()), ("metric", T.StringType()), ("unit", T.StringType()),
    ("value_raw", T.StringType()), ("cost_usd_increment", T.DoubleType()), ("schema_version", T.IntegerType()),
    ("carbon_kg", T.DoubleType()), ("genai_tokens", T.LongType()),
)

# bronze/usage_events, column order of docs/table_contracts.md (+ type_error_line, added by this stage).
BRONZE_EVENTS_SCHEMA = T.StructType(
    [T.StructField(name, dtype) for name, dtype in EVENT_FIELDS]
    + [T.StructField(name, dtype) for name, dtype in (
        ("content_hash", T.StringType()), ("is_late", T.BooleanType()), ("lateness_seconds", T.LongType()),
        ("type_error_line", T.StringType()), ("ingest_ts", T.TimestampType()), ("source_file", T.StringType()),
        ("run_id", T.StringType()), ("batch_id", T.LongType()), ("event_date", T.DateType()),
        ("ingest_date", T.DateType()),
    )]
)
BRONZE_EVENTS_COLUMNS = tuple(BRONZE_EVENTS_SCHEMA.fieldNames())
# Bronze events are partitioned by the UTC date their micro-batch was committed (ADR 048).
BRONZE_PARTITION = "ingest_date"
BRONZE_EVENTS = TableContract("bronze/usage_events", BRONZE_EVENTS_SCHEMA, (BRONZE_PARTITION,))

# quarantine/usage_events_raw
RAW_QUARANTINE_SCHEMA = T.StructType([T.StructField(name, dtype) for name, dtype in (
    ("rule", T.StringType()), ("reason", T.StringType()), ("raw_line", T.StringType()),
    ("event_id", T.StringType()), ("source_file", T.StringType()), ("line_number", T.LongType()),
    ("run_id", T.StringType()), ("batch_id", T.LongType()), ("quarantined_at", T.TimestampType()),
)])
