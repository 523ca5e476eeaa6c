"""The five demo queries (Q1..Q5) against the serving keyspace, and their CLI.

The CQL text lives in `cql/queries.cql` (one named statement per query); each
function here binds it, runs one statement per time bucket the range touches and
returns plain rows (list of dicts: dates as `datetime.date`, sets as sorted
lists, maps as dicts). `qN.cql` is the text, for the notebook to show.
Defaults (latest date, leading org) come from `serving_metadata`.

CLI: `python -m lakehouse_utils query q1 --org ORG --from 2025-08-01 --to 2025-08-07 --format json`
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta

from lakehouse_utils.config import Settings, positive_int
from lakehouse_utils.report import format_table
from lakehouse_utils.serving.connection import (
    CQL_DIR,
    CassandraError,
    named_statements,
    open_session,
    target_from_settings,
)

QUERIES: dict[str, str] = named_statements((CQL_DIR / "queries.cql").read_text(encoding="utf-8"))
USAGE_TABLE = "daily_usage_by_org_month"


class MissingDataError(LookupError):
    """A default could not be derived because the serving table was never loaded."""


def _plain(value):
    from cassandra.util import Date, OrderedMap, SortedSet

    if isinstance(value, Date):
        return value.date()
    if isinstance(value, (SortedSet, set, frozenset)):
        return sorted(value)
    if isinstance(value, (OrderedMap, dict)):
        return {key: value[key] for key in sorted(value)}
    return value


def _execute(session, name: str, params: dict) -> list[dict]:
    result = session.execute(session.prepare(QUERIES[name]), params)
    return [{column: _plain(value) for column, value in row._asdict().items()} for row in result]


def metadata(session, table: str) -> dict:
    """The serving_metadata row of a table (date range, leading org); raises when it was never loaded."""
    rows = _execute(session, "metadata", {"table_name": table})
    if not rows:
        raise MissingDataError(f"{table} has no serving_metadata row: load it first "
                               "(`python -m lakehouse_utils pipeline --stage serving`)")
    return rows[0]


def month_buckets(date_from: date, date_to: date) -> list[str]:
    """'YYYY-MM' of every month the closed range touches, oldest first."""
    months, current = [], date_from.replace(day=1)
    while current <= date_to:
        months.append(f"{current:%Y-%m}")
        current = (current + timedelta(days=32)).replace(day=1)
    return months


def _days_in(bucket: str, date_from: date, date_to: date) -> list[date]:
    first = date.fromisoformat(f"{bucket}-01")
    start, end = max(first, date_from), min((first + timedelta(days=32)).replace(day=1) - timedelta(days=1), date_to)
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def q1(session, org_id: str, service: str | None = None, date_from: date | None = None,
       date_to: date | None = None) -> list[dict]:
    """Q1. Daily cost and requests per service of one org over [date_from, date_to] (default: the last 7 days)."""
    date_to = date_to or metadata(session, USAGE_TABLE)["max_date"]
    date_from = date_from or date_to - timedelta(days=6)
    rows: list[dict] = []
    for bucket in month_buckets(date_from, date_to):
        common = {"org_id": org_id, "usage_month": bucket}
        if service is None:
            rows += _execute(session, "q1", common | {"date_from": date_from, "date_to": date_to})
        else:
            days = _days_in(bucket, date_from, date_to)
            rows += _execute(session, "q1_service", common | {"usage_dates": days, "service": service})
    return rows


def q2(session, org_id: str, n: int = 5, as_of: date | None = None) -> list[dict]:
    """Q2. Top-n services by cost over the 14 days ending at `as_of` (default: the latest usage date)."""
    as_of = as_of or metadata(session, "top_services_by_org_date")["max_date"]
    return _execute(session, "q2", {"org_id": org_id, "as_of_date": as_of, "n": int(n)})


def q3(session, date_to: date | None = None, days: int = 30, severity: str = "critical") -> list[dict]:
    """Q3. Tickets of `severity` and SLA-breach rate per day over the `days` ending at `date_to`, newest first."""
    date_to = date_to or metadata(session, "tickets_by_severity_month")["max_date"]
    date_from = date_to - timedelta(days=days - 1)
    rows: list[dict] = []
    for bucket in reversed(month_buckets(date_from, date_to)):
        rows += _execute(session, "q3", {"severity": severity, "created_month": bucket,
                                         "date_from": date_from, "date_to": date_to})
    return rows


def q4(session, org_id: str | None = None, month_from: date | None = None,
       month_to: date | None = None) -> list[dict]:
    """Q4. Monthly revenue (invoice currency and USD) of one org (default: the highest net revenue)."""
    facts = metadata(session, "revenue_by_org_year")
    org_id = org_id or facts["top_org_id"]
    month_from, month_to = month_from or facts["min_date"], month_to or facts["max_date"]
    rows: list[dict] = []
    for year in range(month_from.year, month_to.year + 1):
        rows += _execute(session, "q4", {"org_id": org_id, "billing_year": year,
                                         "month_from": month_from, "month_to": month_to})
    return [{"org_id": org_id, **row} for row in rows]


def q5(session, org_id: str | None = None, date_from: date | None = None,
       date_to: date | None = None) -> list[dict]:
    """Q5. GenAI tokens and estimated cost per day of one org (default: the most tokens; last 30 days)."""
    facts = metadata(session, "genai_usage_by_org_month")
    org_id = org_id or facts["top_org_id"]
    date_to = date_to or facts["max_date"]
    date_from = date_from or date_to - timedelta(days=29)
    rows: list[dict] = []
    for bucket in month_buckets(date_from, date_to):
        rows += _execute(session, "q5", {"org_id": org_id, "usage_month": bucket,
                                         "date_from": date_from, "date_to": date_to})
    return [{"org_id": org_id, **row} for row in rows]  # which org the default chose, as Q4 says


q1.cql = QUERIES["q1"] + ";\n\n" + QUERIES["q1_service"]
q2.cql, q3.cql, q4.cql, q5.cql = QUERIES["q2"], QUERIES["q3"], QUERIES["q4"], QUERIES["q5"]
DEMO_QUERIES = {"q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", choices=sorted(DEMO_QUERIES), help="Q1 daily usage, Q2 top services, Q3 critical "
                        "tickets, Q4 revenue, Q5 GenAI")
    parser.add_argument("--org", help="org_id (default: the org with the highest total cost; Q4/Q5: revenue/tokens)")
    parser.add_argument("--service", help="Q1: only this service")
    parser.add_argument("--from", dest="date_from", type=date.fromisoformat, help="first day/month (YYYY-MM-DD)")
    parser.add_argument("--to", dest="date_to", type=date.fromisoformat, help="last day/month (default: latest)")
    parser.add_argument("--n", type=positive_int, default=5, help="Q2: how many services (default 5)")
    parser.add_argument("--as-of", type=date.fromisoformat, help="Q2: end of the 14-day window (default: latest)")
    parser.add_argument("--days", type=positive_int, default=30, help="Q3: days ending at --to (default 30)")
    parser.add_argument("--severity", default="critical", help="Q3: ticket severity (default critical)")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--target", choices=["local", "astra"], help="default: SERVING_TARGET")
    parser.add_argument("--keyspace", help="default: CASSANDRA_KEYSPACE")


# Query -> the serving table whose leading org is the default --org.
DEFAULT_ORG_TABLE = {
    "q1": USAGE_TABLE, "q2": USAGE_TABLE, "q4": "revenue_by_org_year", "q5": "genai_usage_by_org_month",
}


def default_org(session, query: str) -> str | None:
    """The org a query shows when --org is omitted: the leader of its table (highest cost, revenue, tokens)."""
    table = DEFAULT_ORG_TABLE.get(query)
    return metadata(session, table)["top_org_id"] if table else None


def run_query(session, args: argparse.Namespace) -> list[dict]:
    """Dispatch CLI arguments to q1..q5 (args.org must already be resolved for q1, q2, q4, q5)."""
    if args.query == "q1":
        return q1(session, args.org, args.service, args.date_from, args.date_to)
    if args.query == "q2":
        return q2(session, args.org, args.n, args.as_of or args.date_to)
    if args.query == "q3":
        return q3(session, args.date_to, args.days, args.severity)
    if args.query == "q4":
        return q4(session, args.org, args.date_from, args.date_to)
    return q5(session, args.org, args.date_from, args.date_to)


def run_cli(args: argparse.Namespace) -> int:
    if args.date_from and args.date_to and args.date_from > args.date_to:
        print(f"error: --from {args.date_from} is after --to {args.date_to}: give the earlier day first", file=sys.stderr)
        return 2
    settings = Settings.load()
    try:
        target = target_from_settings(settings, args.target, args.keyspace)
        with open_session(target) as session:
            args.org = args.org or default_org(session, args.query)
            rows = run_query(session, args)
    except (CassandraError, MissingDataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    org = f", org {args.org}" if args.query != "q3" else ""
    print(f"-- {args.query.upper()} on {target.endpoint}, keyspace {target.keyspace}{org}", file=sys.stderr)
    print(DEMO_QUERIES[args.query].cql + ";", file=sys.stderr)
    print(json.dumps(rows, default=str, indent=1) if args.format == "json" else format_table(rows))
    return 0
