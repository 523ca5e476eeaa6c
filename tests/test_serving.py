"""Serving stage against the real local Cassandra: model, load, exact mirror of Gold, failures, secrets."""

from __future__ import annotations

import os
import socket
import zipfile
from datetime import date

import pytest
from pyspark.sql import functions as F
from serving_gold import SERVED_KEYSPACE, build_gold, write_gold
from test_security import lake_with_empty_gold

from lakehouse_utils import io
from lakehouse_utils.config import Settings
from lakehouse_utils.paths import KEYSPACE_NAME_MAX, InvalidNameError, LakePaths, check_name
from lakehouse_utils.serving import stage as serving
from lakehouse_utils.serving.connection import (
    CassandraTarget,
    CassandraUnavailableError,
    CassandraWriteError,
    Secret,
    connection_class,
    keyspace_exists,
    missing_keyspace_error,
    open_session,
    plain_value,
    split_statements,
)
from lakehouse_utils.serving.model import SERVING_TABLES, serving_table
from lakehouse_utils.serving.sync import TableSync, with_cql_wire_dates
from lakehouse_utils.serving.writer import CQL_DATE_EPOCH_DAYS, execute_with_retries, partition_units

# Overridable so that parallel checkouts on one Cassandra node do not share test tables.
KEYSPACE = os.environ.get("TEST_SERVING_KEYSPACE", "cloud_analytics_test_serving")
# Built at run time so no token-shaped literal sits in git; it is fake all the same.
FAKE_TOKEN = "AstraCS" + ":" + "fakeTokenValue:0123456789abcdef-never-print-me"


def _settings(host: str, port: int, **overrides: str) -> Settings:
    return Settings.load(cassandra_host=host, cassandra_port=str(port), cassandra_keyspace=KEYSPACE, **overrides)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _normalise(value):
    if isinstance(value, (list, tuple)):
        return tuple(sorted(value))
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return value


def cassandra_rows(session, table: str) -> list[tuple]:
    names = serving_table(table).column_names
    rows = session.execute(f"SELECT {', '.join(names)} FROM {table}")
    return sorted((tuple(_normalise(plain_value(getattr(row, n))) for n in names) for row in rows), key=repr)


def gold_rows(spark, paths: LakePaths, table: str) -> list[tuple]:
    spec = serving_table(table)
    served = spark.read.parquet(paths.gold(spec.mart)).select(*spec.select_columns())
    return sorted((tuple(_normalise(v) for v in row) for row in served.collect()), key=repr)


@pytest.fixture(scope="module")
def target(cassandra_endpoint):
    """The keyspace of this module's scenarios, created up front (their `session` opens it before they load)."""
    host, port = cassandra_endpoint
    created = CassandraTarget("local", KEYSPACE, host=host, port=port)
    serving.apply_schema(created)
    yield created
    with open_session(CassandraTarget("local", KEYSPACE, host=host, port=port), use_keyspace=False) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)


@pytest.fixture(scope="module")
def loaded(small_served):
    """(paths, report): Gold v1 served once into its own keyspace (conftest `small_served`, full refresh)."""
    paths, _, report = small_served
    return paths, report


@pytest.fixture
def session(target):
    with open_session(target) as connected:
        yield connected


@pytest.fixture
def served_session(small_served, target):
    """A session on the keyspace that `loaded` was served into."""
    with open_session(CassandraTarget("local", small_served[1], host=target.host, port=target.port)) as connected:
        yield connected


def test_serving_a_lake_without_gold_names_the_mart_and_creates_no_keyspace(spark, tmp_path, cassandra_endpoint):
    host, port = cassandra_endpoint
    empty = "cloud_analytics_test_no_gold"
    paths = LakePaths.from_roots(tmp_path / "lake", tmp_path / "landing")
    with pytest.raises(serving.GoldMissingError, match="Gold mart org_daily_usage_by_service not found at .*: run the "
                                                       "gold stage first"):
        serving.run(spark, paths, "20300101T000000Z-gggggg",
                    settings=Settings.load(cassandra_host=host, cassandra_port=str(port), cassandra_keyspace=empty))
    with open_session(CassandraTarget("local", "system", host=host, port=port), use_keyspace=False) as session:
        assert not keyspace_exists(session, empty)


def test_a_keyspace_name_cassandra_would_refuse_is_refused_first():
    assert check_name("k" * KEYSPACE_NAME_MAX, "keyspace")
    with pytest.raises(InvalidNameError, match=f"at most {KEYSPACE_NAME_MAX} characters"):
        check_name("k" * (KEYSPACE_NAME_MAX + 1), "keyspace")
    assert check_name("t" * 64, "table")


def test_apply_schema_creates_every_table_of_cql_dir(loaded, served_session):
    tables = {r.table_name for r in served_session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (SERVED_KEYSPACE,))}
    assert tables == {path.stem for path in serving.cql_files()}


def test_serving_columns_match_the_cql_columns(loaded, served_session):
    for spec in SERVING_TABLES:
        columns = {r.column_name for r in served_session.execute(
            "SELECT column_name FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
            (SERVED_KEYSPACE, spec.name))}
        assert set(spec.column_names) == columns, spec.name


def test_row_counts_equal_gold(spark, loaded, served_session):
    paths, _ = loaded
    for spec in SERVING_TABLES:
        count = served_session.execute(f"SELECT COUNT(*) FROM {spec.name}").one()[0]
        assert count == spark.read.parquet(paths.gold(spec.mart)).count() > 0, spec.name


def test_every_table_equals_its_gold_mart_in_all_columns(spark, loaded, served_session):
    paths, _ = loaded
    for spec in SERVING_TABLES:
        assert cassandra_rows(served_session, spec.name) == gold_rows(spark, paths, spec.name), spec.name


def test_report_reconciles_and_measures_throughput(loaded):
    _, report = loaded
    report.assert_reconciles()
    usage = report.table("daily_usage_by_org_month")
    assert usage.rows_in == usage.rows_out == 2 * 20 * 3 - 5
    assert usage.details["concurrency"] == serving.DEFAULT_CONCURRENCY
    assert usage.details["rows_per_second"] > 0


def test_collections_are_stored_as_set_and_map(loaded, served_session):
    row = served_session.execute("SELECT anomaly_methods, method_scores FROM cost_anomalies_by_org_month LIMIT 1").one()
    assert plain_value(row.anomaly_methods) == ["mad", "zscore"]
    assert plain_value(row.method_scores) == {"mad": 4.1, "zscore": 3.5}


def test_metadata_holds_latest_date_and_leading_org(loaded, served_session):
    row = served_session.execute("SELECT max_date, top_org_id, row_count FROM serving_metadata "
                                 "WHERE table_name = 'daily_usage_by_org_month'").one()
    assert (plain_value(row.max_date), row.top_org_id, row.row_count) == (date(2025, 8, 8), "org_b", 115)


def test_rerun_without_gold_changes_loads_nothing(spark, loaded, target, served_session):
    paths, _ = loaded
    settings = Settings.load(cassandra_host=target.host, cassandra_port=str(target.port),
                             cassandra_keyspace=SERVED_KEYSPACE)
    report = serving.run(spark, paths, "run-2", settings=settings)
    assert sum(t.rows_in for t in report.tables) == 0
    assert cassandra_rows(served_session, "top_services_by_org_date") == gold_rows(spark, paths, "top_services_by_org_date")


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_reload_after_gold_change_leaves_no_stale_rows(spark, tmp_path, target, session):
    paths = LakePaths.from_roots(tmp_path / "lake", "/nonexistent-landing")
    marts = build_gold(spark)
    write_gold(spark, paths, marts)
    settings = _settings(target.host, target.port)
    tables = ["top_services_by_org_date", "cost_anomalies_by_org_month", "daily_usage_by_org_month"]
    serving.run(spark, paths, "run-1", settings=settings, tables=tables, full_refresh=True)
    # Gold v2: org_a's ranking on 2025-08-08 loses its 3rd service, the anomaly of 07-24 disappears,
    # and the usage partition of 2025-07-20 vanishes (as the gold stage's incremental write does).
    last_day = F.col("as_of_date") == F.lit("2025-08-08").cast("date")
    dropped_rank = last_day & (F.col("org_id") == "org_a") & (F.col("rank") == 3)
    io.overwrite_partitions(spark, marts["top_services_14d"].where(last_day & ~dropped_rank),
                            paths.gold("top_services_14d"), ["as_of_date"])
    anomalies = marts["cost_anomaly_mart"]
    io.replace_table(spark, anomalies.where(F.col("usage_date") != F.lit("2025-07-24").cast("date")),
                     paths.gold("cost_anomaly_mart"))
    io.delete(spark, f"{paths.gold('org_daily_usage_by_service')}/usage_date=2025-07-20")
    report = serving.run(spark, paths, "run-2", settings=settings, tables=tables)
    for table in tables:
        assert cassandra_rows(session, table) == gold_rows(spark, paths, table), table
    deleted = {t.table: t.details["stale_rows_deleted"] for t in report.tables}
    assert deleted == {"top_services_by_org_date": 1, "cost_anomalies_by_org_month": 1, "daily_usage_by_org_month": 5}


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_an_emptied_unpartitioned_mart_empties_its_table(spark, tmp_path, target, session):
    paths = LakePaths.from_roots(tmp_path / "lake", "/nonexistent-landing")
    anomalies = build_gold(spark)["cost_anomaly_mart"]
    write_gold(spark, paths, {"cost_anomaly_mart": anomalies})
    settings = _settings(target.host, target.port)
    serving.run(spark, paths, "run-1", settings=settings, tables=["cost_anomalies_by_org_month"], full_refresh=True)
    io.replace_table(spark, anomalies.limit(0), paths.gold("cost_anomaly_mart"))
    report = serving.run(spark, paths, "run-2", settings=settings, tables=["cost_anomalies_by_org_month"])
    assert report.table("cost_anomalies_by_org_month").details["stale_rows_deleted"] == 3
    assert cassandra_rows(session, "cost_anomalies_by_org_month") == []


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_a_second_lake_takes_an_unclaimed_load_over_and_the_first_is_then_refused_with_the_fix(
        spark, tmp_path, target, session):
    from lakehouse_utils.serving.claim import KeyspaceClaimedError, read_claim

    table = "genai_usage_by_org_month"
    settings = _settings(target.host, target.port)
    genai = build_gold(spark)["genai_tokens_by_org_date"]
    lake_a = LakePaths.from_roots(tmp_path / "lake_a", "/nonexistent-landing")
    lake_b = LakePaths.from_roots(tmp_path / "lake_b", "/nonexistent-landing")
    write_gold(spark, lake_a, {"genai_tokens_by_org_date": genai})
    write_gold(spark, lake_b, {"genai_tokens_by_org_date": genai.where(F.col("org_id") == "org_b")})
    assert serving.run(spark, lake_a, "run-a1", settings=settings, tables=[table],
                       full_refresh=True).extra["keyspace_claim"] in ("claimed", "taken over")
    # Lake B has never loaded this keyspace: its first load empties the table, so org_a's rows
    # (lake A's, unknown to B's key mirror) cannot linger; the keyspace is B's from now on.
    report_b = serving.run(spark, lake_b, "run-b1", settings=settings, tables=[table])
    assert report_b.extra["keyspace_claim"] == "taken over"
    assert cassandra_rows(session, table) == gold_rows(spark, lake_b, table)
    assert read_claim(session).lake_root == lake_b.lake_root
    # Lake A loaded it before: both lakes would now write into one keyspace. Refused, nothing written.
    genai_v2 = genai.withColumn("total_tokens", F.col("total_tokens") + 1)
    write_gold(spark, lake_a, {"genai_tokens_by_org_date": genai_v2})
    with pytest.raises(KeyspaceClaimedError) as refused:
        serving.run(spark, lake_a, "run-a2", settings=settings, tables=[table])
    message = str(refused.value)
    assert f"serves another lake ({lake_b.lake_root}" in message and f"this lake ({lake_a.lake_root})" in message
    assert "CASSANDRA_KEYSPACE=<name>" in message and "--full-refresh" in message
    assert cassandra_rows(session, table) == gold_rows(spark, lake_b, table)
    # The fix the message names: a full refresh moves the keyspace back to lake A, equal to its Gold.
    assert serving.run(spark, lake_a, "run-a3", settings=settings, tables=[table],
                       full_refresh=True).extra["keyspace_claim"] == "taken over"
    assert cassandra_rows(session, table) == gold_rows(spark, lake_a, table)


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_a_deleted_serving_checkpoint_reloads_the_table_from_empty(spark, tmp_path, target, session):
    table = serving_table("revenue_by_org_year")
    settings = _settings(target.host, target.port)
    paths = LakePaths.from_roots(tmp_path / "lake", "/nonexistent-landing")
    revenue = build_gold(spark)["revenue_by_org_month"]
    write_gold(spark, paths, {"revenue_by_org_month": revenue})
    serving.run(spark, paths, "run-1", settings=settings, tables=[table.name], full_refresh=True)
    # Gold loses org_a while the serving checkpoint and key mirror are gone: nothing records that
    # org_a's rows were loaded, so only a reload from an empty table can remove them.
    write_gold(spark, paths, {"revenue_by_org_month": revenue.where(F.col("org_id") == "org_b")})
    io.delete(spark, serving.checkpoint_uri(paths, table, target))
    io.delete(spark, serving.mirror_uri(paths, table, target))
    report = serving.run(spark, paths, "run-2", settings=settings, tables=[table.name])
    assert report.extra["keyspace_claim"] == "kept"
    assert cassandra_rows(session, table.name) == gold_rows(spark, paths, table.name)
    assert {row[0] for row in cassandra_rows(session, table.name)} == {"org_b"}


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_a_keyspace_dropped_under_a_lake_or_released_is_reloaded_in_full(spark, tmp_path, target, monkeypatch):
    from lakehouse_utils.serving.claim import read_claim, release_claim
    from scripts.run_notebooks import release_keyspace

    table = "revenue_by_org_year"
    keyspace = f"{KEYSPACE}_dropped"
    settings = Settings.load(cassandra_host=target.host, cassandra_port=str(target.port), cassandra_keyspace=keyspace)
    dropped = CassandraTarget("local", keyspace, host=target.host, port=target.port)
    paths = LakePaths.from_roots(tmp_path / "lake", "/nonexistent-landing")
    write_gold(spark, paths, {"revenue_by_org_month": build_gold(spark)["revenue_by_org_month"]})
    serving.run(spark, paths, "run-1", settings=settings, tables=[table])
    try:
        with open_session(dropped, use_keyspace=False) as session:
            session.execute(f"DROP KEYSPACE {keyspace}", timeout=120)
        # The checkpoint says every Gold file was loaded; without the claim row that would leave
        # the re-created table empty for ever.
        report = serving.run(spark, paths, "run-2", settings=settings, tables=[table])
        assert report.extra["keyspace_claim"] == "claimed" and report.table(table).rows_out == 6
        with open_session(dropped) as session:
            assert cassandra_rows(session, table) == gold_rows(spark, paths, table)
            assert not release_claim(session, "someone-else") and read_claim(session) is not None
        # What `make notebooks` does with its throwaway lake: the keyspace is handed back.
        for key, value in {"CASSANDRA_HOST": target.host, "CASSANDRA_PORT": str(target.port),
                           "CASSANDRA_KEYSPACE": keyspace, "SERVING_TARGET": "local"}.items():
            monkeypatch.setenv(key, value)
        release_keyspace(tmp_path / "lake")
        with open_session(dropped) as session:
            assert read_claim(session) is None
        report = serving.run(spark, paths, "run-3", settings=settings, tables=[table])
        assert report.extra["keyspace_claim"] == "claimed" and report.table(table).rows_out == 6
        assert serving.run(spark, paths, "run-4", settings=settings,
                           tables=[table]).extra["keyspace_claim"] == "kept"
    finally:
        with open_session(dropped, use_keyspace=False) as session:
            session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


def test_null_primary_key_rows_are_quarantined_with_the_rule(spark, tmp_path, target):
    paths = LakePaths.from_roots(tmp_path / "lake", "/nonexistent-landing")
    marts = build_gold(spark)
    genai = marts["genai_tokens_by_org_date"]
    write_gold(spark, paths, {"genai_tokens_by_org_date": genai.unionByName(genai.limit(1).withColumn(
        "org_id", F.lit(None).cast("string")))})
    report = serving.run(spark, paths, "run-1", settings=_settings(target.host, target.port),
                         tables=["genai_usage_by_org_month"], full_refresh=True)
    counts = report.table("genai_usage_by_org_month")
    assert (counts.quarantined, counts.rows_out, counts.reconciles) == (1, genai.count(), True)
    quarantined = spark.read.parquet(paths.quarantine("serving_genai_usage_by_org_month"))
    assert [r["rule"] for r in quarantined.collect()] == ["primary_key_not_null"]


def test_unreachable_node_raises_a_clear_error(spark, loaded):
    paths, _ = loaded
    port = _closed_port()
    with pytest.raises(CassandraUnavailableError) as caught:
        serving.run(spark, paths, "run-x", settings=_settings("127.0.0.1", port))
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert "python -m lakehouse_utils cassandra status" in message and "CASSANDRA_HOST" in message


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_failed_batch_is_not_committed_and_the_rerun_resumes(spark, tmp_path, target, session):
    paths = LakePaths.from_roots(tmp_path / "lake", "/nonexistent-landing")
    write_gold(spark, paths, build_gold(spark))
    spec = serving_table("revenue_by_org_year")
    serving.reset_table(spark, paths, spec, target)
    down = CassandraTarget("local", KEYSPACE, host="127.0.0.1", port=_closed_port())
    with pytest.raises(CassandraUnavailableError):
        serving.load_table(spark, paths, spec, down, "run-1")
    checkpoint = serving.checkpoint_uri(paths, spec, target)
    assert io.exists(spark, f"{checkpoint}/offsets/0") and not io.exists(spark, f"{checkpoint}/commits/0")
    counts = serving.load_table(spark, paths, spec, target, "run-2")
    assert counts.rows_in == counts.rows_out == 6
    assert cassandra_rows(session, spec.name) == gold_rows(spark, paths, spec.name)


def test_fake_astra_token_never_appears_in_output_or_errors(spark, tmp_path, capsys, caplog):
    bundle = tmp_path / "secure-connect-fake.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("config.json", f'{{"host": "127.0.0.1", "port": {_closed_port()}, "keyspace": "x"}}')
    settings = Settings.load(serving_target="astra", astra_db_secure_bundle_path=str(bundle),
                             astra_db_application_token=FAKE_TOKEN, cassandra_keyspace=KEYSPACE)
    paths = lake_with_empty_gold(tmp_path)  # the stage checks Gold before it connects
    with pytest.raises(CassandraUnavailableError) as caught:
        serving.run(spark, paths, "run-1", target="astra", settings=settings)
    target = CassandraTarget("astra", KEYSPACE, bundle_path=str(bundle), token=Secret(FAKE_TOKEN))
    print(target, target.token, repr(settings))
    captured = capsys.readouterr()
    texts = [str(caught.value), repr(caught.value), captured.out, captured.err, caplog.text]
    assert "ASTRA_DB_SECURE_BUNDLE_PATH" in str(caught.value)
    assert not [text for text in texts if FAKE_TOKEN in text or "fakeTokenValue" in text]


def test_astra_missing_keyspace_error_names_the_console_step():
    target = CassandraTarget("astra", "cloud_analytics", bundle_path="b.zip", token=Secret(FAKE_TOKEN))
    message = str(missing_keyspace_error(target))
    assert "Astra console" in message and "Create Keyspace" in message and "cloud_analytics" in message


def test_keyspace_exists_detects_a_missing_keyspace(target):
    with open_session(target, use_keyspace=False) as session:
        assert keyspace_exists(session, "system") and not keyspace_exists(session, "no_such_keyspace_here")


def test_connection_class_round_trips_on_this_python(target):
    assert connection_class().__name__ in {"LibevConnection", "AsyncioConnection"}
    with open_session(target, use_keyspace=False) as session:
        assert session.execute("SELECT release_version FROM system.local").one()[0].startswith("5.0")


def test_keyspace_names_are_allow_listed_before_reaching_cql():
    with pytest.raises(ValueError, match="invalid keyspace name"):
        CassandraTarget("local", "ks; DROP KEYSPACE system")


def test_split_statements_drops_comment_lines():
    text = "-- Q1: a; comment\nCREATE TABLE a (x int PRIMARY KEY);\n-- next\nCREATE TABLE b (y int PRIMARY KEY);\n"
    assert split_statements(text) == ["CREATE TABLE a (x int PRIMARY KEY)", "CREATE TABLE b (y int PRIMARY KEY)"]


def test_partition_units_group_rows_of_one_partition_and_bound_the_batch():
    rows = [("a", 1, "x"), ("a", 1, "y"), ("a", 1, "z"), ("a", 2, "x"), ("b", 1, "x")]
    assert list(partition_units(iter(rows), key_width=2, max_rows=2)) == [
        [("a", 1, "x"), ("a", 1, "y")], [("a", 1, "z")], [("a", 2, "x")], [("b", 1, "x")]]
    wide = [("a", 1, "v" * 300)] * 3
    assert [len(u) for u in partition_units(iter(wide), key_width=2, max_rows=20, max_bytes=700)] == [2, 1]


def test_dates_reach_the_driver_as_the_bytes_it_would_send_for_the_date(spark):
    from cassandra.cqltypes import SimpleDateType

    days = [date(1969, 12, 31), date(1970, 1, 1), date(2025, 7, 21), date(9999, 12, 31), None]
    df = spark.createDataFrame([(i, d) for i, d in enumerate(days)], "i int, usage_date date")
    wired = with_cql_wire_dates(df)
    assert wired.columns == ["i", "usage_date"]
    rows = sorted(wired.collect())
    for day, (_, wire) in zip(days, rows, strict=True):
        if day is None:
            assert wire is None
        else:
            assert isinstance(wire, int)
            assert SimpleDateType.serialize(wire, 4) == SimpleDateType.serialize(day, 4), day


def test_a_row_that_keeps_failing_is_quoted_with_its_dates_as_dates(session):
    session.execute("CREATE TABLE IF NOT EXISTS wire_date_probe (k text, d date, v text, PRIMARY KEY ((k), d))")
    prepared = session.prepare("INSERT INTO wire_date_probe (k, d, v) VALUES (?, ?, ?)")
    wire = date(2025, 7, 21).toordinal() - date(1970, 1, 1).toordinal() + CQL_DATE_EPOCH_DAYS
    # a real node takes the wire number for the date...
    assert execute_with_retries(session, prepared, [[("ok", wire, "x")]], 4, "wire_date_probe", date_positions=(1,)) == 1
    assert session.execute("SELECT d FROM wire_date_probe WHERE k = 'ok'").one().d.date() == date(2025, 7, 21)
    # ...and a batch over the node's 50 KiB limit for batches of several partitions fails every attempt:
    # the error quotes the row with its date, not the number
    too_large = [(f"big{day}", wire + day, "v" * 30_000) for day in range(2)]
    with pytest.raises(CassandraWriteError) as failure:
        execute_with_retries(session, prepared, [too_large], 4, "wire_date_probe", max_attempts=1, date_positions=(1,))
    assert "datetime.date(2025, 7, 21)" in str(failure.value)
    assert str(wire) not in str(failure.value)


def drop_connection_pools(session) -> None:
    """The client's view of a node that went away (the node itself stays up for the rest of the suite)."""
    for host in list(session.cluster.metadata.all_hosts()):
        session.remove_pool(host)


def test_a_write_that_finds_no_node_says_the_target_cannot_be_reached_with_the_fix(target):
    """The node went away after the session connected and prepared (found by CI: the message was the driver's
    `NoHostAvailable` after five attempts). This session drops its connection pools, the client's view of a
    node that is gone, while the node stays up for the rest of the suite."""
    with open_session(target) as session:
        session.execute("CREATE TABLE IF NOT EXISTS unreachable_probe (k text PRIMARY KEY, v text)")
        prepared = session.prepare("INSERT INTO unreachable_probe (k, v) VALUES (?, ?)")
        drop_connection_pools(session)
        with pytest.raises(CassandraUnavailableError) as failure:
            execute_with_retries(session, prepared, [[("k1", "v")], [("k2", "v")]], 4, "unreachable_probe",
                                 max_attempts=2, base_delay_s=0.01, target=target)
    message = str(failure.value)
    assert f"cannot reach Cassandra at {target.host}:{target.port}" in message, message
    assert "2 rows of table unreachable_probe found no node after 2 attempts" in message
    assert "python -m lakehouse_utils cassandra status" in message
    # Without a target to name, the rows are still reported as not written.
    with open_session(target) as session:
        prepared = session.prepare("INSERT INTO unreachable_probe (k, v) VALUES (?, ?)")
        drop_connection_pools(session)
        with pytest.raises(CassandraWriteError, match=r"1 rows of table unreachable_probe still failed after 1 attempts"):
            execute_with_retries(session, prepared, [[("k3", "v")]], 4, "unreachable_probe", max_attempts=1)


def test_a_node_gone_between_connecting_and_using_the_keyspace_is_unreachable_not_a_driver_error(target):
    """Found by CI: a node stopped mid-load answered an executor's `USE` with "Server is shutting down", and the
    load failed with the driver's `NoHostAvailable` instead of saying the target cannot be reached."""
    from lakehouse_utils.serving.connection import set_keyspace

    with open_session(target, use_keyspace=False) as session:
        drop_connection_pools(session)
        with pytest.raises(CassandraUnavailableError) as failure:
            set_keyspace(session, target)
    message = str(failure.value)
    assert f"cannot reach Cassandra at {target.host}:{target.port}" in message and "NoHostAvailable" in message
    assert "python -m lakehouse_utils cassandra status" in message


def test_the_live_layer_says_the_target_cannot_be_reached_when_its_node_goes_away_then_writes(target):
    """The live layer keeps its session between micro-batches. When the node went away meanwhile, the batch's wait
    message names the target and the fix (it quoted the driver's `NoHostAvailable`), whether the statement was
    prepared by an earlier batch or not; the retry then writes the row. A session that drops its connection pools
    is the client's view of a node that is gone (the node stays up for the rest of the suite)."""
    import threading

    from lakehouse_utils.live.metrics import GENAI_TABLE
    from lakehouse_utils.live.upsert import LiveUpserter

    def row(day: int) -> dict[str, list[tuple]]:
        return {GENAI_TABLE: [("org_live_probe", "2025-07", date(2025, 7, day), day, 0.5, 1)]}

    unreachable = f"Cassandra unavailable (cannot reach Cassandra at {target.host}:{target.port}"
    for prepared_before in (True, False):
        messages: list[str] = []
        upserter = LiveUpserter(target, threading.Event(), say=messages.append)
        try:
            if prepared_before:
                assert upserter.upsert(row(1), batch_id=6) == 1 and not messages
            drop_connection_pools(upserter._connect())
            assert upserter.upsert(row(2 if prepared_before else 3), batch_id=7) == 1
        finally:
            upserter.close()
        # One wait, usually; a slow node may cost another, which must say the same.
        assert messages and all(m.startswith(unreachable) for m in messages), (prepared_before, messages)
        assert "batch 7: nothing is committed until its upserts succeed" in messages[0]
    with open_session(target) as session:
        rows = session.execute(f"SELECT total_tokens FROM {GENAI_TABLE} WHERE org_id = 'org_live_probe' "
                               "AND usage_month = '2025-07'")
        assert sorted(r.total_tokens for r in rows) == [1, 2, 3]


def test_a_batch_holds_as_many_rows_as_its_first_row_allows():
    narrow, wide = ("a", 1, "x"), ("b", 1, "v" * 300)
    # the cap comes from the first row of each unit (rows of one partition are alike): 4 narrow rows, 2 wide ones
    units = list(partition_units(iter([narrow] * 5 + [wide] * 3), key_width=2, max_rows=4, max_bytes=700))
    assert [len(u) for u in units] == [4, 1, 2, 1]
    assert units[1] == [narrow] and units[2] == [wide, wide]


def test_serving_columns_start_with_the_partition_key(spark):
    for spec in SERVING_TABLES:
        assert tuple(spec.column_names[: len(spec.partition_key)]) == spec.partition_key, spec.name
        assert set(spec.primary_key) <= set(spec.column_names), spec.name


def test_a_statement_the_node_refuses_on_an_executor_is_one_line_without_a_stack_trace(spark, tmp_path, target):
    spec = serving_table("revenue_by_org_year")
    sync = TableSync(spark, spec, target, str(tmp_path / "mirror"), str(tmp_path / "quarantine"), [], "run-x", 4)
    df = spark.createDataFrame([("org-1", 2025, date(2025, 7, 1))], "org_id string, billing_year int, month date")
    with pytest.raises(CassandraWriteError) as failure:
        sync._execute(df, "INSERT INTO no_such_table (org_id) VALUES (?)", rows=1)
    message = str(failure.value)
    assert "no_such_table does not exist" in message and "failed on an executor" in message
    assert "Traceback" not in message and "\tat " not in message and len(message.splitlines()) == 1
