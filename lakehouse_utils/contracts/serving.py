"""Rows loaded into the Cassandra tables: one schema per table of lakehouse_utils/serving/cql/.

Columns are in CQL column order, partition key first (the writer batches rows by
their first values), with the Spark types the CQL types bind from: text -> string,
bigint -> long, set<text> -> array<string>, map -> map. `serving/model.py` builds
each table's select from these; the month and year buckets are derived there.
"""

from __future__ import annotations

from pyspark.sql import types as T

from lakehouse_utils.contracts.bronze import struct

_S, _D, _B, _N, _L, _I = T.StringType(), T.DateType(), T.BooleanType(), T.DoubleType(), T.LongType(), T.IntegerType()
_TICKET_MEASURES = (
    ("tickets_opened", _L), ("critical_count", _L), ("sla_breach_count", _L), ("sla_breach_rate", _N),
    ("mean_csat", _N), ("csat_responses", _L), ("open_count", _L), ("categories", T.MapType(_S, _L)),
)

SERVING_ROWS: dict[str, T.StructType] = {
    "daily_usage_by_org_month": struct(
        ("org_id", _S), ("usage_month", _S), ("usage_date", _D), ("service", _S), ("daily_cost_usd", _N),
        ("requests", _N), ("cpu_hours", _N), ("storage_gb_hours", _N), ("genai_tokens", _L), ("carbon_kg", _N),
        ("event_count", _L), ("org_name", _S), ("industry", _S), ("plan_tier", _S), ("hq_region", _S),
        ("is_anomaly", _B), ("anomaly_methods", T.ArrayType(_S)),
    ),
    "top_services_by_org_date": struct(
        ("org_id", _S), ("as_of_date", _D), ("rank", _I), ("service", _S), ("cost_14d_usd", _N),
        ("requests_14d", _N), ("window_start", _D),
    ),
    "tickets_by_severity_month": struct(
        ("severity", _S), ("created_month", _S), ("created_date", _D), *_TICKET_MEASURES, ("org_count", _L),
        ("org_ids", T.ArrayType(_S)),
    ),
    "revenue_by_org_year": struct(
        ("org_id", _S), ("billing_year", _I), ("month", _D), ("currency", _S), ("subtotal", _N), ("credits", _N),
        ("taxes", _N), ("net_amount", _N), ("fx_rate_applied", _N), ("subtotal_usd", _N), ("credits_usd", _N),
        ("taxes_usd", _N), ("net_usd", _N), ("is_refund", _B), ("invoice_count", _I),
    ),
    "genai_usage_by_org_month": struct(
        ("org_id", _S), ("usage_month", _S), ("usage_date", _D), ("total_tokens", _L), ("estimated_cost_usd", _N),
        ("genai_event_count", _L),
    ),
    "cost_anomalies_by_org_month": struct(
        ("org_id", _S), ("usage_month", _S), ("usage_date", _D), ("service", _S), ("daily_cost_usd", _N),
        ("baseline_cost_usd", _N), ("z_score", _N), ("mad_score", _N), ("pct_rank", _N), ("is_anomaly_zscore", _B),
        ("is_anomaly_mad", _B), ("is_anomaly_pctl", _B), ("anomaly_votes", _I), ("is_anomaly", _B),
        ("anomaly_methods", T.ArrayType(_S)), ("method_scores", T.MapType(_S, _N)),
    ),
    "tickets_by_org_month": struct(
        ("org_id", _S), ("created_month", _S), ("created_date", _D), ("severity", _S), *_TICKET_MEASURES,
    ),
}
