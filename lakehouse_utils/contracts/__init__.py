"""The schema of every zone table, in one place, and `validate_schema` to check one.

- `landing`: the seven CSV masters (header in file order, types, natural keys);
- `bronze`: bronze/<master>, bronze/usage_events and their quarantines;
- `silver`: the conformed masters, usage events, daily features and their quarantines;
- `gold`: the seven marts and their partition columns;
- `serving`: the rows of each Cassandra table.

A reader that gets a table of another stage checks it with `validate_schema`, which
raises `SchemaMismatchError` (a ValueError) listing the missing, unexpected and
mistyped columns, instead of a Java error later. docs/table_contracts.md explains
the columns.
"""

from lakehouse_utils.contracts.bronze import (
    BRONZE_EVENTS,
    BRONZE_EVENTS_COLUMNS,
    BRONZE_EVENTS_SCHEMA,
    BRONZE_PARTITIONING,
    EVENT_FIELDS,
    RAW_QUARANTINE_SCHEMA,
    bronze_input_struct,
    bronze_struct,
    master_quarantine_struct,
)
from lakehouse_utils.contracts.gold import GOLD_MARTS, MART_PARTITIONS, MARTS
from lakehouse_utils.contracts.landing import (
    MASTER_SCHEMAS,
    MASTER_SOURCES,
    TECHNICAL_COLUMNS,
    MasterSchema,
    csv_header,
    header_problems,
    master_schema,
)
from lakehouse_utils.contracts.serving import SERVING_ROWS
from lakehouse_utils.contracts.silver import (
    BRONZE_EVENTS_READ,
    EVENTS_QUARANTINE,
    ORG_ENRICHMENT,
    SILVER_DAILY,
    SILVER_EVENTS,
    SILVER_MASTERS,
    SILVER_TABLES,
    master_quarantine_silver,
)
from lakehouse_utils.contracts.validation import SchemaMismatchError, TableContract, project, validate_schema

__all__ = [
    "BRONZE_EVENTS", "BRONZE_EVENTS_COLUMNS", "BRONZE_EVENTS_READ", "BRONZE_EVENTS_SCHEMA",
    "BRONZE_PARTITIONING", "EVENTS_QUARANTINE", "EVENT_FIELDS", "GOLD_MARTS", "MARTS", "MART_PARTITIONS",
    "MASTER_SCHEMAS", "MASTER_SOURCES", "ORG_ENRICHMENT", "RAW_QUARANTINE_SCHEMA", "SERVING_ROWS",
    "SILVER_DAILY", "SILVER_EVENTS", "SILVER_MASTERS", "SILVER_TABLES", "TECHNICAL_COLUMNS", "MasterSchema",
    "SchemaMismatchError", "TableContract", "bronze_input_struct", "bronze_struct", "csv_header",
    "header_problems", "master_quarantine_silver", "master_quarantine_struct", "master_schema", "project",
    "validate_schema",
]
