"""Anomaly scores on a numeric series: z-score, robust z (MAD) and percentile, plus a vote.

Each method is a DataFrame -> DataFrame transformation over a window (no UDFs, no
collect), so it works per series on any number of series at once. Statistics use
the whole series (not a trailing window): the daily table is rebuilt from Silver on
every run, so a score is always relative to everything known about its series.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

# 0.6745 is the 0.75 quantile of N(0, 1): it makes MAD a consistent estimator of sigma.
MAD_CONSISTENCY = 0.6745
# Fallback when more than half of the series is one value (MAD = 0): the mean absolute
# deviation scaled by sqrt(pi/2) = 1.2533 estimates sigma the same way (IBM SPSS convention).
MEAN_AD_FACTOR = 1.2533


@dataclass(frozen=True)
class AnomalyThresholds:
    """Thresholds of the three methods and of the consensus (ADR 050)."""

    zscore: float = 3.0
    mad: float = 3.5
    percentile: float = 0.99
    min_votes: int = 2


def _over(series_cols: list[str]) -> Window:
    return Window.partitionBy(*series_cols)


def with_zscore(df: DataFrame, value_col: str, series_cols: list[str], threshold: float = 3.0) -> DataFrame:
    """Add `z_score` ((x - mean) / sample std of the series) and `is_anomaly_zscore` (|z| > threshold).

    A series with fewer than two points or no spread has no z-score (null, not flagged).
    """
    window = _over(series_cols)
    deviation = F.col(value_col) - F.avg(value_col).over(window)
    z_score = F.try_divide(deviation, F.stddev_samp(value_col).over(window))
    return (
        df.withColumn("z_score", z_score)
        .withColumn("is_anomaly_zscore", F.coalesce(F.abs("z_score") > F.lit(threshold), F.lit(False)))
    )


def _robust_z(value: Column, median: Column, mad: Column, mean_ad: Column) -> Column:
    has_mad = mad > 0
    has_mean_ad = mean_ad > 0
    return (
        F.when(has_mad, F.lit(MAD_CONSISTENCY) * (value - median) / mad)
        .when(has_mean_ad, (value - median) / (F.lit(MEAN_AD_FACTOR) * mean_ad))
    )


def with_mad_score(
    df: DataFrame,
    value_col: str,
    series_cols: list[str],
    threshold: float = 3.5,
    median_col: str = "baseline",
) -> DataFrame:
    """Add the series median (`median_col`), `mad_score` (robust z) and `is_anomaly_mad` (|score| > threshold).

    Medians are exact (`median`), so a score does not depend on partitioning.
    """
    window = _over(series_cols)
    with_median = df.withColumn(median_col, F.median(value_col).over(window))
    with_deviation = with_median.withColumn("__abs_dev", F.abs(F.col(value_col) - F.col(median_col)))
    scored = with_deviation.withColumn(
        "mad_score",
        _robust_z(F.col(value_col), F.col(median_col), F.median("__abs_dev").over(window),
                  F.avg("__abs_dev").over(window)),
    )
    return (
        scored.withColumn("is_anomaly_mad", F.coalesce(F.abs("mad_score") > F.lit(threshold), F.lit(False)))
        .drop("__abs_dev")
    )


def with_percentile_flag(df: DataFrame, value_col: str, scope_cols: list[str], percentile: float = 0.99) -> DataFrame:
    """Add `pct_rank` (percent rank in the scope) and `is_anomaly_pctl` (above the scope's exact percentile)."""
    window = _over(scope_cols)
    cutoff = F.percentile(F.col(value_col), F.lit(percentile)).over(window)
    return (
        df.withColumn("pct_rank", F.percent_rank().over(window.orderBy(value_col)))
        .withColumn("is_anomaly_pctl", F.coalesce(F.col(value_col) > cutoff, F.lit(False)))
    )


def with_anomaly_flags(
    df: DataFrame,
    value_col: str,
    series_cols: list[str],
    percentile_scope: list[str],
    thresholds: AnomalyThresholds | None = None,
    baseline_col: str = "baseline",
) -> DataFrame:
    """All three methods, `anomaly_votes` (how many fired) and `is_anomaly` (votes >= min_votes)."""
    thresholds = thresholds or AnomalyThresholds()
    scored = (
        df.transform(with_zscore, value_col, series_cols, thresholds.zscore)
        .transform(with_mad_score, value_col, series_cols, thresholds.mad, baseline_col)
        .transform(with_percentile_flag, value_col, percentile_scope, thresholds.percentile)
    )
    flags = ("is_anomaly_zscore", "is_anomaly_mad", "is_anomaly_pctl")
    votes = sum(F.col(flag).cast(T.IntegerType()) for flag in flags)
    return (
        scored.withColumn("anomaly_votes", votes.cast(T.IntegerType()))
        .withColumn("is_anomaly", F.col("anomaly_votes") >= F.lit(thresholds.min_votes))
    )
