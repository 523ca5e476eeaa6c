"""Gold mart builders: one DataFrame -> DataFrame function per mart, no I/O.

Inputs are Silver-shaped DataFrames (docs/table_contracts.md); outputs follow
docs/data_dictionary.md. Every function ends with an explicit `select`, which is
the mart's schema contract.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from lakehouse_utils.contracts.gold import MART_PARTITIONS, MARTS  # noqa: F401  (re-exported for gold.stage)

# Method name (as published in anomaly_methods / method_scores) -> Silver flag and score columns.
ANOMALY_METHODS: dict[str, tuple[str, str]] = {
    "zscore": ("is_anomaly_zscore", "z_score"),
    "mad": ("is_anomaly_mad", "mad_score"),
    "percentile": ("is_anomaly_pctl", "pct_rank"),
}
GENAI_SERVICE = "genai"
CRITICAL_SEVERITY = "critical"
UNKNOWN = "unknown"
TOP_N_WINDOW_DAYS = 14
# Ranking compares 14-day costs at micro-dollar precision, so float noise in the last bits
# of a sum never decides a tie: equal costs fall through to the service name.
RANK_DECIMALS = 6

DAILY_METRICS = ("requests", "cpu_hours", "storage_gb_hours")
ORG_ATTRIBUTES = ("org_name", "industry", "plan_tier", "hq_region")


def anomaly_methods_col() -> Column:
    """Names of the methods whose Silver flag is true, in a fixed order."""
    names = [F.when(F.col(flag), F.lit(name)) for name, (flag, _) in ANOMALY_METHODS.items()]
    return F.array_compact(F.array(*names))


def _flag(name: str) -> Column:
    """A Silver anomaly flag with null (not computable) read as 'not flagged'."""
    return F.coalesce(F.col(name), F.lit(False))


def build_org_daily_usage(daily_df: DataFrame, orgs_df: DataFrame) -> DataFrame:
    """org_daily_usage_by_service: Silver daily features + org attributes + anomaly summary.

    Org attributes are joined after aggregation (the daily table is already one row
    per key), so the join cannot multiply costs; the caller checks org_id is unique.
    """
    orgs = orgs_df.select("org_id", *ORG_ATTRIBUTES)
    usage = daily_df.select(
        "org_id", "usage_date", "service", "daily_cost_usd", *DAILY_METRICS,
        "genai_tokens", "carbon_kg", "event_count", "is_anomaly",
        anomaly_methods_col().alias("anomaly_methods"),
    )
    joined = usage.join(F.broadcast(orgs), on="org_id", how="left")
    return joined.select(
        F.col("org_id").cast("string"),
        F.col("usage_date").cast("date"),
        F.col("service").cast("string"),
        F.col("daily_cost_usd").cast("double"),
        *[F.coalesce(F.col(m).cast("double"), F.lit(0.0)).alias(m) for m in DAILY_METRICS],
        F.coalesce(F.col("genai_tokens").cast("long"), F.lit(0)).alias("genai_tokens"),
        F.col("carbon_kg").cast("double"),
        F.col("event_count").cast("long"),
        *[F.col(a).cast("string") for a in ORG_ATTRIBUTES],
        _flag("is_anomaly").alias("is_anomaly"),
        "anomaly_methods",
        F.date_format("usage_date", "yyyy-MM").alias("usage_month"),
    )


def build_cost_anomaly_mart(daily_df: DataFrame) -> DataFrame:
    """cost_anomaly_mart: the daily rows that at least one method flags."""
    flagged_by_any = _flag("is_anomaly_zscore") | _flag("is_anomaly_mad") | _flag("is_anomaly_pctl")
    score_pairs = [part for name, (_, score) in ANOMALY_METHODS.items() for part in (F.lit(name), F.col(score))]
    # Cassandra map values cannot be null: a score that could not be computed is left out.
    method_scores = F.map_filter(F.create_map(*score_pairs), lambda _, value: value.isNotNull())
    flagged = daily_df.filter(flagged_by_any).withColumn("anomaly_methods", anomaly_methods_col())
    return flagged.select(
        F.col("org_id").cast("string"),
        F.col("usage_date").cast("date"),
        F.col("service").cast("string"),
        F.col("daily_cost_usd").cast("double"),
        F.col("baseline_cost_usd").cast("double"),
        F.col("z_score").cast("double"),
        F.col("mad_score").cast("double"),
        F.col("pct_rank").cast("double"),
        _flag("is_anomaly_zscore").alias("is_anomaly_zscore"),
        _flag("is_anomaly_mad").alias("is_anomaly_mad"),
        _flag("is_anomaly_pctl").alias("is_anomaly_pctl"),
        F.size("anomaly_methods").cast("int").alias("anomaly_votes"),
        _flag("is_anomaly").alias("is_anomaly"),
        "anomaly_methods",
        method_scores.alias("method_scores"),
    )


def build_genai_tokens(daily_df: DataFrame) -> DataFrame:
    """genai_tokens_by_org_date: the genai service's daily row, renamed (one per org and day)."""
    genai = daily_df.filter(F.col("service") == GENAI_SERVICE)
    return genai.select(
        F.col("org_id").cast("string"),
        F.col("usage_date").cast("date"),
        F.coalesce(F.col("genai_tokens").cast("long"), F.lit(0)).alias("total_tokens"),
        F.col("daily_cost_usd").cast("double").alias("estimated_cost_usd"),
        F.col("event_count").cast("long").alias("genai_event_count"),
    )


def build_top_services(daily_df: DataFrame) -> DataFrame:
    """top_services_14d: services ranked by cost over the 14 days ending at each as-of date.

    Each daily row contributes to the as-of dates d .. d+13 that lie inside the data's
    date range, so an as-of date sums exactly the days [as_of - 13, as_of].
    """
    last_day = daily_df.agg(F.max("usage_date").alias("last_day"))
    span = TOP_N_WINDOW_DAYS - 1
    contributions = daily_df.select("org_id", "service", "usage_date", "daily_cost_usd", "requests").crossJoin(
        F.broadcast(last_day)
    )
    as_of_dates = F.sequence(F.col("usage_date"), F.least(F.date_add("usage_date", span), F.col("last_day")))
    exploded = contributions.withColumn("as_of_date", F.explode(as_of_dates))
    totals = exploded.groupBy("org_id", "as_of_date", "service").agg(
        F.sum("daily_cost_usd").alias("cost_14d_usd"),
        F.coalesce(F.sum("requests"), F.lit(0.0)).alias("requests_14d"),
    )
    ranking = Window.partitionBy("org_id", "as_of_date").orderBy(
        F.round("cost_14d_usd", RANK_DECIMALS).desc(), F.col("service").asc()
    )
    return totals.select(
        F.col("org_id").cast("string"),
        F.col("as_of_date").cast("date"),
        F.row_number().over(ranking).cast("int").alias("rank"),
        F.col("service").cast("string"),
        F.col("cost_14d_usd").cast("double"),
        F.col("requests_14d").cast("double"),
        F.date_sub("as_of_date", span).alias("window_start"),
    )


# Label of a month whose invoices use several currencies: their invoice-currency amounts
# cannot be added, so only the USD amounts are published for it.
MIXED_CURRENCY = "MIXED"
_INVOICE_AMOUNTS = ("subtotal", "credits", "taxes")
_USD_AMOUNTS = ("subtotal_usd", "credits_usd", "taxes_usd", "net_usd")


def build_revenue(billing_df: DataFrame) -> DataFrame:
    """revenue_by_org_month: invoices summed per org and month under Silver's FX rule.

    USD amounts are Silver's (the FX rule lives there); credits null -> 0. With one
    currency (the data's case) the invoice-currency amounts are sums too.
    """
    invoices = billing_df.select(
        "org_id", F.trunc("month", "month").alias("month"), "currency", "subtotal",
        F.coalesce(F.col("credits"), F.lit(0.0)).alias("credits"), "taxes", "fx_rate_applied",
        "subtotal_usd", F.coalesce(F.col("credits_usd"), F.lit(0.0)).alias("credits_usd"), "taxes_usd", "net_usd",
    )
    grouped = invoices.groupBy("org_id", "month").agg(
        F.count("*").cast("int").alias("invoice_count"),
        # min/max instead of count_distinct: same answer, without Spark's extra Expand shuffle.
        F.min("currency").alias("min_currency"),
        F.max("currency").alias("max_currency"),
        F.min("fx_rate_applied").alias("min_fx_rate"),
        F.max("fx_rate_applied").alias("max_fx_rate"),
        *[F.sum(F.col(c).cast("double")).alias(c) for c in _INVOICE_AMOUNTS + _USD_AMOUNTS],
    )
    has_one_currency = F.col("min_currency") == F.col("max_currency")
    has_one_rate = F.col("min_fx_rate") == F.col("max_fx_rate")
    has_currency = F.col("max_currency").isNotNull()
    currency = F.when(has_one_currency, F.col("min_currency")).when(has_currency, F.lit(MIXED_CURRENCY))
    net_amount = F.col("subtotal") - F.col("credits") + F.col("taxes")
    return grouped.select(
        F.col("org_id").cast("string"),
        F.col("month").cast("date"),
        currency.cast("string").alias("currency"),
        *[F.when(has_one_currency, F.col(c)).alias(c) for c in _INVOICE_AMOUNTS],
        F.when(has_one_currency, net_amount).alias("net_amount"),
        F.when(has_one_rate, F.col("min_fx_rate")).cast("double").alias("fx_rate_applied"),
        *[F.col(c) for c in _USD_AMOUNTS],
        (F.col("subtotal_usd") < 0).alias("is_refund"),
        "invoice_count",
    )
