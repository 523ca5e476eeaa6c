"""The rule engine (quality.apply_rules) and the rule catalogue, on small hand-made frames."""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql import functions as F

from lakehouse_utils.benchmark.jobs import JobCounter, jobs_submitted
from lakehouse_utils.quality import (
    EVENT_RULES,
    MASTER_RULES,
    Rule,
    RuleDefinitionError,
    apply_rules,
    quarantine_frame,
    repeated_keys,
    rules_for,
    validate_rules,
)
from lakehouse_utils.silver.events import check_events
from lakehouse_utils.silver.masters import conform_and_check, silver_master
from tests.silver_support import event, events_df, orgs_df, resources_df

POSITIVE = Rule("amount_positive", "t", ("amount",), "quarantine", "amount is not positive", predicate="amount > 0")


def test_validate_rules_rejects_an_impute_rule_without_fix():
    broken = Rule("x", "t", ("a",), "impute", "d", predicate="a > 0", flag="is_x")
    with pytest.raises(RuleDefinitionError, match="an impute rule needs columns\\[0\\] and a fix"):
        validate_rules([broken])


def test_validate_rules_rejects_duplicate_names():
    with pytest.raises(RuleDefinitionError, match="duplicate rule name"):
        validate_rules([POSITIVE, POSITIVE])


def test_validate_rules_rejects_a_repeat_check_on_a_rule_that_ranks_nothing():
    broken = Rule("x", "t", ("a",), "quarantine", "d", predicate="a > 0", check_repeats_first=True)
    with pytest.raises(RuleDefinitionError, match="check_repeats_first applies to a uniqueness rule"):
        validate_rules([broken])


def test_catalogue_is_valid_for_every_table():
    references = {"customers_orgs": None, "resources": None}
    validate_rules(EVENT_RULES, references)
    for table in {rule.table for rule in MASTER_RULES}:
        validate_rules(rules_for(MASTER_RULES, table), references)


def test_null_predicate_result_counts_as_failure(spark):
    df = spark.createDataFrame([(1, 5.0), (2, None), (3, -1.0)], "id int, amount double")
    valid, quarantine, counts = apply_rules(df, [POSITIVE])
    assert sorted(r.id for r in valid.collect()) == [1]
    assert sorted(r.id for r in quarantine.collect()) == [2, 3]
    assert (counts.rows_in, counts.quarantined, counts.by_rule) == (3, 2, {"amount_positive": 2})


def test_apply_rules_without_counts_runs_no_job_and_splits_the_same_rows(spark):
    df = spark.createDataFrame([(1, 5.0), (2, None), (3, -1.0)], "id int, amount double")
    with JobCounter(spark, "apply_rules(count=False) must not count") as jobs:
        valid, quarantine, counts = apply_rules(df, [POSITIVE], count=False)
    assert counts is None and jobs.count == 0
    assert sorted(r.id for r in valid.collect()) == [1]
    assert sorted(r.id for r in quarantine.collect()) == [2, 3]
    with pytest.raises(ValueError, match="needs count=True"):
        apply_rules(df, [POSITIVE], persist=True, count=False)


def test_quarantine_lists_every_failed_rule_with_reasons(spark):
    id_present = Rule("id_present", "t", ("id",), "quarantine", "id is missing", predicate="id IS NOT NULL")
    df = spark.createDataFrame([(None, -1.0)], "id int, amount double")
    _, quarantine, _ = apply_rules(df, [id_present, POSITIVE])
    row = quarantine.first()
    assert (row.rule, row.reason) == ("id_present,amount_positive", "id is missing; amount is not positive")
    assert quarantine.columns == ["id", "amount", "rule", "reason"]


def test_flag_rule_keeps_the_row_and_counts_only_kept_rows(spark):
    small = Rule("amount_small", "t", ("amount",), "flag", "large amount", predicate="amount < 10", flag="is_large")
    df = spark.createDataFrame([(1, 50.0), (2, 5.0), (3, -50.0)], "id int, amount double")
    valid, _, counts = apply_rules(df, [POSITIVE, small])
    assert {r.id: r.is_large for r in valid.collect()} == {1: True, 2: False}
    assert counts.by_rule["amount_small"] == 1  # row 3 also fails it but is quarantined


def test_impute_rule_sees_the_input_and_sets_fix_and_flag(spark):
    default = Rule("amount_present", "t", ("amount",), "impute", "no amount", predicate="amount IS NOT NULL",
                   flag="is_amount_defaulted", fix="CAST(0 AS DOUBLE)")
    df = spark.createDataFrame([(1, None), (2, 7.0)], "id int, amount double")
    valid, _, _ = apply_rules(df, [default])
    assert {r.id: (r.amount, r.is_amount_defaulted) for r in valid.collect()} == {1: (0.0, True), 2: (7.0, False)}


def test_reference_rule_quarantines_unknown_keys_without_multiplying_rows(spark):
    exists = Rule("org_exists", "t", ("org_id",), "quarantine", "unknown org", reference=("orgs", "org_id"))
    orgs = spark.createDataFrame([("a",), ("a",)], "org_id string")  # a repeated key must not duplicate rows
    df = spark.createDataFrame([(1, "a"), (2, "zz"), (3, None)], "id int, org_id string")
    valid, quarantine, _ = apply_rules(df, [exists], {"orgs": orgs})
    assert [r.id for r in valid.collect()] == [1]
    assert sorted(r.id for r in quarantine.collect()) == [2, 3]


def test_quarantine_frame_keeps_the_source_run_id_apart(spark):
    df = spark.createDataFrame([("a", "bronze-run", "r", "why")], "k string, run_id string, rule string, reason string")
    row = quarantine_frame(df, ["k", "run_id"], "silver-run").first()
    assert (row.source_run_id, row.run_id, row.rule) == ("bronze-run", "silver-run", "r")
    assert row.quarantined_at is not None


def test_each_event_fault_is_quarantined_under_its_own_rule(spark):
    faults = {
        "evt_null": event(None, content_hash="h0"),
        "evt_empty": event("", content_hash="h1"),
        "evt_badts": event("evt_badts", "not-a-time"),
        "evt_org": event("evt_org", org_id="org_zz"),
        "evt_res": event("evt_res", resource_id="res_zz"),
        "evt_cost": event("evt_cost", cost_usd_increment=-0.02),
        "evt_nocost": event("evt_nocost", cost_usd_increment=None),
        "evt_metric": event("evt_metric", metric="memory_gb_hours"),
        "evt_v3": event("evt_v3", schema_version=3),
    }
    rows = [*faults.values(), event("evt_ok"), event("evt_floor", cost_usd_increment=-0.01)]
    valid, quarantine, counts = check_events(events_df(spark, rows), orgs_df(spark), resources_df(spark))
    by_hash = {r.content_hash: r.rule for r in quarantine.collect()}
    assert by_hash == {
        "h0": "event_id_not_null", "h1": "event_id_not_null", "hash-evt_badts": "event_ts_parses",
        "hash-evt_org": "org_exists", "hash-evt_res": "resource_exists", "hash-evt_cost": "cost_not_below_floor",
        "hash-evt_nocost": "cost_not_below_floor", "hash-evt_metric": "metric_in_domain",
        "hash-evt_v3": "schema_version_in_domain",
    }
    assert sorted(r.event_id for r in valid.collect()) == ["evt_floor", "evt_ok"]  # -0.01 is on the floor, kept
    assert counts.by_rule["event_id_unique"] == 0  # two blank ids are not duplicates of each other


def test_conflicting_duplicate_keeps_the_earliest_ingest(spark):
    early, late = event("evt_dup", cost_usd_increment=1.0), event("evt_dup", cost_usd_increment=9.0)
    late["ingest_ts"], late["content_hash"] = late["ingest_ts"].replace(hour=1), "other"
    valid, quarantine, _ = check_events(events_df(spark, [late, early]), orgs_df(spark), resources_df(spark))
    assert [r.cost_usd_increment for r in valid.collect()] == [1.0]
    assert [(r.rule, r.cost_usd_increment) for r in quarantine.collect()] == [("event_id_unique", 9.0)]


def _plan_of(df) -> str:
    return df._jdf.queryExecution().executedPlan().toString()


def test_event_ids_that_never_repeat_are_ranked_without_sorting_every_row(spark):
    """Bronze holds one row per event_id: a narrow look for a repeat replaces the window (ADR 090.13)."""
    rows = [event("evt_a"), event("evt_b"), event(None, content_hash="h0"), event(None, content_hash="h1")]
    valid, quarantine, counts = check_events(events_df(spark, rows), orgs_df(spark), resources_df(spark))
    assert "Window" not in _plan_of(valid)
    assert sorted(r.event_id for r in valid.collect()) == ["evt_a", "evt_b"]
    assert (counts.by_rule["event_id_unique"], quarantine.count()) == (0, 2)  # blank ids: event_id_not_null


def test_a_repeated_event_id_is_ranked_and_exactly_one_identical_copy_kept(spark):
    twin = event("evt_twin", cost_usd_increment=3.0)
    rows = [event("evt_a"), twin, dict(twin), dict(twin)]  # three identical rows: no order can tell them apart
    valid, quarantine, counts = check_events(events_df(spark, rows), orgs_df(spark), resources_df(spark))
    assert "Window" in _plan_of(valid)
    assert sorted(r.event_id for r in valid.collect()) == ["evt_a", "evt_twin"]
    assert counts.by_rule["event_id_unique"] == 2
    assert [r.rule for r in quarantine.collect()] == ["event_id_unique"] * 2


def test_repeated_keys_costs_one_job_when_nothing_repeats_and_names_the_repeats_when_some_do(spark):
    unique = spark.createDataFrame([("a", 1), ("b", 1), ("c", 2)], "org_id string, day int")
    before = jobs_submitted(spark)
    assert repeated_keys(unique, ["org_id"]) == []
    assert jobs_submitted(spark) - before == 1  # the guard every join of Silver and Gold pays
    assert repeated_keys(unique, ["day"]) == [((1,), 2)]
    assert repeated_keys(unique.limit(0), ["org_id"]) == []


def _conformed_master(spark, table, rows, schema):
    bronze = spark.createDataFrame(rows, schema).select(
        "*", F.current_timestamp().alias("ingest_ts"), F.lit("f.csv").alias("source_file"), F.lit("r0").alias("run_id"))
    return conform_and_check(table, bronze, orgs_df(spark))


def test_nps_out_of_range_is_nulled_and_flagged_and_the_org_kept(spark):
    schema = ("org_id string, org_name string, industry string, hq_region string, plan_tier string, "
              "is_enterprise boolean, signup_date date, sales_rep string, lifecycle_stage string, "
              "marketing_source string, nps_score double")
    rows = [(f"org_{n}", "N", "Media", " US-East ", "Pro", True, date(2025, 1, 1), "rep_a", "active", "ads", nps)
            for n, nps in (("x", 101.0), ("y", -100.0))]
    valid, quarantine, _ = _conformed_master(spark, "customers_orgs", rows, schema)
    got = {r.org_id: (r.nps_score, r.is_nps_out_of_range, r.hq_region, r.plan_tier) for r in valid.collect()}
    assert got == {"org_x": (None, True, "us-east", "pro"), "org_y": (-100.0, False, "us-east", "pro")}
    assert quarantine.count() == 0


def test_csat_outside_one_to_five_is_nulled_and_severity_lower_cased(spark):
    schema = ("ticket_id string, org_id string, category string, severity string, created_at date, resolved_at date, "
              "csat double, sla_breached boolean")
    rows = [(f"t{c}", "org_a", "billing", " CRITICAL ", date(2025, 7, 1), None, c, False) for c in (0.0, 5.0, 6.0, 7.0)]
    valid, _, counts = _conformed_master(spark, "support_tickets", rows, schema)
    assert {r.ticket_id: r.csat for r in valid.collect()} == {"t0.0": None, "t5.0": 5.0, "t6.0": None, "t7.0": None}
    assert {r.severity for r in valid.collect()} == {"critical"}
    assert counts.by_rule["csat_in_scale"] == 3


def test_master_with_unknown_org_is_quarantined(spark):
    schema = ("user_id string, org_id string, email string, role string, active boolean, created_at date, "
              "last_login date")
    rows = [("u1", "org_a", "A@X.COM", "Admin", True, None, None), ("u2", "org_zz", "b@x", "admin", True, None, None)]
    valid, quarantine, _ = _conformed_master(spark, "users", rows, schema)
    assert [(r.user_id, r.email, r.role) for r in valid.collect()] == [("u1", "a@x.com", "admin")]
    assert [(r.user_id, r.rule) for r in quarantine.collect()] == [("u2", "org_exists")]


BILLING_SCHEMA = ("invoice_id string, org_id string, month date, subtotal double, credits double, taxes double, "
                  "currency string, exchange_rate_to_usd double")


def test_fx_rule_usd_is_one_eur_uses_its_rate_ars_is_taken_as_usd(spark):
    rows = [("i_usd", "org_a", date(2025, 7, 1), 100.0, None, 21.0, "usd", 0.97),
            ("i_eur", "org_a", date(2025, 7, 1), 100.0, 10.0, 21.0, "EUR", 1.1),
            ("i_ars", "org_a", date(2025, 7, 1), 100.0, 0.0, 21.0, "ARS", 0.0015)]
    valid, _, _ = _conformed_master(spark, "billing_monthly", rows, BILLING_SCHEMA)
    got = {r.invoice_id: r for r in silver_master("billing_monthly", valid, "run").collect()}
    usd = got["i_usd"]
    assert (usd.fx_rate_applied, usd.is_usd_rate_overridden, usd.net_usd) == (1.0, True, 121.0)
    assert (got["i_eur"].fx_rate_applied, got["i_eur"].net_usd) == (1.1, 122.1)  # 110 - 11 + 23.1
    assert (got["i_ars"].fx_rate_applied, got["i_ars"].is_ars_rate_ignored, got["i_ars"].net_usd) == (1.0, True, 121.0)
    assert (got["i_usd"].credits_usd, got["i_usd"].is_credits_defaulted) == (0.0, True)


def test_negative_credits_and_non_positive_eur_rate_are_quarantined(spark):
    rows = [("i1", "org_a", date(2025, 7, 1), 100.0, -5.0, 21.0, "USD", 1.0),
            ("i2", "org_a", date(2025, 7, 1), 100.0, 0.0, 21.0, "EUR", 0.0),
            ("i3", "org_a", date(2025, 7, 1), 100.0, 0.0, 21.0, "GBP", 1.3)]
    _, quarantine, _ = _conformed_master(spark, "billing_monthly", rows, BILLING_SCHEMA)
    assert {r.invoice_id: r.rule for r in quarantine.collect()} == {
        "i1": "credits_non_negative", "i2": "fx_rate_positive", "i3": "currency_in_domain"}
