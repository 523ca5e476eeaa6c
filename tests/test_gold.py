"""Gold marts: known answers on hand-made Silver tables, incremental writes, reconciliation."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from lakehouse_utils.gold import evidence as gold_evidence
from lakehouse_utils.gold import stage as gold
from lakehouse_utils.gold.marts import (
    build_cost_anomaly_mart,
    build_genai_tokens,
    build_org_daily_usage,
    build_revenue,
    build_top_services,
)
from lakehouse_utils.gold.tickets import build_tickets_by_date_severity, build_tickets_by_org_date
from lakehouse_utils.gold.write import write_mart
from lakehouse_utils.paths import LakePaths, local_path

D1 = date(2025, 7, 1)

DAILY_SCHEMA = T.StructType([
    T.StructField("org_id", T.StringType()), T.StructField("usage_date", T.DateType()),
    T.StructField("service", T.StringType()), T.StructField("daily_cost_usd", T.DoubleType()),
    T.StructField("requests", T.DoubleType()), T.StructField("cpu_hours", T.DoubleType()),
    T.StructField("storage_gb_hours", T.DoubleType()), T.StructField("genai_tokens", T.LongType()),
    T.StructField("carbon_kg", T.DoubleType()), T.StructField("event_count", T.LongType()),
    T.StructField("z_score", T.DoubleType()), T.StructField("is_anomaly_zscore", T.BooleanType()),
    T.StructField("mad_score", T.DoubleType()), T.StructField("is_anomaly_mad", T.BooleanType()),
    T.StructField("pct_rank", T.DoubleType()), T.StructField("is_anomaly_pctl", T.BooleanType()),
    T.StructField("anomaly_votes", T.IntegerType()), T.StructField("is_anomaly", T.BooleanType()),
    T.StructField("baseline_cost_usd", T.DoubleType()),
])
ORGS_SCHEMA = "org_id string, org_name string, industry string, plan_tier string, hq_region string"
TICKETS_SCHEMA = ("ticket_id string, org_id string, category string, severity string, created_date date, "
                  "csat double, sla_breached boolean, is_open boolean")
BILLING_SCHEMA = ("invoice_id string, org_id string, month date, currency string, subtotal double, credits double, "
                  "taxes double, fx_rate_applied double, subtotal_usd double, credits_usd double, taxes_usd double, "
                  "net_usd double")
EVENTS_SCHEMA = "event_id string, usage_date date, org_id string, service string, cost_usd_increment double, genai_tokens long"


def daily_row(org: str, day: date, service: str, cost: float, **metrics) -> tuple:
    """A Silver daily row; anything not given is zero / unflagged."""
    values = {"requests": 0.0, "cpu_hours": 0.0, "storage_gb_hours": 0.0, "genai_tokens": 0, "carbon_kg": None,
              "event_count": 1, "z_score": 0.0, "is_anomaly_zscore": False, "mad_score": 0.0,
              "is_anomaly_mad": False, "pct_rank": 0.5, "is_anomaly_pctl": False, "anomaly_votes": 0,
              "is_anomaly": False, "baseline_cost_usd": cost} | metrics
    return (org, day, service, cost, *[values[f.name] for f in DAILY_SCHEMA.fields[4:]])


def daily_df(spark, rows: list[tuple]):
    return spark.createDataFrame(rows, DAILY_SCHEMA)


def orgs_df(spark, org_ids=("o1", "o2")):
    return spark.createDataFrame([(o, f"Org {o}", "saas", "pro", "us-east") for o in org_ids], ORGS_SCHEMA)


def by_key(df, *keys) -> dict:
    return {tuple(r[k] for k in keys): r.asDict() for r in df.collect()}


# ---------- org_daily_usage_by_service ----------

def test_org_daily_usage_keeps_silver_sums_and_adds_org_attributes(spark):
    daily = daily_df(spark, [
        daily_row("o1", D1, "compute", 10.5, requests=100.0, cpu_hours=2.0, event_count=3, carbon_kg=0.25),
        daily_row("o2", D1, "genai", 4.0, genai_tokens=900, requests=None),
    ])
    mart = by_key(build_org_daily_usage(daily, orgs_df(spark)), "org_id", "service")
    assert (mart[("o1", "compute")]["daily_cost_usd"], mart[("o1", "compute")]["requests"]) == (10.5, 100.0)
    assert (mart[("o1", "compute")]["event_count"], mart[("o1", "compute")]["carbon_kg"]) == (3, 0.25)
    assert (mart[("o2", "genai")]["genai_tokens"], mart[("o2", "genai")]["requests"]) == (900, 0.0)
    assert mart[("o2", "genai")]["org_name"] == "Org o2" and mart[("o2", "genai")]["usage_month"] == "2025-07"


def test_org_daily_usage_lists_flagging_methods(spark):
    daily = daily_df(spark, [daily_row("o1", D1, "compute", 99.0, is_anomaly_zscore=True, is_anomaly_pctl=True,
                                       is_anomaly=True, anomaly_votes=2)])
    row = build_org_daily_usage(daily, orgs_df(spark)).first()
    assert row["anomaly_methods"] == ["zscore", "percentile"] and row["is_anomaly"] is True


def test_org_daily_usage_row_count_equals_silver_daily_rows(spark):
    rows = [daily_row(o, D1 + timedelta(days=d), s, 1.0) for o in ("o1", "o2") for d in range(3) for s in ("a", "b")]
    assert build_org_daily_usage(daily_df(spark, rows), orgs_df(spark)).count() == len(rows)


def test_assert_unique_rejects_duplicate_org_keys(spark):
    orgs = orgs_df(spark, ("o1", "o1", "o2"))
    with pytest.raises(gold.GoldInputError, match=r"silver/customers_orgs: key \(org_id\) is not unique, e.g. \('o1',\) x2"):
        gold.assert_unique(orgs, ("org_id",), "silver/customers_orgs")


# ---------- revenue_by_org_month ----------

def billing_df(spark, rows):
    return spark.createDataFrame(rows, BILLING_SCHEMA)


def test_revenue_net_amount_treats_null_credits_as_zero(spark):
    rows = [("i1", "o1", date(2025, 6, 1), "EUR", 100.0, None, 21.0, 1.08, 108.0, None, 22.68, 130.68)]
    row = build_revenue(billing_df(spark, rows)).first()
    assert (row["credits"], row["net_amount"], row["credits_usd"]) == (0.0, 121.0, 0.0)
    assert (row["currency"], row["fx_rate_applied"], row["net_usd"], row["invoice_count"]) == ("EUR", 1.08, 130.68, 1)


def test_revenue_flags_negative_subtotal_as_refund(spark):
    rows = [("i1", "o1", date(2025, 6, 1), "USD", -50.0, 10.0, 10.5, 1.0, -50.0, 10.0, 10.5, -49.5)]
    row = build_revenue(billing_df(spark, rows)).first()
    assert row["is_refund"] is True and row["net_amount"] == -49.5


def test_revenue_month_with_two_currencies_publishes_usd_only(spark):
    rows = [("i1", "o1", date(2025, 6, 1), "USD", 10.0, 0.0, 2.0, 1.0, 10.0, 0.0, 2.0, 12.0),
            ("i2", "o1", date(2025, 6, 1), "EUR", 20.0, 0.0, 4.0, 1.5, 30.0, 0.0, 6.0, 36.0)]
    row = build_revenue(billing_df(spark, rows)).first()
    assert (row["currency"], row["subtotal"], row["fx_rate_applied"]) == ("MIXED", None, None)
    assert (row["subtotal_usd"], row["net_usd"], row["invoice_count"]) == (40.0, 48.0, 2)


# ---------- cost_anomaly_mart ----------

def test_cost_anomaly_mart_keeps_only_rows_some_method_flags(spark):
    daily = daily_df(spark, [
        daily_row("o1", D1, "compute", 1.0),
        daily_row("o1", D1, "storage", 80.0, z_score=3.5, is_anomaly_zscore=True, mad_score=None,
                  is_anomaly_mad=None, pct_rank=1.0, is_anomaly_pctl=True, is_anomaly=True, baseline_cost_usd=2.0),
    ])
    rows = build_cost_anomaly_mart(daily).collect()
    assert len(rows) == 1 and rows[0]["service"] == "storage"
    assert (rows[0]["anomaly_votes"], rows[0]["anomaly_methods"], rows[0]["is_anomaly_mad"]) == (
        2, ["zscore", "percentile"], False)
    assert rows[0]["method_scores"] == {"zscore": 3.5, "percentile": 1.0} and rows[0]["baseline_cost_usd"] == 2.0


# ---------- tickets ----------

@pytest.fixture
def tickets(spark):
    rows = [
        ("t1", "o1", "billing", "critical", D1, 4.0, True, False),
        ("t2", "o1", "billing", "critical", D1, None, False, True),
        ("t3", "o1", "outage", "Critical ", D1, 2.0, True, True),
        ("t4", "o2", "billing", "critical", D1, 6.0, False, False),
        ("t5", "o2", "billing", "low", D1, None, False, False),
    ]
    return spark.createDataFrame(rows, TICKETS_SCHEMA)


def test_tickets_by_org_date_counts_breaches_csat_and_categories(tickets):
    row = by_key(build_tickets_by_org_date(tickets), "org_id", "severity")[("o1", "critical")]
    assert (row["tickets_opened"], row["critical_count"], row["sla_breach_count"], row["open_count"]) == (3, 3, 2, 2)
    assert (row["sla_breach_rate"], row["mean_csat"], row["csat_responses"]) == (2 / 3, 3.0, 2)
    assert row["categories"] == {"billing": 2, "outage": 1}


def test_tickets_mean_csat_is_null_without_responses(tickets):
    row = by_key(build_tickets_by_org_date(tickets), "org_id", "severity")[("o2", "low")]
    assert (row["mean_csat"], row["csat_responses"], row["critical_count"]) == (None, 0, 0)


def test_tickets_by_date_severity_pools_tickets_across_orgs(tickets):
    row = by_key(build_tickets_by_date_severity(tickets), "created_date", "severity")[(D1, "critical")]
    assert (row["tickets_opened"], row["org_count"], row["org_ids"]) == (4, 2, ["o1", "o2"])
    # (4 + 2 + 6) / 3 tickets with a CSAT, not the mean of the two orgs' means (3.0 and 6.0).
    assert row["mean_csat"] == 4.0 and row["categories"] == {"billing": 3, "outage": 1}


# ---------- genai_tokens_by_org_date ----------

def test_genai_tokens_mart_has_one_row_per_org_day_of_genai(spark):
    daily = daily_df(spark, [daily_row("o1", D1, "genai", 3.5, genai_tokens=1200, event_count=4),
                             daily_row("o1", D1, "compute", 9.0)])
    rows = build_genai_tokens(daily).collect()
    assert [(r["org_id"], r["total_tokens"], r["estimated_cost_usd"], r["genai_event_count"]) for r in rows] == [
        ("o1", 1200, 3.5, 4)]


# ---------- top_services_14d ----------

def test_top_services_breaks_cost_ties_by_service_name(spark):
    daily = daily_df(spark, [daily_row("o1", D1, s, c) for s, c in (("storage", 5.0), ("compute", 5.0), ("genai", 7.0))])
    rows = build_top_services(daily).filter(F.col("as_of_date") == D1).orderBy("rank").collect()
    assert [(r["rank"], r["service"]) for r in rows] == [(1, "genai"), (2, "compute"), (3, "storage")]


def test_top_services_window_includes_day_14_and_excludes_day_15(spark):
    as_of = D1 + timedelta(days=14)
    daily = daily_df(spark, [daily_row("o1", D1, "compute", 100.0),  # day 15 counting back from as_of
                             daily_row("o1", D1 + timedelta(days=1), "storage", 1.0, requests=7.0),  # day 14
                             daily_row("o1", as_of, "genai", 2.0)])
    rows = build_top_services(daily).filter(F.col("as_of_date") == as_of).orderBy("rank").collect()
    assert [(r["service"], r["cost_14d_usd"]) for r in rows] == [("genai", 2.0), ("storage", 1.0)]
    assert rows[1]["window_start"] == D1 + timedelta(days=1) and rows[1]["requests_14d"] == 7.0


def test_top_services_has_every_as_of_date_of_the_range(spark):
    daily = daily_df(spark, [daily_row("o1", D1, "compute", 1.0), daily_row("o2", D1 + timedelta(days=20), "db", 1.0)])
    dates = {r["as_of_date"] for r in build_top_services(daily).filter(F.col("org_id") == "o1").collect()}
    # o1's only day counts for the 14 as-of dates it reaches; the range ends at the data's last day.
    assert dates == {D1 + timedelta(days=d) for d in range(14)}


# ---------- incremental writes ----------

def data_files(table: Path) -> dict[str, tuple[str, float]]:
    """Partition directory -> (data file name, modification time)."""
    return {f.parent.name: (f.name, f.stat().st_mtime_ns) for f in table.rglob("*.parquet")}


def partitioned(spark, rows):
    return spark.createDataFrame(rows, "day date, key string, amount double")


def test_write_mart_rewrites_only_changed_partitions_and_drops_vanished(spark, lake):
    uri, days = str(lake / "mart"), [D1 + timedelta(days=d) for d in range(3)]
    write_mart(spark, partitioned(spark, [(d, "a", 1.0) for d in days]), uri, "day")
    before = data_files(lake / "mart")
    changed = [(days[0], "a", 1.0), (days[1], "a", 2.0), (D1 + timedelta(days=9), "a", 1.0)]
    result = write_mart(spark, partitioned(spark, changed), uri, "day")
    after = data_files(lake / "mart")
    assert (result.mode, result.written, result.deleted) == ("incremental", ["2025-07-02", "2025-07-10"], ["2025-07-03"])
    assert after["day=2025-07-01"] == before["day=2025-07-01"] and after["day=2025-07-02"] != before["day=2025-07-02"]
    assert set(after) == {"day=2025-07-01", "day=2025-07-02", "day=2025-07-10"}
    assertDataFrameEqual(spark.read.parquet(uri).select("day", "key", "amount"), partitioned(spark, changed), rtol=0, atol=0)


def test_write_mart_same_content_writes_nothing(spark, lake):
    uri = str(lake / "mart")
    df = partitioned(spark, [(D1, "a", 0.1 + 0.2), (D1, "b", 3.0)])
    write_mart(spark, df, uri, "day")
    before = data_files(lake / "mart")
    # Float noise below 1e-9 (a sum taken in another order) is not a change.
    result = write_mart(spark, partitioned(spark, [(D1, "b", 3.0), (D1, "a", 0.3)]), uri, "day")
    assert (result.mode, result.written, data_files(lake / "mart")) == ("unchanged", [], before)


def test_write_mart_restores_a_partition_deleted_behind_its_back(spark, lake):
    uri = str(lake / "mart")
    df = partitioned(spark, [(D1, "a", 1.0), (D1 + timedelta(days=1), "a", 2.0)])
    write_mart(spark, df, uri, "day")
    for f in (lake / "mart" / "day=2025-07-02").iterdir():
        f.unlink()
    (lake / "mart" / "day=2025-07-02").rmdir()
    result = write_mart(spark, df, uri, "day")
    assert (result.mode, result.written) == ("incremental", ["2025-07-02"])
    assert spark.read.parquet(uri).count() == 2


def test_write_mart_full_refresh_replaces_the_table(spark, lake):
    uri = str(lake / "mart")
    write_mart(spark, partitioned(spark, [(D1, "a", 1.0)]), uri, "day")
    result = write_mart(spark, partitioned(spark, [(D1, "a", 1.0)]), uri, "day", full_refresh=True)
    assert (result.mode, result.rows, result.partitions) == ("full", 1, 1)


# ---------- the stage on a tiny Silver lake ----------

D20 = D1 + timedelta(days=19)
SILVER_DAILY = [
    daily_row("o1", D1, "compute", 10.0, requests=100.0, event_count=2),
    daily_row("o1", D1, "genai", 5.0, genai_tokens=1000, carbon_kg=0.5),
    daily_row("o1", D1 + timedelta(days=1), "compute", 30.0, z_score=3.2, is_anomaly_zscore=True),
    daily_row("o2", D1 + timedelta(days=1), "storage", 2.5, storage_gb_hours=10.0),
    daily_row("o2", D20, "storage", 1.5),
]
SILVER_EVENTS = [
    ("e1", D1, "o1", "compute", 6.0, None), ("e2", D1, "o1", "compute", 4.0, None),
    ("e3", D1, "o1", "genai", 5.0, 1000), ("e4", D1 + timedelta(days=1), "o1", "compute", 30.0, None),
    ("e5", D1 + timedelta(days=1), "o2", "storage", 2.5, None), ("e6", D20, "o2", "storage", 1.5, None),
]
SILVER_TICKETS = [("t1", "o1", "billing", "critical", D1, 5.0, True, False),
                  ("t2", "o2", "outage", "low", D1, None, False, True)]
SILVER_BILLING = [("i1", "o1", date(2025, 6, 1), "USD", 100.0, 0.0, 21.0, 1.0, 100.0, 0.0, 21.0, 121.0),
                  ("i2", "o2", date(2025, 6, 1), "ARS", 50.0, None, 10.5, 0.5, 25.0, None, 5.25, 30.25)]


def write_silver(spark, paths: LakePaths, daily_rows=SILVER_DAILY, event_rows=SILVER_EVENTS) -> None:
    daily_df(spark, daily_rows).write.mode("overwrite").partitionBy("usage_date").parquet(paths.silver("org_service_daily"))
    spark.createDataFrame(event_rows, EVENTS_SCHEMA).write.mode("overwrite").parquet(paths.silver("usage_events"))
    orgs_df(spark).write.mode("overwrite").parquet(paths.silver("customers_orgs"))
    spark.createDataFrame(SILVER_TICKETS, TICKETS_SCHEMA).write.mode("overwrite").parquet(paths.silver("support_tickets"))
    billing_df(spark, SILVER_BILLING).write.mode("overwrite").parquet(paths.silver("billing_monthly"))


@pytest.fixture
def silver_lake(spark, lake, tmp_path) -> LakePaths:
    paths = LakePaths.from_roots(lake, tmp_path / "landing")
    write_silver(spark, paths)
    return paths


@pytest.fixture(scope="module")
def built_lake(spark, tmp_path_factory):
    """A tiny Silver lake and the report of one Gold run on it (read-only for the tests)."""
    root = tmp_path_factory.mktemp("built")
    paths = LakePaths.from_roots(root / "lake", root / "landing")
    write_silver(spark, paths)
    return paths, gold.run(spark, paths, "built")


def snapshot(spark, paths: LakePaths) -> dict[str, tuple]:
    """Every mart as sorted rows (tiny tables only), columns in a fixed order."""
    marts = {}
    for mart in gold.MARTS:
        df = spark.read.parquet(paths.gold(mart))
        marts[mart] = (sorted(df.columns), df.select(*sorted(df.columns)).collect())
    return marts


def assert_same_marts(actual: dict[str, tuple], expected: dict[str, tuple]) -> None:
    """Same marts and columns, each with the same rows in any order, values exactly equal."""
    assert set(actual) == set(expected)
    for mart, (columns, rows) in expected.items():
        assert actual[mart][0] == columns, mart
        assertDataFrameEqual(actual[mart][1], rows, rtol=0, atol=0)


def test_run_reports_reconciled_counts_per_mart(built_lake):
    _, report = built_lake
    counts = {c.table: c for c in report.tables}
    assert report.reconciles and set(counts) == set(gold.MARTS)
    assert (counts["org_daily_usage_by_service"].rows_in, counts["org_daily_usage_by_service"].rows_out) == (5, 5)
    assert (counts["cost_anomaly_mart"].rows_out, counts["cost_anomaly_mart"].ignored) == (1, 4)
    assert counts["tickets_by_org_date"].details["measure_total"] == 2


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_run_twice_rewrites_nothing_and_a_mart_changed_by_hand_is_rewritten(spark, silver_lake):
    gold.run(spark, silver_lake, "first")
    before = snapshot(spark, silver_lake)
    marts = {mart: local_path(silver_lake.gold(mart)) for mart in gold.MARTS}
    files = {mart: data_files(folder) for mart, folder in marts.items()}
    report = gold.run(spark, silver_lake, "second")
    assert {c.details["write_mode"] for c in report.tables} == {"unchanged"}
    assert {mart: data_files(folder) for mart, folder in marts.items()} == files
    assert_same_marts(snapshot(spark, silver_lake), before)
    # A mart folder deleted by hand: Silver is unchanged, but the marts are no longer as the last run left them.
    for data_file in marts["revenue_by_org_month"].rglob("*.parquet"):
        data_file.unlink()
    again = gold.run(spark, silver_lake, "third")
    assert again.table("revenue_by_org_month").details["write_mode"] != "unchanged"
    assert_same_marts(snapshot(spark, silver_lake), before)


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_late_event_rewrites_affected_days_and_equals_full_rebuild(spark, silver_lake):
    gold.run(spark, silver_lake, "first")
    before = data_files(Path(silver_lake.gold("top_services_14d").removeprefix("file://")))
    # Silver recomputed day 1 after a late compute event of 2.0 USD for o1.
    late = [daily_row("o1", D1, "compute", 12.0, requests=100.0, event_count=3)] + SILVER_DAILY[1:]
    write_silver(spark, silver_lake, late, SILVER_EVENTS + [("e7", D1, "o1", "compute", 2.0, None)])
    report = gold.run(spark, silver_lake, "late")
    incremental = snapshot(spark, silver_lake)
    after = data_files(Path(silver_lake.gold("top_services_14d").removeprefix("file://")))
    assert report.table("org_daily_usage_by_service").details["partitions_written"] == 1
    # as-of dates 07-01 .. 07-14 include day 1; 07-15 .. 07-20 do not and keep their files.
    assert {p for p in after if after[p] != before.get(p)} == {f"as_of_date={D1 + timedelta(days=d)}" for d in range(14)}
    gold.run(spark, silver_lake, "rebuild", full_refresh=True)
    assert_same_marts(snapshot(spark, silver_lake), incremental)


def test_reconcile_matches_silver_totals(spark, built_lake):
    checks = gold.reconcile(spark, built_lake[0])
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    cost = next(c for c in checks if c["check"] == "daily_cost_usd")
    assert str(cost["gold"]) == "49.00" and next(c for c in checks if c["check"] == "net_usd")["gold"] == 151.25


def test_gold_inventory_shows_one_file_per_partition(spark, built_lake):
    inventory = {row["mart"]: row for row in gold.gold_inventory(spark, built_lake[0])}
    daily = inventory["org_daily_usage_by_service"]
    assert (daily["rows"], daily["partitions"], daily["max_files_per_partition"]) == (5, 3, 1)
    assert inventory["revenue_by_org_month"]["partitions"] == 1


def test_revenue_by_currency_month_totals_each_currency(spark, built_lake):
    rows = gold_evidence.revenue_by_currency_month(spark, built_lake[0])
    assert [(r["currency"], r["net_amount"], r["net_usd"], r["invoices"]) for r in rows] == [
        ("ARS", 60.5, 30.25, 1), ("USD", 121.0, 121.0, 1)]


def test_daily_cost_by_service_defaults_to_the_costliest_org(spark, built_lake):
    rows = gold_evidence.daily_cost_by_service(spark, built_lake[0])
    assert [(r["usage_date"], r["service"], r["daily_cost_usd"]) for r in rows] == [
        (D1, "compute", 10.0), (D1, "genai", 5.0), (D1 + timedelta(days=1), "compute", 30.0)]


def test_reconcile_reports_a_gold_silver_mismatch(spark, silver_lake):
    gold.run(spark, silver_lake, "first")
    write_silver(spark, silver_lake, SILVER_DAILY, SILVER_EVENTS + [("e9", D1, "o1", "genai", 0.01, 5)])
    failed = {c["check"] for c in gold.reconcile(spark, silver_lake) if not c["ok"]}
    assert failed == {"daily_cost_usd", "genai_tokens", "event_count", "genai_estimated_cost_usd",
                      "genai_total_tokens", "genai_event_count"}


# ---------- end to end: real stages, independent pandas computation from the landing files ----------

PIPELINE_STAGES = ("bronze_batch", "bronze_stream", "silver", "gold")
METRICS = ("requests", "cpu_hours", "storage_gb_hours")


def pandas_daily_usage(landing: Path):
    """org_daily_usage_by_service computed with pandas from the JSONL files and master CSVs."""
    import json

    import pandas as pd

    lines = [line for f in sorted((landing / "usage_events_stream").glob("*.jsonl"))
             for line in f.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    events = pd.DataFrame([json.loads(line) for line in lines])
    orgs = set(pd.read_csv(landing / "customers_orgs.csv")["org_id"])
    resources = set(pd.read_csv(landing / "resources.csv")["resource_id"])
    ts = pd.to_datetime(events["timestamp"], utc=True, errors="coerce", format="ISO8601")
    cost = pd.to_numeric(events["cost_usd_increment"], errors="coerce")
    valid = (
        (events["event_id"].fillna("").str.len() > 0) & ts.notna() & events["org_id"].isin(orgs)
        & events["resource_id"].isin(resources) & (cost >= -0.01)
        & events["metric"].isin(METRICS) & events["schema_version"].isin([1, 2])
    )
    events = events.assign(usage_date=ts.dt.date, cost=cost, value=pd.to_numeric(
        events["value"].astype(str).str.strip(), errors="coerce"))[valid].drop_duplicates("event_id")
    for metric in METRICS:
        events[metric] = events["value"].where(events["metric"] == metric)
    grouped = events.groupby(["org_id", "usage_date", "service"])
    return pd.DataFrame({
        "daily_cost_usd": grouped["cost"].sum(), **{m: grouped[m].sum() for m in METRICS},
        "genai_tokens": grouped["genai_tokens"].sum().astype("int64"),
        "carbon_kg": grouped["carbon_kg"].sum(min_count=1), "event_count": grouped.size(),
    })


def assert_mart_matches_pandas(spark, paths: LakePaths, landing: Path) -> None:
    import numpy as np

    expected = pandas_daily_usage(landing)
    columns = ["org_id", "usage_date", "service", "daily_cost_usd", *METRICS, "genai_tokens", "carbon_kg", "event_count"]
    actual = (spark.read.parquet(paths.gold("org_daily_usage_by_service")).select(*columns)
              .toPandas().set_index(["org_id", "usage_date", "service"]))
    assert set(actual.index) == set(expected.index) and len(actual) == len(expected)
    actual = actual.loc[expected.index]
    for column in ("daily_cost_usd", *METRICS, "carbon_kg"):
        assert np.allclose(actual[column].astype(float), expected[column], rtol=1e-12, atol=1e-6, equal_nan=True), column
    assert (actual["genai_tokens"] == expected["genai_tokens"]).all()
    assert (actual["event_count"] == expected["event_count"]).all()


@pytest.mark.slow
def test_generated_data_mart_equals_pandas_from_landing(spark, generated_landing, generated_chain):
    paths, reports = generated_chain
    assert list(reports) == list(PIPELINE_STAGES)
    for report in reports.values():
        report.assert_reconciles()
    assert_mart_matches_pandas(spark, paths, generated_landing)
    assert all(check["ok"] for check in gold.reconcile(spark, paths))


@pytest.mark.slow
def test_course_data_mart_rows_and_total_cost(spark, course_landing, course_chain):
    paths, reports = course_chain
    assert list(reports) == list(PIPELINE_STAGES)
    for report in reports.values():
        report.assert_reconciles()
    totals = spark.read.parquet(paths.gold("org_daily_usage_by_service")).agg(
        F.count("*").alias("rows"), F.sum(F.col("daily_cost_usd").cast("decimal(38,10)")).alias("cost")).first()
    assert (totals["rows"], str(round(totals["cost"], 4))) == (11050, "148351.5759")
    assert_mart_matches_pandas(spark, paths, course_landing)
