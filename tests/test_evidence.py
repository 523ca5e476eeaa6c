"""Evidence that can fail: written counts, fingerprints, Cassandra = Gold by fingerprint."""

from __future__ import annotations

import pytest
from conftest import copy_of_lake
from pyspark.sql import functions as F
from silver_support import append_bronze_events, event, write_bronze_masters
from test_gold import write_silver

from lakehouse_utils import io
from lakehouse_utils.config import Settings
from lakehouse_utils.evidence import first_rows
from lakehouse_utils.evidence.inventory import LINEAGE_COLUMNS, compare, idempotency, lake_inventory
from lakehouse_utils.evidence.serving import cassandra_inventory, spark_type
from lakehouse_utils.fingerprint import fingerprint
from lakehouse_utils.gold import stage as gold
from lakehouse_utils.notebook import sample
from lakehouse_utils.paths import LakePaths
from lakehouse_utils.report import ReconciliationError
from lakehouse_utils.serving import stage as serving
from lakehouse_utils.serving.connection import CassandraTarget, open_session
from lakehouse_utils.silver import stage as silver

KEYSPACE = "cloud_analytics_evidtest"
ROWS = [("a", 1, 1.5, {"x": 1.0, "y": 2.0}, ["p", "q"]), ("b", 2, None, {}, ["r"]), ("c", None, 3.0, None, [])]
SCHEMA = "k string, n int, v double, m map<string,double>, s array<string>"


# ---------- fingerprints ----------

def test_a_sample_shows_the_same_rows_however_the_table_was_written(spark, tmp_path):
    """A re-executed notebook must show the same sample for the same data (not the first file's rows)."""
    rows = [(f"evt_{i:02d}", i % 3, {"team": str(i)}) for i in range(40)]
    frame = spark.createDataFrame(rows, "event_id string, day int, tags map<string,string>")
    one_way, other_way = str(tmp_path / "a"), str(tmp_path / "b")
    frame.orderBy(F.col("event_id").desc()).coalesce(1).write.parquet(one_way)
    frame.repartition(4, "day").write.parquet(other_way)
    shown = [sample(spark, uri, 3, columns=["event_id", "tags"])["event_id"].tolist() for uri in (one_way, other_way)]
    assert shown == [["evt_00", "evt_01", "evt_02"]] * 2
    assert [r.event_id for r in first_rows(frame.where("day = 2"), 2).collect()] == ["evt_02", "evt_05"]


def test_fingerprint_ignores_row_order_partitioning_and_float_noise(spark):
    base = fingerprint(spark.createDataFrame(ROWS, SCHEMA))
    shuffled = spark.createDataFrame(list(reversed(ROWS)), SCHEMA).repartition(3)
    noisy = shuffled.withColumn("v", F.col("v") + F.lit(1e-12))
    assert fingerprint(shuffled) == base == fingerprint(noisy)
    assert base.rows == 3 and len(base.digest) == 16


@pytest.mark.parametrize("column, key, value", [
    ("v", "a", lambda: F.lit(1.51)),  # one value of one row
    ("n", "c", lambda: F.lit(0)),  # a null becomes a value
    ("m", "a", lambda: F.create_map(F.lit("x"), F.lit(1.0))),  # a map entry goes
])
def test_fingerprint_changes_when_one_value_of_one_row_changes(spark, column, key, value):
    df = spark.createDataFrame(ROWS, SCHEMA)
    changed = df.withColumn(column, F.when(F.col("k") == key, value()).otherwise(F.col(column)))
    assert fingerprint(changed) != fingerprint(df)


def test_fingerprint_tells_swapped_nulls_apart(spark):
    left = spark.createDataFrame([("a", None)], "x string, y string")
    right = spark.createDataFrame([(None, "a")], "x string, y string")
    assert fingerprint(left) != fingerprint(right)


def test_set_fingerprint_ignores_order_and_null_versus_empty_but_not_members(spark):
    one = spark.createDataFrame([("a", ["q", "p"]), ("b", None)], "k string, s array<string>")
    other = spark.createDataFrame([("a", ["p", "q"]), ("b", [])], "k string, s array<string>")
    assert fingerprint(one, sets=True) == fingerprint(other, sets=True)
    assert fingerprint(one) != fingerprint(other)  # as lists, order is content
    fewer = spark.createDataFrame([("a", ["p"]), ("b", [])], "k string, s array<string>")
    assert fingerprint(fewer, sets=True) != fingerprint(other, sets=True)


def test_cql_types_map_to_spark_types():
    assert spark_type("frozen<map<text, double>>").simpleString() == "map<string,double>"
    assert spark_type("frozen<set<text>>").simpleString() == "array<string>"
    assert spark_type("bigint").simpleString() == "bigint"
    with pytest.raises(ValueError, match="no fingerprint mapping"):
        spark_type("duration")


# ---------- counts from the writes ----------

def test_write_returns_the_rows_the_writer_received(spark, tmp_path):
    df = spark.range(10).withColumn("p", F.col("id") % 2)
    written = io.replace_table(spark, df.filter("id < 7"), str(tmp_path / "t"), partition_by=["p"],
                               sums={"ids": F.col("id")})
    assert (written.rows, written.sums["ids"]) == (7, 21)
    again = io.overwrite_partitions(spark, df.filter("p = 1"), str(tmp_path / "t"), partition_by=["p"])
    assert again.rows == 5 and spark.read.parquet(str(tmp_path / "t")).count() == 9


def test_silver_row_dropped_by_a_transform_fails_reconciliation(spark, tmp_path, monkeypatch):
    paths = LakePaths.from_roots(tmp_path / "lake", tmp_path / "landing")
    write_bronze_masters(spark, paths)
    append_bronze_events(spark, paths, [event(f"evt_{i:012d}", f"2025-07-2{i}T10:00:00Z") for i in range(3)])
    original = silver.silver_events

    def dropping_one(valid_df, *args):
        return original(valid_df, *args).filter(F.col("event_id") != "evt_000000000001")

    monkeypatch.setattr(silver, "silver_events", dropping_one)
    with pytest.raises(ReconciliationError, match=r"usage_events: in 3 != out 2 .*\+1 rows unaccounted"):
        silver.run(spark, paths, "dropping")


def test_gold_row_dropped_by_a_mart_builder_fails_reconciliation(spark, tmp_path, monkeypatch):
    paths = LakePaths.from_roots(tmp_path / "lake", tmp_path / "landing")
    write_silver(spark, paths)
    original = gold.build_tickets_by_org_date
    monkeypatch.setattr(gold, "build_tickets_by_org_date", lambda df: original(df).limit(1))
    with pytest.raises(ReconciliationError, match=r"tickets_by_org_date: in 2 != out 1 "):
        gold.run(spark, paths, "dropping")


def test_aggregate_mart_counts_reconcile_source_rows_not_groups(faulty_chain):
    _, reports, _ = faulty_chain
    report = reports["gold"]
    report.assert_reconciles()
    tickets = report.table("tickets_by_date_severity")
    assert tickets.rows_out == tickets.rows_in > tickets.details["mart_rows"]
    silver_tickets = reports["silver"].table("support_tickets")
    assert tickets.rows_in == silver_tickets.rows_out


# ---------- inventory, Cassandra = Gold ----------

def test_lake_inventory_fingerprints_every_table_without_lineage(spark, faulty_chain):
    paths, _, _ = faulty_chain
    rows = lake_inventory(spark, paths)
    assert {r["zone"] for r in rows} >= {"bronze", "silver", "gold", "quarantine"}
    assert all(r["fingerprint"] is not None for r in rows if r["files"]) and sum(r["rows"] for r in rows) > 0
    daily = spark.read.parquet(paths.silver("org_service_daily"))
    expected = fingerprint(daily, exclude=LINEAGE_COLUMNS)
    found = next(r for r in rows if (r["zone"], r["table"]) == ("silver", "org_service_daily"))
    assert (found["rows"], found["fingerprint"]) == (expected.rows, expected.digest)


@pytest.fixture(scope="module")
def served(spark, faulty_chain, cassandra_endpoint, tmp_path_factory):
    """The faulty chain's Gold served into a keyspace of this module, from a copy of the lake: serving writes
    its checkpoints and the keyspace claim into the lake, and the session's chain is shared read-only."""
    shared, _, _ = faulty_chain
    paths = copy_of_lake(shared, tmp_path_factory.mktemp("evidence_served"))
    host, port = cassandra_endpoint
    target = CassandraTarget("local", KEYSPACE, host=host, port=port)
    settings = Settings.load(cassandra_host=host, cassandra_port=str(port), cassandra_keyspace=KEYSPACE)
    serving.run(spark, paths, "evidence-test", settings=settings, full_refresh=True)
    yield paths, target
    with open_session(target, use_keyspace=False) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_one_changed_cassandra_value_breaks_matches_gold_and_idempotency(spark, served):
    paths, target = served
    with open_session(target) as session:
        before = cassandra_inventory(session, KEYSPACE, spark, paths)
        by_table = {r["table"]: r for r in before}
        assert all(r["matches_gold"] for name, r in by_table.items() if name != "serving_metadata"), before
        assert by_table["serving_metadata"]["matches_gold"] is None
        row = session.execute("SELECT org_id, billing_year, month, net_usd FROM revenue_by_org_year LIMIT 1").one()
        update = "UPDATE revenue_by_org_year SET net_usd = %s WHERE org_id = %s AND billing_year = %s AND month = %s"
        session.execute(update, (row.net_usd + 0.01, row.org_id, row.billing_year, row.month))
        try:
            after = cassandra_inventory(session, KEYSPACE, spark, paths)
        finally:
            session.execute(update, (row.net_usd, row.org_id, row.billing_year, row.month))
        restored = cassandra_inventory(session, KEYSPACE, spark, paths)
    changed = {r["table"]: r for r in after}
    assert changed["revenue_by_org_year"]["matches_gold"] is False
    assert changed["revenue_by_org_year"]["rows"] == by_table["revenue_by_org_year"]["rows"]  # counts alone agree
    assert all(r["matches_gold"] for n, r in changed.items() if n not in ("serving_metadata", "revenue_by_org_year"))
    comparison, ok, verdict = idempotency(before, after)
    assert not ok and "DIFFERENT from Gold: revenue_by_org_year" in verdict
    assert "CHANGED: cassandra/revenue_by_org_year" in verdict
    assert [r["table"] for r in comparison if not r["identical"]] == ["revenue_by_org_year"]
    assert idempotency(before, restored)[1]


def test_compare_flags_a_table_whose_content_changed_with_the_same_counts():
    before = [{"zone": "gold", "table": "m", "rows": 3, "partitions": 1, "files": 1, "fingerprint": "00aa"}]
    after = [before[0] | {"fingerprint": "00ab"}]
    assert [r["identical"] for r in compare(before, after)] == [False]
    assert compare(before, before)[0]["identical"]
    assert not idempotency(before, after)[1] and "CHANGED: gold/m" in idempotency(before, after)[2]

