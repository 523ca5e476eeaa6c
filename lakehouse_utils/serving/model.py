"""Which Gold mart feeds which Cassandra table, and the row shape each table receives.

One `ServingTable` per CQL file in `cql/`. Its `columns` function is an explicit
select from the Gold mart to the table's row contract (`contracts.SERVING_ROWS`):
CQL column order, cast to the types the CQL declares (text/date/double/bigint/int/
boolean; arrays become sets, maps stay maps). The time bucket of the partition
key is derived here, never trusted from Gold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils.contracts import SERVING_ROWS

MONTH_FORMAT = "yyyy-MM"
# Time buckets of the partition keys, derived from the row's own date (never taken from Gold).
_DERIVED: dict[str, Callable[[], Column]] = {
    "usage_month": lambda: F.date_format("usage_date", MONTH_FORMAT),
    "created_month": lambda: F.date_format("created_date", MONTH_FORMAT),
    "billing_year": lambda: F.year("month"),
}


@dataclass(frozen=True)
class ServingTable:
    """A query-first Cassandra table loaded from one Gold mart."""

    name: str
    mart: str
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...]
    date_column: str
    top_org_measure: str | None = None

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.partition_key + self.clustering

    def columns(self) -> list[tuple[str, Column]]:
        """(name, expression) per column of the row contract: buckets derived, collections as they are,
        scalars cast to the contract type."""
        selected = []
        for field in SERVING_ROWS[self.name].fields:
            if field.name in _DERIVED:
                selected.append((field.name, _DERIVED[field.name]()))
            elif isinstance(field.dataType, (T.ArrayType, T.MapType)):
                selected.append((field.name, F.col(field.name)))  # bound as Cassandra sets/maps unchanged
            else:
                selected.append((field.name, F.col(field.name).cast(field.dataType)))
        return selected

    @property
    def column_names(self) -> list[str]:
        return SERVING_ROWS[self.name].fieldNames()

    def select_columns(self) -> list[Column]:
        return [column.alias(name) for name, column in self.columns()]

    def insert_cql(self) -> str:
        names = self.column_names
        return f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"

    def delete_cql(self) -> str:
        return f"DELETE FROM {self.name} WHERE {' AND '.join(f'{key} = ?' for key in self.primary_key)}"


# Columns start with the partition key: the writer batches rows by their first len(partition_key) values.
SERVING_TABLES: tuple[ServingTable, ...] = (
    ServingTable("daily_usage_by_org_month", "org_daily_usage_by_service",
                 ("org_id", "usage_month"), ("usage_date", "service"), "usage_date", "daily_cost_usd"),
    ServingTable("top_services_by_org_date", "top_services_14d",
                 ("org_id", "as_of_date"), ("rank",), "as_of_date", None),
    ServingTable("tickets_by_severity_month", "tickets_by_date_severity",
                 ("severity", "created_month"), ("created_date",), "created_date", None),
    ServingTable("revenue_by_org_year", "revenue_by_org_month",
                 ("org_id", "billing_year"), ("month",), "month", "net_usd"),
    ServingTable("genai_usage_by_org_month", "genai_tokens_by_org_date",
                 ("org_id", "usage_month"), ("usage_date",), "usage_date", "total_tokens"),
    ServingTable("cost_anomalies_by_org_month", "cost_anomaly_mart",
                 ("org_id", "usage_month"), ("usage_date", "service"), "usage_date", "daily_cost_usd"),
    ServingTable("tickets_by_org_month", "tickets_by_org_date",
                 ("org_id", "created_month"), ("created_date", "severity"), "created_date", "tickets_opened"),
)
METADATA_TABLE = "serving_metadata"


def serving_table(name: str) -> ServingTable:
    for table in SERVING_TABLES:
        if table.name == name:
            return table
    raise KeyError(f"unknown serving table {name!r}; expected one of {[t.name for t in SERVING_TABLES]}")
