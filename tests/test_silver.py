"""Silver events, masters and daily features: unit behaviours and the stage on a hand-made Bronze."""

from __future__ import annotations

import shutil
from datetime import date

import pytest
from conftest import file_stamps
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakehouse_utils import io
from lakehouse_utils.paths import LakePaths, local_path
from lakehouse_utils.silver import stage as silver
from lakehouse_utils.silver.daily import daily_features
from lakehouse_utils.silver.events import (
    JoinExplosionError,
    assert_unique,
    check_events,
    conform_events,
    parse_value,
    silver_events,
)
from lakehouse_utils.silver.masters import MixedSnapshotError, with_tags
from tests.silver_support import append_bronze_events, event, events_df, orgs_df, resources_df, write_bronze_masters


def _silver(spark, rows, threshold=None):
    valid, _, _ = check_events(events_df(spark, rows), orgs_df(spark), resources_df(spark))
    out = silver_events(valid, threshold, orgs_df(spark), resources_df(spark), "run")
    return {r.event_id: r for r in out.collect()}


def test_parse_value_accepts_numbers_with_blanks_and_exponents_only(spark):
    raw = [" 12.5 ", "1e3", "4.0", "N/A", "", "NaN", None]
    df = spark.createDataFrame([(r,) for r in raw], "value_raw string")
    assert [r.v for r in df.select(parse_value(F.col("value_raw")).alias("v")).collect()] == [
        12.5, 1000.0, 4.0, None, None, None, None]


def test_usage_date_is_the_utc_day_of_the_event(spark):
    rows = [event("evt_a", "2025-07-20T23:59:00Z"), event("evt_b", "2025-07-21T00:00:00Z")]
    dates = {r.event_id: r.usage_date for r in conform_events(events_df(spark, rows)).collect()}
    assert dates == {"evt_a": date(2025, 7, 20), "evt_b": date(2025, 7, 21)}


def test_value_not_numeric_is_kept_null_and_flagged(spark):
    got = _silver(spark, [event("evt_na", value_raw="N/A"), event("evt_ok", value_raw=" 12.5 ")])
    assert (got["evt_na"].value, got["evt_na"].is_value_not_numeric) == (None, True)
    assert (got["evt_ok"].value, got["evt_ok"].is_value_not_numeric) == (12.5, False)


def test_missing_unit_is_imputed_from_the_metric_only_when_value_present(spark):
    rows = [event("evt_cpu", metric="cpu_hours", unit=None, value_raw="2"),
            event("evt_gb", metric="storage_gb_hours", unit=None, value_raw="1e3"),
            event("evt_novalue", metric="requests", unit=None, value_raw=None)]
    got = _silver(spark, rows)
    assert {k: (r.unit, r.is_unit_imputed) for k, r in got.items()} == {
        "evt_cpu": ("hours", True), "evt_gb": ("gb_hours", True), "evt_novalue": (None, False)}


def test_v1_has_no_carbon_and_tokens_belong_to_genai(spark):
    rows = [event("evt_v1", schema_version=1, carbon_kg=0.5, timestamp="2025-07-05T10:00:00Z"),
            event("evt_v2", genai_tokens=99),
            event("evt_genai", org_id="org_b", resource_id="res_b1", service="GenAI", genai_tokens=800)]
    got = _silver(spark, rows)
    assert (got["evt_v1"].carbon_kg, got["evt_v2"].carbon_kg) == (None, 0.02)
    assert (got["evt_v2"].genai_tokens, got["evt_genai"].genai_tokens, got["evt_genai"].service) == (None, 800, "genai")


def test_cost_spike_is_flagged_above_the_threshold_and_kept(spark):
    got = _silver(spark, [event("evt_small", cost_usd_increment=2.0), event("evt_big", cost_usd_increment=50.0)], 10.0)
    assert {k: r.is_cost_spike for k, r in got.items()} == {"evt_small": False, "evt_big": True}


def test_events_are_enriched_with_org_and_resource(spark):
    row = _silver(spark, [event("evt_1")])["evt_1"]
    enrichment = (row.org_name, row.plan_tier, row.resource_state, row.resource_tags)
    assert enrichment == ("Org org_a", "pro", "running", {"env": "prod"})


def test_enrichment_refuses_a_master_with_repeated_keys(spark):
    with pytest.raises(JoinExplosionError, match=r"silver/resources has more than one row per \['resource_id'\]"):
        assert_unique(resources_df(spark, ("res_a1", "res_a1")), ["resource_id"], "resources")


def test_tags_json_becomes_an_array_and_a_map(spark):
    df = spark.createDataFrame([('["env:prod", "pii:true"]',), (None,), ("not json",)], "tags_json string")
    rows = with_tags(df).collect()
    assert [(r.tags, r.tags_map) for r in rows] == [
        (["env:prod", "pii:true"], {"env": "prod", "pii": "true"}), ([], {}), (None, None)]


def test_daily_features_sum_values_per_metric_not_events(spark):
    rows = [event("e1", "2025-07-05T01:00:00Z", value_raw="100", cost_usd_increment=1.5, schema_version=1),
            event("e2", "2025-07-05T02:00:00Z", value_raw="50", cost_usd_increment=0.5, schema_version=1),
            event("e3", "2025-07-05T03:00:00Z", metric="cpu_hours", unit="hours", value_raw="2.5", schema_version=1)]
    valid, _, _ = check_events(events_df(spark, rows), orgs_df(spark), resources_df(spark))
    day = daily_features(silver_events(valid, None, orgs_df(spark), resources_df(spark), "r")).first()
    assert (day.requests, day.cpu_hours, day.storage_gb_hours, day.daily_cost_usd) == (150.0, 2.5, 0.0, 3.0)
    assert (day.event_count, day.genai_tokens, day.carbon_kg) == (3, 0, None)  # v1 only: carbon unknown


# --- the stage on a hand-made Bronze lake -------------------------------------------------------

def _paths(lake) -> LakePaths:
    return LakePaths.from_roots(lake, lake.parent / "landing")


def _snapshot(spark, paths, table, zone="silver"):
    uri = paths.silver(table) if zone == "silver" else paths.quarantine(table)
    df = spark.read.parquet(uri)
    drop = [c for c in ("run_id", "quarantined_at") if c in df.columns]
    columns = sorted(set(df.columns) - set(drop))
    return columns, df.select(*columns).collect()


def test_a_bronze_master_mixing_two_runs_is_refused_with_the_fix(spark, lake):
    """bronze_batch replaces a master whole; rows of two runs mean another tool wrote it, and Silver
    must not pick a snapshot silently (it learns the run id in the rules' counting job)."""
    paths, later = _paths(lake), _paths(lake.parent / "later_lake")
    write_bronze_masters(spark, paths)
    later_users = [("user_3", "org_b", "u3@example.com", "admin", True, date(2025, 6, 2), None)]
    write_bronze_masters(spark, later, run_id="20250903T000000Z-000009", rows={"users": later_users})
    spark.read.parquet(later.bronze("users")).write.mode("append").parquet(paths.bronze("users"))
    append_bronze_events(spark, paths, BATCH_0)
    with pytest.raises(MixedSnapshotError, match=r"bronze/users holds rows of more than one run .*01_bronze_batch"):
        silver.run(spark, paths, "20250903T000000Z-000010")
    assert not io.exists(spark, paths.silver("usage_events"))


BATCH_0 = [event(f"evt_{n:02d}", f"2025-07-{10 + n % 3:02d}T0{n % 10}:00:00Z", cost_usd_increment=1.0 + n)
           for n in range(9)] + [event("evt_bad", "2025-07-10T05:00:00Z", cost_usd_increment=-3.0)]
# batch 1: a late event for 07-10 (already processed) and a new day, with a cost that moves p99
BATCH_1 = [event("evt_late", "2025-07-10T22:00:00Z", cost_usd_increment=40.0, batch_id=1, is_late=True),
           event("evt_new", "2025-07-14T08:00:00Z", cost_usd_increment=2.0, batch_id=1)]


@pytest.fixture(scope="module")
def two_batch_lake(spark, tmp_path_factory):
    """Run 1 on batch 0, run 2 after batch 1 arrived. Tests using it must leave Silver as they found it."""
    paths = _paths(tmp_path_factory.mktemp("two_batches") / "lake")
    write_bronze_masters(spark, paths)
    append_bronze_events(spark, paths, BATCH_0)
    first = silver.run(spark, paths, "20250902T000000Z-000001", spike_factor=0.5)
    append_bronze_events(spark, paths, BATCH_1)
    second = silver.run(spark, paths, "20250902T000000Z-000002", spike_factor=0.5)
    return paths, first, second


def test_first_run_is_full_and_reconciles(two_batch_lake):
    _, first, _ = two_batch_lake
    events = first.table("usage_events")
    assert (events.details["mode"], events.rows_in, events.rows_out, events.quarantined) == ("full", 10, 9, 1)
    assert first.reconciles


def test_late_event_updates_its_already_processed_day(spark, two_batch_lake):
    paths, _, second = two_batch_lake
    assert second.table("usage_events").details["mode"] == "incremental"
    daily = spark.read.parquet(paths.silver("org_service_daily")).filter("usage_date = '2025-07-10'").first()
    # 07-10 holds evt_00, evt_03, evt_06 (costs 1, 4, 7) and now evt_late (40); evt_bad is quarantined
    assert (daily.event_count, daily.daily_cost_usd) == (4, 52.0)


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_incremental_result_equals_full_recompute(spark, two_batch_lake):
    paths, _, second = two_batch_lake
    # the late 40.0 moved p99, so flags of untouched days changed too: they were recomputed
    assert "spike threshold moved" in second.table("usage_events").details["reason"]
    tables = [("usage_events", "silver"), ("org_service_daily", "silver"), ("usage_events", "quarantine")]
    incremental = {t: _snapshot(spark, paths, *t) for t in tables}
    full = silver.run(spark, paths, "20250902T000000Z-000003", full_refresh=True, spike_factor=0.5)
    assert full.table("usage_events").details["mode"] == "full"
    for table in tables:
        columns, rows = _snapshot(spark, paths, *table)
        assert columns == incremental[table][0], table
        assertDataFrameEqual(rows, incremental[table][1], rtol=0, atol=0)


@pytest.fixture
def one_run_lake(spark, lake):
    paths = _paths(lake)
    write_bronze_masters(spark, paths)
    append_bronze_events(spark, paths, BATCH_0[:3])
    silver.run(spark, paths, "20250902T000000Z-000001", spike_factor=0.5)
    return paths


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_a_run_without_new_batches_recomputes_nothing(spark, one_run_lake):
    paths = one_run_lake
    lake = local_path(paths.lake_root)
    before = file_stamps(lake, ("silver", "quarantine"))
    again = silver.run(spark, paths, "20250902T000000Z-000004", spike_factor=0.5)
    assert (again.table("usage_events").rows_in, again.table("usage_events").details["dates_recomputed"]) == (0, 0)
    assert {t.details.get("write_mode") for t in again.tables} == {"unchanged"} and len(again.tables) == 9
    assert again.extra["plan"]["reason"] == "0 new Bronze batch(es)"
    assert file_stamps(lake, ("silver", "quarantine")) == before, "a run with nothing new rewrote Silver files"
    assert io.read_json(spark, silver.state_uri(paths))["run_id"] == "20250902T000000Z-000004"
    # Another setting, or a table gone, is not "nothing new": the run recomputes.
    factor = silver.run(spark, paths, "20250902T000000Z-000005", spike_factor=0.25)
    assert factor.table("usage_events").details["mode"] == "incremental"
    assert factor.table("org_service_daily").rows_out > 0
    shutil.rmtree(lake / "silver" / "org_service_daily")
    rebuilt = silver.run(spark, paths, "20250902T000000Z-000006", spike_factor=0.25)
    assert rebuilt.table("org_service_daily").rows_out == factor.table("org_service_daily").rows_out


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_new_master_snapshot_forces_a_full_recompute(spark, one_run_lake):
    paths = one_run_lake
    write_bronze_masters(spark, paths, run_id="20250903T000000Z-c0c0c0")
    report = silver.run(spark, paths, "20250903T000000Z-000005", spike_factor=0.5)
    details = report.table("usage_events").details
    assert (details["mode"], details["reason"]) == ("full", "a master snapshot changed since the last run")


# --- integration: the real Bronze stages on generated and course landing data -------------------

@pytest.fixture(scope="module")
def faulty_silver(faulty_chain):
    """Silver of the shared faulty chain (conftest), read only."""
    paths, reports, manifest = faulty_chain
    return paths, manifest["events"], reports["silver"]


def test_faulty_landing_counts_by_rule_match_the_manifest(faulty_silver):
    _, expected, report = faulty_silver
    events = report.table("usage_events")
    rules = events.details["rules"]
    assert rules["quarantine"] == expected["silver_quarantine_by_rule"]
    assert (events.rows_out, events.quarantined) == (expected["silver_rows"], expected["silver_quarantined_rows"])
    assert rules["flag"]["value_numeric"] == expected["value_not_numeric"]
    assert rules["impute"]["unit_present_when_value"] == expected["unit_imputed"]


def test_faulty_landing_bronze_is_silver_plus_quarantine(spark, faulty_silver):
    paths, _, report = faulty_silver
    bronze = spark.read.parquet(paths.bronze("usage_events")).count()
    silver_rows = spark.read.parquet(paths.silver("usage_events")).count()
    quarantine = spark.read.parquet(paths.quarantine("usage_events"))
    assert bronze == silver_rows + quarantine.count()
    assert quarantine.filter("rule = '' OR reason = '' OR source_file IS NULL").count() == 0
    assert report.reconciles


def _landing_totals(landing) -> dict:
    """Independent of Spark: valid-event totals straight from the JSONL files, with pandas."""
    import json

    import pandas as pd

    lines = [json.loads(line) for path in sorted((landing / "usage_events_stream").glob("*.jsonl"))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    events = pd.DataFrame(lines).drop_duplicates("event_id")
    valid = events[events["cost_usd_increment"] >= -0.01].copy()
    valid["value_num"] = pd.to_numeric(valid["value"], errors="coerce")
    totals = valid.groupby("metric")["value_num"].sum().to_dict()
    return {**totals, "cost": valid["cost_usd_increment"].sum(), "rows": len(valid)}


@pytest.mark.slow
def test_generated_totals_equal_an_independent_pandas_computation(spark, generated_landing, generated_chain):
    paths, _ = generated_chain
    daily = spark.read.parquet(paths.silver("org_service_daily"))
    got = daily.agg(*[F.sum(c).alias(c) for c in ("requests", "cpu_hours", "storage_gb_hours", "daily_cost_usd",
                                                   "event_count")]).first()
    expected = _landing_totals(generated_landing)
    assert got.event_count == expected["rows"]
    for metric in ("requests", "cpu_hours", "storage_gb_hours"):
        assert got[metric] == pytest.approx(expected[metric], rel=1e-9)
    assert got.daily_cost_usd == pytest.approx(expected["cost"], rel=1e-9)


@pytest.mark.slow
def test_course_data_silver_and_quarantine_counts(spark, course_chain):
    paths, reports = course_chain
    report = reports["silver"]
    events = report.table("usage_events")
    assert (events.rows_out, events.quarantined) == (42_989, 211)
    assert {k: v for k, v in events.details["rules"]["quarantine"].items() if v} == {"cost_not_below_floor": 211}
    assert spark.read.parquet(paths.silver("org_service_daily")).count() == 11_050
