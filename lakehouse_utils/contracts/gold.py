"""Gold marts: columns in the order the mart builders select them, and the partition column.

Column meanings and grains: docs/data_dictionary.md. The builders in
lakehouse_utils/gold/marts.py and gold/tickets.py end with an explicit select that
produces exactly these schemas (tests/test_contracts.py checks it on a generated run).
"""

from __future__ import annotations

from pyspark.sql import types as T

from lakehouse_utils.contracts.bronze import struct
from lakehouse_utils.contracts.validation import TableContract

_S, _D, _B, _N, _L, _I = T.StringType(), T.DateType(), T.BooleanType(), T.DoubleType(), T.LongType(), T.IntegerType()

# Mart -> partition column (None: unpartitioned; such a mart is a few thousand rows at most).
MART_PARTITIONS: dict[str, str | None] = {
    "org_daily_usage_by_service": "usage_date",
    "revenue_by_org_month": None,
    "cost_anomaly_mart": None,
    "tickets_by_org_date": None,
    "tickets_by_date_severity": None,
    "genai_tokens_by_org_date": None,
    "top_services_14d": "as_of_date",
}
MARTS = tuple(MART_PARTITIONS)

_TICKET_MEASURES = (
    ("tickets_opened", _L), ("critical_count", _L), ("sla_breach_count", _L), ("sla_breach_rate", _N),
    ("mean_csat", _N), ("csat_responses", _L), ("open_count", _L), ("categories", T.MapType(_S, _L)),
)
_MART_COLUMNS: dict[str, tuple[tuple[str, T.DataType], ...]] = {
    "org_daily_usage_by_service": (
        ("org_id", _S), ("usage_date", _D), ("service", _S), ("daily_cost_usd", _N), ("requests", _N),
        ("cpu_hours", _N), ("storage_gb_hours", _N), ("genai_tokens", _L), ("carbon_kg", _N), ("event_count", _L),
        ("org_name", _S), ("industry", _S), ("plan_tier", _S), ("hq_region", _S), ("is_anomaly", _B),
        ("anomaly_methods", T.ArrayType(_S)), ("usage_month", _S),
    ),
    "revenue_by_org_month": (
        ("org_id", _S), ("month", _D), ("currency", _S), ("subtotal", _N), ("credits", _N), ("taxes", _N),
        ("net_amount", _N), ("fx_rate_applied", _N), ("subtotal_usd", _N), ("credits_usd", _N), ("taxes_usd", _N),
        ("net_usd", _N), ("is_refund", _B), ("invoice_count", _I),
    ),
    "cost_anomaly_mart": (
        ("org_id", _S), ("usage_date", _D), ("service", _S), ("daily_cost_usd", _N), ("baseline_cost_usd", _N),
        ("z_score", _N), ("mad_score", _N), ("pct_rank", _N), ("is_anomaly_zscore", _B), ("is_anomaly_mad", _B),
        ("is_anomaly_pctl", _B), ("anomaly_votes", _I), ("is_anomaly", _B), ("anomaly_methods", T.ArrayType(_S)),
        ("method_scores", T.MapType(_S, _N)),
    ),
    "tickets_by_org_date": (("org_id", _S), ("created_date", _D), ("severity", _S), *_TICKET_MEASURES),
    "tickets_by_date_severity": (
        ("created_date", _D), ("severity", _S), *_TICKET_MEASURES, ("org_count", _L), ("org_ids", T.ArrayType(_S)),
    ),
    "genai_tokens_by_org_date": (
        ("org_id", _S), ("usage_date", _D), ("total_tokens", _L), ("estimated_cost_usd", _N),
        ("genai_event_count", _L),
    ),
    "top_services_14d": (
        ("org_id", _S), ("as_of_date", _D), ("rank", _I), ("service", _S), ("cost_14d_usd", _N),
        ("requests_14d", _N), ("window_start", _D),
    ),
}
GOLD_MARTS: dict[str, TableContract] = {
    mart: TableContract(f"gold/{mart}", struct(*_MART_COLUMNS[mart]),
                        (MART_PARTITIONS[mart],) if MART_PARTITIONS[mart] else ())
    for mart in MARTS
}
