"""Daily features per (org_id, usage_date, service) with anomaly flags on the daily cost.

Rebuilt from the whole Silver event table on every run: the anomaly statistics of a
series (mean, std, median, MAD) and the service percentile depend on every day of
it, so a new day changes the scores of the old ones. Aggregating ~43k events is a
few seconds; doing it incrementally would need the same full read anyway.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils import io
from lakehouse_utils.contracts import SILVER_DAILY
from lakehouse_utils.paths import LakePaths
from lakehouse_utils.report import TableCounts
from lakehouse_utils.silver.anomaly import AnomalyThresholds, with_anomaly_flags

SERIES = ["org_id", "service"]
# One p99 per service: a 60-point series has no meaningful 99th percentile of its own
# (it is its maximum, so every series would flag its top day). ADR 050.
PERCENTILE_SCOPE = ["service"]
# The Silver contract without run_id (added last, from the run).
DAILY_COLUMNS = [name for name in SILVER_DAILY.column_names if name != "run_id"]


def _metric_total(metric: str) -> Column:
    """Sum of `value` over the events of one metric (0 when the day has none with a value)."""
    return F.round(F.coalesce(F.sum(F.when(F.col("metric") == metric, F.col("value"))), F.lit(0.0)), 4).alias(metric)


def daily_features(events_df: DataFrame) -> DataFrame:
    """One row per (org_id, usage_date, service): cost, usage per metric, tokens, carbon, event count.

    Sums are rounded (cost and usage to 4 decimals as in the feed, carbon to 6) so that the
    result does not depend on the order Spark adds the events in.
    """
    return events_df.groupBy("org_id", "usage_date", "service").agg(
        F.round(F.sum("cost_usd_increment"), 4).alias("daily_cost_usd"),
        _metric_total("requests"),
        _metric_total("cpu_hours"),
        _metric_total("storage_gb_hours"),
        F.coalesce(F.sum("genai_tokens"), F.lit(0)).cast(T.LongType()).alias("genai_tokens"),
        # sum() of only nulls is null: a day with v1 events only has no carbon figure
        F.round(F.sum("carbon_kg"), 6).alias("carbon_kg"),
        F.count(F.lit(1)).alias("event_count"),
    )


def org_service_daily(events_df: DataFrame, thresholds: AnomalyThresholds, run_id: str) -> DataFrame:
    """Daily features plus z-score, MAD and percentile flags on each (org, service) cost series."""
    scored = with_anomaly_flags(
        daily_features(events_df), "daily_cost_usd", SERIES, PERCENTILE_SCOPE, thresholds, "baseline_cost_usd"
    )
    return scored.select(*DAILY_COLUMNS, F.lit(run_id).alias("run_id"))


def build_daily(spark: SparkSession, paths: LakePaths, run_id: str, thresholds: AnomalyThresholds) -> TableCounts:
    """Rebuild silver/org_service_daily from silver/usage_events; every event must land in one row."""
    events_df = io.read_parquet(spark, paths.silver("usage_events"))
    written = io.replace_table(
        spark, org_service_daily(events_df, thresholds, run_id), paths.silver("org_service_daily"),
        partition_by=["usage_date"],
        sums={"events": F.col("event_count"), "anomalies": F.col("is_anomaly").cast("int")},
    )
    return TableCounts(
        table="org_service_daily",
        rows_in=events_df.count(),
        rows_out=int(written.sums["events"] or 0),
        details={"unit": "events (rows_out = sum of event_count over the rows written)",
                 "rows_written": written.rows, "anomalies": int(written.sums["anomalies"] or 0),
                 "thresholds": thresholds.__dict__},
    )
