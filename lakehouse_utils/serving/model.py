"""Which Gold mart feeds which Cassandra table, and the row shape each table receives.

One `ServingTable` per CQL file in `cql/`. Its `columns` function is the schema
contract: an explicit select from the Gold mart to the table's columns, in CQL
column order, cast to the types the CQL declares (text/date/double/bigint/int/
boolean; arrays become sets, maps stay maps). The time bucket of the partition
key is derived here, never trusted from Gold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

MONTH_FORMAT = "yyyy-MM"


@dataclass(frozen=True)
class ServingTable:
    """A query-first Cassandra table loaded from one Gold mart."""

    name: str
    mart: str
    columns: Callable[[], list[tuple[str, Column]]]
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...]
    date_column: str
    top_org_measure: str | None = None

    @property
    def primary_key(self) -> tuple[str, ...]:
        return self.partition_key + self.clustering

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns()]

    def select_columns(self) -> list[Column]:
        return [column.alias(name) for name, column in self.columns()]

    def insert_cql(self) -> str:
        names = self.column_names
        return f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"

    def delete_cql(self) -> str:
        return f"DELETE FROM {self.name} WHERE {' AND '.join(f'{key} = ?' for key in self.primary_key)}"


Columns = list[tuple[str, Column]]


def _month(name: str, date_column: str) -> Columns:
    return [(name, F.date_format(date_column, MONTH_FORMAT))]


def _typed(names: tuple[str, ...], spark_type: str) -> Columns:
    return [(name, F.col(name).cast(spark_type)) for name in names]


def _date(*names: str) -> Columns:
    return _typed(names, "date")


def _int(*names: str) -> Columns:
    return _typed(names, "int")


def _boolean(*names: str) -> Columns:
    return _typed(names, "boolean")


def _as_is(*names: str) -> Columns:
    """Collections: Gold arrays/maps are bound as Cassandra sets/maps unchanged."""
    return [(name, F.col(name)) for name in names]


def _text(*names: str) -> Columns:
    return _typed(names, "string")


def _double(*names: str) -> Columns:
    return _typed(names, "double")


def _bigint(*names: str) -> Columns:
    return _typed(names, "long")


def _daily_usage_columns() -> Columns:
    return [
        *_text("org_id"), *_month("usage_month", "usage_date"), *_date("usage_date"), *_text("service"),
        *_double("daily_cost_usd", "requests", "cpu_hours", "storage_gb_hours"), *_bigint("genai_tokens"),
        *_double("carbon_kg"), *_bigint("event_count"), *_text("org_name", "industry", "plan_tier", "hq_region"),
        *_boolean("is_anomaly"), *_as_is("anomaly_methods"),
    ]


def _top_services_columns() -> Columns:
    return [
        *_text("org_id"), *_date("as_of_date"), *_int("rank"), *_text("service"),
        *_double("cost_14d_usd", "requests_14d"), *_date("window_start"),
    ]


def _ticket_measures() -> Columns:
    return [
        *_bigint("tickets_opened", "critical_count", "sla_breach_count"), *_double("sla_breach_rate", "mean_csat"),
        *_bigint("csat_responses", "open_count"), *_as_is("categories"),
    ]


def _tickets_by_severity_columns() -> Columns:
    return [
        *_text("severity"), *_month("created_month", "created_date"), *_date("created_date"),
        *_ticket_measures(), *_bigint("org_count"), *_as_is("org_ids"),
    ]


def _revenue_columns() -> Columns:
    return [
        *_text("org_id"), ("billing_year", F.year("month")), *_date("month"), *_text("currency"),
        *_double("subtotal", "credits", "taxes", "net_amount", "fx_rate_applied"),
        *_double("subtotal_usd", "credits_usd", "taxes_usd", "net_usd"), *_boolean("is_refund"), *_int("invoice_count"),
    ]


def _genai_columns() -> Columns:
    return [
        *_text("org_id"), *_month("usage_month", "usage_date"), *_date("usage_date"),
        *_bigint("total_tokens"), *_double("estimated_cost_usd"), *_bigint("genai_event_count"),
    ]


def _anomaly_columns() -> Columns:
    return [
        *_text("org_id"), *_month("usage_month", "usage_date"), *_date("usage_date"), *_text("service"),
        *_double("daily_cost_usd", "baseline_cost_usd", "z_score", "mad_score", "pct_rank"),
        *_boolean("is_anomaly_zscore", "is_anomaly_mad", "is_anomaly_pctl"), *_int("anomaly_votes"),
        *_boolean("is_anomaly"), *_as_is("anomaly_methods", "method_scores"),
    ]


def _tickets_by_org_columns() -> Columns:
    return [
        *_text("org_id"), *_month("created_month", "created_date"), *_date("created_date"), *_text("severity"),
        *_ticket_measures(),
    ]


# Columns start with the partition key: the writer batches rows by their first len(partition_key) values.
SERVING_TABLES: tuple[ServingTable, ...] = (
    ServingTable("daily_usage_by_org_month", "org_daily_usage_by_service", _daily_usage_columns,
                 ("org_id", "usage_month"), ("usage_date", "service"), "usage_date", "daily_cost_usd"),
    ServingTable("top_services_by_org_date", "top_services_14d", _top_services_columns,
                 ("org_id", "as_of_date"), ("rank",), "as_of_date", None),
    ServingTable("tickets_by_severity_month", "tickets_by_date_severity", _tickets_by_severity_columns,
                 ("severity", "created_month"), ("created_date",), "created_date", None),
    ServingTable("revenue_by_org_year", "revenue_by_org_month", _revenue_columns,
                 ("org_id", "billing_year"), ("month",), "month", "net_usd"),
    ServingTable("genai_usage_by_org_month", "genai_tokens_by_org_date", _genai_columns,
                 ("org_id", "usage_month"), ("usage_date",), "usage_date", "total_tokens"),
    ServingTable("cost_anomalies_by_org_month", "cost_anomaly_mart", _anomaly_columns,
                 ("org_id", "usage_month"), ("usage_date", "service"), "usage_date", "daily_cost_usd"),
    ServingTable("tickets_by_org_month", "tickets_by_org_date", _tickets_by_org_columns,
                 ("org_id", "created_month"), ("created_date", "severity"), "created_date", "tickets_opened"),
)
METADATA_TABLE = "serving_metadata"


def serving_table(name: str) -> ServingTable:
    for table in SERVING_TABLES:
        if table.name == name:
            return table
    raise KeyError(f"unknown serving table {name!r}; expected one of {[t.name for t in SERVING_TABLES]}")
