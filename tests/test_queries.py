"""Q1..Q5 on the real local Cassandra give the answers Spark computes from the same Gold marts."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F
from serving_gold import SERVED_KEYSPACE

from lakehouse_utils.__main__ import main
from lakehouse_utils.serving import queries
from lakehouse_utils.serving.connection import CassandraTarget, open_session

KEYSPACE = SERVED_KEYSPACE
LATEST = date(2025, 8, 8)


@pytest.fixture(scope="module")
def gold(spark, small_served):
    """The small Gold marts, as served once for the session (conftest `small_served`), by mart name."""
    paths = small_served[0]
    return lambda mart: spark.read.parquet(paths.gold(mart))


@pytest.fixture
def session(gold, cassandra_endpoint):
    host, port = cassandra_endpoint
    with open_session(CassandraTarget("local", KEYSPACE, host=host, port=port)) as connected:
        yield connected


def _between(column: str, first: date, last: date):
    return F.col(column).between(F.lit(first), F.lit(last))


def _rows(df, columns: list[str]) -> list[tuple]:
    return [tuple(row) for row in df.select(*columns).collect()]


def test_q1_returns_daily_cost_and_requests_across_a_month_boundary(gold, session):
    first, last = date(2025, 7, 29), date(2025, 8, 3)
    is_org_a = F.col("org_id") == "org_a"
    expected = gold("org_daily_usage_by_service").where(is_org_a & _between("usage_date", first, last))
    columns = ["usage_date", "service", "daily_cost_usd", "requests"]
    result = queries.q1(session, "org_a", date_from=first, date_to=last)
    assert [tuple(r[c] for c in columns) for r in result] == _rows(expected.orderBy("usage_date", "service"), columns)
    assert len(result) == 18


def test_q1_filters_one_service_without_allow_filtering(gold, session):
    first, last = date(2025, 7, 30), date(2025, 8, 2)
    expected = gold("org_daily_usage_by_service").where(
        (F.col("org_id") == "org_b") & (F.col("service") == "storage") & _between("usage_date", first, last))
    result = queries.q1(session, "org_b", service="storage", date_from=first, date_to=last)
    assert [(r["usage_date"], r["daily_cost_usd"]) for r in result] == _rows(
        expected.orderBy("usage_date"), ["usage_date", "daily_cost_usd"])
    assert {r["service"] for r in result} == {"storage"}


def test_q2_defaults_to_the_latest_usage_date_and_ranks_by_cost(gold, session):
    expected = gold("top_services_14d").where((F.col("org_id") == "org_a") & (F.col("as_of_date") == F.lit(LATEST)))
    result = queries.q2(session, "org_a", n=2)
    columns = ["rank", "service", "cost_14d_usd", "window_start"]
    assert [tuple(r[c] for c in columns) for r in result] == _rows(expected.orderBy("rank").limit(2), columns)
    assert result[0]["as_of_date"] == LATEST and result[0]["window_start"] == LATEST - timedelta(days=13)


def test_q2_with_an_explicit_as_of_date(gold, session):
    as_of = date(2025, 7, 25)
    expected = gold("top_services_14d").where((F.col("org_id") == "org_b") & (F.col("as_of_date") == F.lit(as_of)))
    result = queries.q2(session, "org_b", n=5, as_of=as_of)
    assert [(r["rank"], r["service"], r["cost_14d_usd"]) for r in result] == _rows(
        expected.orderBy("rank"), ["rank", "service", "cost_14d_usd"])


def test_q3_critical_tickets_and_breach_rate_over_the_last_30_days(gold, session):
    last = gold("tickets_by_date_severity").agg(F.max("created_date")).first()[0]
    expected = gold("tickets_by_date_severity").where(
        (F.col("severity") == "critical") & _between("created_date", last - timedelta(days=29), last))
    columns = ["created_date", "tickets_opened", "sla_breach_count", "sla_breach_rate"]
    result = queries.q3(session)
    assert [tuple(r[c] for c in columns) for r in result] == _rows(expected.orderBy(F.desc("created_date")), columns)
    assert min(r["created_date"] for r in result) >= last - timedelta(days=29)
    assert len({r["created_date"].month for r in result}) == 2


def test_q4_monthly_revenue_in_usd_with_credits_and_taxes(gold, session):
    expected = gold("revenue_by_org_month").where(F.col("org_id") == "org_b").orderBy("month")
    columns = ["month", "subtotal", "credits", "taxes", "net_usd", "is_refund"]
    result = queries.q4(session, "org_b")
    assert [tuple(r[c] for c in columns) for r in result] == _rows(expected, columns)
    assert result[-1]["is_refund"] is True


def test_q4_from_a_day_inside_a_month_keeps_that_month(gold, session):
    months = [r["month"] for r in queries.q4(session, "org_b")]
    middle = months[len(months) // 2]
    from_mid_month = queries.q4(session, "org_b", middle.replace(day=15), middle.replace(day=20))
    assert [r["month"] for r in from_mid_month] == [middle]


def test_q3_from_a_day_and_in_any_case(gold, session):
    first, last = date(2025, 7, 20), LATEST
    expected = gold("tickets_by_date_severity").where(
        (F.col("severity") == "critical") & _between("created_date", first, last))
    result = queries.q3(session, last, severity="CRITICAL", date_from=first)
    assert [r["created_date"] for r in result] == [row[0] for row in _rows(
        expected.orderBy(F.desc("created_date")), ["created_date"])] and result


def test_q4_defaults_to_the_org_with_the_highest_net_revenue(gold, session):
    leader = gold("revenue_by_org_month").groupBy("org_id").agg(F.sum("net_usd").alias("net")).orderBy(
        F.desc("net")).first()["org_id"]
    assert {r["org_id"] for r in queries.q4(session)} == {leader}


def test_q5_genai_tokens_and_cost_only_on_days_with_usage(gold, session):
    first, last = date(2025, 7, 20), LATEST
    is_org_b = F.col("org_id") == "org_b"
    expected = gold("genai_tokens_by_org_date").where(is_org_b & _between("usage_date", first, last))
    columns = ["usage_date", "total_tokens", "estimated_cost_usd"]
    result = queries.q5(session, "org_b", first, last)
    assert [tuple(r[c] for c in columns) for r in result] == _rows(expected.orderBy("usage_date"), columns)
    assert len(result) == 15
    assert {r["org_id"] for r in result} == {"org_b"}


def test_q5_defaults_to_the_org_with_the_most_genai_tokens(gold, session):
    leader = gold("genai_tokens_by_org_date").groupBy("org_id").agg(F.sum("total_tokens").alias("tokens")).orderBy(
        F.desc("tokens")).first()["org_id"]
    assert {r["org_id"] for r in queries.q5(session)} == {leader}


def test_every_query_exposes_its_cql_without_allow_filtering():
    for name, function in queries.DEMO_QUERIES.items():
        assert function.cql.lstrip().upper().startswith("SELECT"), name
        assert "ALLOW FILTERING" not in function.cql.upper()


def test_month_buckets_cover_the_range():
    assert queries.month_buckets(date(2025, 6, 30), date(2025, 8, 1)) == ["2025-06", "2025-07", "2025-08"]


def test_cli_prints_a_json_array_keyed_by_column(gold, cassandra_endpoint, monkeypatch, capsys):
    host, port = cassandra_endpoint
    monkeypatch.setenv("CASSANDRA_HOST", host)
    monkeypatch.setenv("CASSANDRA_PORT", str(port))
    monkeypatch.setenv("CASSANDRA_KEYSPACE", KEYSPACE)
    assert main(["query", "q2", "--n", "3", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["as_of_date"] == LATEST.isoformat() and set(rows[0]) >= {"service", "cost_14d_usd"}


def test_cli_table_format_and_default_org(gold, cassandra_endpoint, monkeypatch, capsys):
    host, port = cassandra_endpoint
    monkeypatch.setenv("CASSANDRA_HOST", host)
    monkeypatch.setenv("CASSANDRA_PORT", str(port))
    monkeypatch.setenv("CASSANDRA_KEYSPACE", KEYSPACE)
    assert main(["query", "q1", "--from", "2025-08-07", "--to", "2025-08-08"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].split()[:3] == ["usage_date", "service", "daily_cost_usd"]
    assert "(5 rows)" in captured.out and "FROM daily_usage_by_org_month" in captured.err


def test_cli_says_the_window_it_asked_for_and_why_there_may_be_no_rows(gold, cassandra_endpoint, monkeypatch,
                                                                     capsys):
    host, port = cassandra_endpoint
    for name, value in (("CASSANDRA_HOST", host), ("CASSANDRA_PORT", str(port)), ("CASSANDRA_KEYSPACE", KEYSPACE)):
        monkeypatch.setenv(name, value)
    assert main(["query", "q1", "--org", "org_a"]) == 0
    header = capsys.readouterr().err.splitlines()[0]
    assert header.endswith(f"keyspace {KEYSPACE}: org org_a, {LATEST - timedelta(days=6)} .. {LATEST}")
    assert main(["query", "q1", "--org", "org_nobody"]) == 0
    captured = capsys.readouterr()
    assert "(no rows)" in captured.out and "-- no rows for org org_nobody, " in captured.err


@pytest.mark.parametrize(("argv", "expected"), [
    (["q3", "--from", "2025-07-01", "--org", "org_a"], "error: q3 does not use --org; its options are --from, --to, "
                                                        "--days, --severity"),
    (["q2", "--from", "2025-07-01"], "error: q2 does not use --from"),
    (["q1", "--days", "3"], "error: q1 does not use --days"),
    (["q3", "--from", "2025-07-01", "--days", "3"], "error: q3 takes --from or --days, not both"),
    (["q2", "--as-of", "2025-07-01", "--to", "2025-07-02"], "error: q2 takes --as-of or --to"),
])
def test_cli_refuses_an_option_its_query_does_not_use(argv, expected, capsys):
    assert main(["query", *argv]) == 2  # refused before it connects
    assert capsys.readouterr().err.startswith(expected)


@pytest.mark.parametrize("argv", [["q2", "--n", "2147483648"], ["q3", "--days", "10000000"],
                                  ["q1", "--to", "9999-12-31"], ["q5", "--from", "2025-13-01"]])
def test_cli_refuses_values_out_of_range_as_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["query", *argv])
    assert caught.value.code == 2 and "Traceback" not in capsys.readouterr().err


def test_cli_refuses_a_window_of_more_than_ten_years(gold, cassandra_endpoint, monkeypatch, capsys):
    host, port = cassandra_endpoint
    for name, value in (("CASSANDRA_HOST", host), ("CASSANDRA_PORT", str(port)), ("CASSANDRA_KEYSPACE", KEYSPACE)):
        monkeypatch.setenv(name, value)
    assert main(["query", "q1", "--org", "org_a", "--from", "2000-01-01", "--to", "9998-01-01"]) == 2
    assert "is longer than 3,660 days: give a shorter one" in capsys.readouterr().err
    assert main(["query", "q1", "--org", "org_a", "--from", "2030-01-01"]) == 2  # after the data's latest day
    assert f"the range 2030-01-01 .. {LATEST} ends before it starts" in capsys.readouterr().err


def test_cli_reports_an_unreachable_node_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setenv("CASSANDRA_HOST", "127.0.0.1")
    monkeypatch.setenv("CASSANDRA_PORT", "1")
    assert main(["query", "q3"]) == 2
    assert "python -m lakehouse_utils cassandra status" in capsys.readouterr().err


def test_a_table_loaded_from_an_empty_mart_is_a_clear_error_not_a_traceback(session):
    probe = "an_empty_mart_probe"
    session.execute("INSERT INTO serving_metadata (table_name, row_count) VALUES (%s, 0)", (probe,))
    try:
        with pytest.raises(queries.MissingDataError, match=f"{probe} was loaded from an empty Gold mart"):
            queries.day_window(session, probe, 7, None, None)
    finally:
        session.execute("DELETE FROM serving_metadata WHERE table_name = %s", (probe,))
