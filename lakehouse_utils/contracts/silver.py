"""Silver tables and their quarantines: conformed masters, usage events, daily features.

Column meanings: docs/table_contracts.md, "Silver". Each schema is in the order the
Silver stage writes it; `TableContract.stored` gives the read-back order.
"""

from __future__ import annotations

from pyspark.sql import types as T

from lakehouse_utils.contracts.bronze import BRONZE_EVENTS_SCHEMA, struct
from lakehouse_utils.contracts.landing import TECHNICAL_COLUMNS, master_schema
from lakehouse_utils.contracts.validation import TableContract, project

_S, _D, _B, _N, _L, _I = T.StringType(), T.DateType(), T.BooleanType(), T.DoubleType(), T.LongType(), T.IntegerType()
_TS = T.TimestampType()
_TECHNICAL = (("ingest_ts", _TS), ("source_file", _S), ("run_id", _S))

_MASTER_COLUMNS: dict[str, tuple[tuple[str, T.DataType], ...]] = {
    "customers_orgs": (
        ("org_id", _S), ("org_name", _S), ("industry", _S), ("hq_region", _S), ("plan_tier", _S),
        ("is_enterprise", _B), ("signup_date", _D), ("sales_rep", _S), ("lifecycle_stage", _S),
        ("marketing_source", _S), ("nps_score", _N), ("is_nps_out_of_range", _B), ("active_users", _L),
    ),
    "users": (
        ("user_id", _S), ("org_id", _S), ("email", _S), ("role", _S), ("active", _B), ("created_date", _D),
        ("last_login_date", _D),
    ),
    "resources": (
        ("resource_id", _S), ("org_id", _S), ("service", _S), ("region", _S), ("created_date", _D), ("state", _S),
        ("tags_json", _S), ("tags", T.ArrayType(_S)), ("tags_map", T.MapType(_S, _S)), ("is_tags_unparsable", _B),
    ),
    "support_tickets": (
        ("ticket_id", _S), ("org_id", _S), ("category", _S), ("severity", _S), ("created_date", _D),
        ("resolved_date", _D), ("is_open", _B), ("resolution_days", _I), ("csat", _N), ("is_csat_out_of_scale", _B),
        ("sla_breached", _B),
    ),
    "billing_monthly": (
        ("invoice_id", _S), ("org_id", _S), ("month", _D), ("currency", _S), ("subtotal", _N), ("credits", _N),
        ("taxes", _N), ("exchange_rate_to_usd", _N), ("fx_rate_applied", _N), ("subtotal_usd", _N),
        ("credits_usd", _N), ("taxes_usd", _N), ("net_usd", _N), ("is_credits_defaulted", _B),
        ("is_usd_rate_overridden", _B), ("is_ars_rate_ignored", _B), ("is_adjustment", _B),
    ),
    "nps_surveys": (
        ("org_id", _S), ("survey_date", _D), ("nps_score", _N), ("comment", _S), ("is_nps_out_of_range", _B),
    ),
    "marketing_touches": (
        ("touch_id", _S), ("org_id", _S), ("campaign", _S), ("channel", _S), ("touch_date", _D), ("clicked", _B),
        ("converted", _B),
    ),
}
# silver/<master>: the conformed columns, then ingest_ts, source_file (of the Bronze row) and the Silver run id.
SILVER_MASTERS: dict[str, TableContract] = {
    table: TableContract(f"silver/{table}", struct(*columns, *_TECHNICAL))
    for table, columns in _MASTER_COLUMNS.items()
}

ORG_ENRICHMENT = ("org_name", "industry", "plan_tier", "hq_region", "lifecycle_stage")
SILVER_EVENTS = TableContract("silver/usage_events", struct(
    ("event_id", _S), ("event_ts", _TS), ("usage_date", _D), ("org_id", _S), ("resource_id", _S), ("service", _S),
    ("region", _S), ("metric", _S), ("value", _N), ("unit", _S), ("cost_usd_increment", _N), ("schema_version", _I),
    ("carbon_kg", _N), ("genai_tokens", _L), ("is_value_not_numeric", _B), ("is_unit_imputed", _B),
    ("is_carbon_not_finite", _B), ("is_late", _B), ("is_cost_spike", _B), *[(name, _S) for name in ORG_ENRICHMENT],
    ("resource_state", _S), ("resource_tags", T.MapType(_S, _S)), *_TECHNICAL,
), ("usage_date",))

SILVER_DAILY = TableContract("silver/org_service_daily", struct(
    ("org_id", _S), ("usage_date", _D), ("service", _S), ("daily_cost_usd", _N), ("requests", _N),
    ("cpu_hours", _N), ("storage_gb_hours", _N), ("genai_tokens", _L), ("carbon_kg", _N), ("event_count", _L),
    ("z_score", _N), ("is_anomaly_zscore", _B), ("mad_score", _N), ("is_anomaly_mad", _B), ("pct_rank", _N),
    ("is_anomaly_pctl", _B), ("anomaly_votes", _I), ("is_anomaly", _B), ("baseline_cost_usd", _N), ("run_id", _S),
), ("usage_date",))

SILVER_TABLES: dict[str, TableContract] = {
    **SILVER_MASTERS, "usage_events": SILVER_EVENTS, "org_service_daily": SILVER_DAILY,
}

# The Bronze event columns Silver reads (type_error_line is only carried into the quarantine).
BRONZE_EVENTS_READ = project(BRONZE_EVENTS_SCHEMA, [n for n in BRONZE_EVENTS_SCHEMA.fieldNames()
                                                    if n != "type_error_line"])
_QUARANTINE_TAIL = (("rule", _S), ("reason", _S), ("run_id", _S), ("quarantined_at", _TS))


def _source_columns(columns) -> list[tuple[str, T.DataType]]:
    """A quarantined row keeps its source columns; the source's run_id becomes source_run_id."""
    return [("source_run_id" if name == "run_id" else name, dtype) for name, dtype in columns]


def master_quarantine_silver(table: str) -> TableContract:
    """quarantine/<master>_silver: the Bronze row as it was, then rule, reason, run id and time."""
    columns = _source_columns([*master_schema(table).columns, *TECHNICAL_COLUMNS])
    return TableContract(f"quarantine/{table}_silver", struct(*columns, *_QUARANTINE_TAIL))


EVENTS_QUARANTINE = TableContract("quarantine/usage_events", struct(
    *_source_columns((f.name, f.dataType) for f in BRONZE_EVENTS_SCHEMA.fields), ("usage_date", _D),
    *_QUARANTINE_TAIL,
), ("usage_date",))
