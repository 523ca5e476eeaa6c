"""Each anomaly method on a series with one known outlier, and the consensus vote."""

from __future__ import annotations

import pytest

from lakehouse_utils.silver.anomaly import (
    AnomalyThresholds,
    with_anomaly_flags,
    with_mad_score,
    with_percentile_flag,
    with_zscore,
)

# 20 ordinary days around 10 and one day at 100 (day 20)
SERIES = [10.0, 11.0, 9.0, 10.5, 9.5, 10.0, 10.2, 9.8, 11.0, 9.0,
          10.0, 10.4, 9.6, 10.1, 9.9, 10.3, 9.7, 10.0, 10.6, 9.4]
OUTLIER_DAY = len(SERIES)


@pytest.fixture(scope="module")
def series_df(spark):
    rows = [("org_a", "compute", day, cost) for day, cost in enumerate([*SERIES, 100.0])]
    rows += [("org_b", "compute", day, 1000.0 + day) for day in range(5)]  # another series, on another scale
    return spark.createDataFrame(rows, "org_id string, service string, day int, cost double")


def _flagged(df, flag):
    return sorted((r.org_id, r.day) for r in df.filter(flag).collect())


def test_zscore_flags_only_the_outlier_of_its_series(series_df):
    scored = with_zscore(series_df, "cost", ["org_id", "service"], threshold=3.0)
    assert _flagged(scored, "is_anomaly_zscore") == [("org_a", OUTLIER_DAY)]
    assert scored.filter("day = 20").first().z_score == pytest.approx(4.36, abs=0.01)


def test_zscore_of_a_constant_series_is_null_and_not_flagged(spark):
    df = spark.createDataFrame([("s", 5.0), ("s", 5.0), ("s", 5.0)], "k string, cost double")
    rows = with_zscore(df, "cost", ["k"]).collect()
    assert {(r.z_score, r.is_anomaly_zscore) for r in rows} == {(None, False)}


def test_mad_score_flags_the_outlier_and_reports_the_median(series_df):
    scored = with_mad_score(series_df, "cost", ["org_id", "service"], threshold=3.5, median_col="baseline")
    assert _flagged(scored, "is_anomaly_mad") == [("org_a", OUTLIER_DAY)]
    outlier = scored.filter("org_id = 'org_a' AND day = 20").first()
    assert outlier.baseline == 10.0
    # MAD of org_a is 0.4: 0.6745 * (100 - 10) / 0.4
    assert outlier.mad_score == pytest.approx(0.6745 * 90 / 0.4, rel=1e-6)


def test_mad_falls_back_to_mean_absolute_deviation_when_mad_is_zero(spark):
    df = spark.createDataFrame([("s", c) for c in (5.0, 5.0, 5.0, 5.0, 45.0)], "k string, cost double")
    outlier = with_mad_score(df, "cost", ["k"]).filter("cost = 45").first()
    # median 5, MAD 0, mean |x - 5| = 8 -> (45 - 5) / (1.2533 * 8)
    assert outlier.mad_score == pytest.approx(40 / (1.2533 * 8), rel=1e-6)
    assert outlier.is_anomaly_mad is True


def test_percentile_flags_values_above_the_scope_p99(series_df):
    scored = with_percentile_flag(series_df, "cost", ["org_id", "service"], percentile=0.99)
    assert _flagged(scored, "is_anomaly_pctl") == [("org_a", OUTLIER_DAY), ("org_b", 4)]
    assert scored.filter("org_id = 'org_a' AND day = 20").first().pct_rank == 1.0


def test_consensus_needs_two_votes(series_df):
    scored = with_anomaly_flags(series_df, "cost", ["org_id", "service"], ["org_id", "service"], AnomalyThresholds())
    votes = {(r.org_id, r.day): (r.anomaly_votes, r.is_anomaly) for r in scored.collect()}
    assert votes[("org_a", OUTLIER_DAY)] == (3, True)
    assert votes[("org_b", 4)] == (1, False)  # only the percentile fires on a 5-point trend
    assert sum(flag for _, flag in votes.values()) == 1
