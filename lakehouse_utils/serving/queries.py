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
    SERVING_TARGETS,
    CassandraError,
    named_statements,
    open_session,
    plain_value,
    target_from_settings,
)

QUERIES: dict[str, str] = named_statements((CQL_DIR / "queries.cql").read_text(encoding="utf-8"))
USAGE_TABLE = "daily_usage_by_org_month"


class MissingDataError(LookupError):
    """A default could not be derived because the serving table was never loaded."""


def _execute(session, name: str, params: dict) -> list[dict]:
    result = session.execute(session.prepare(QUERIES[name]), params)
    return [{column: plain_value(value) for column, value in row._asdict().items()} for row in result]


def metadata(session, table: str) -> dict:
    """The serving_metadata row of a table (date range, leading org); raises when it was never loaded."""
    rows = _execute(session, "metadata", {"table_name": table})
    if not rows:
        raise MissingDataError(f"{table} has no serving_metadata row, so the query has no default org or dates "
                               "(Q1 and Q5 run without it when given --org, --from and --to: a keyspace only `live` "
                               "filled has no such row). Load it with `python -m lakehouse_utils pipeline --stage "
                               "serving --full-refresh` (without --full-refresh a table already loaded is not "
                               "written again)")
    if rows[0]["max_date"] is None:
        raise MissingDataError(f"{table} was loaded from an empty Gold mart (serving_metadata has no dates): there "
                               "is nothing to query; check the Gold stage's counts")
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


# The queries over a range of days: the table whose latest date ends the default window, and its length in days.
DAY_WINDOWS = {"q1": (USAGE_TABLE, 7), "q3": ("tickets_by_severity_month", 30), "q5": ("genai_usage_by_org_month", 30)}


def day_window(session, table: str, days: int, date_from: date | None, date_to: date | None) -> tuple[date, date]:
    """[date_from, date_to], by default the `days` ending at the table's latest date (serving_metadata)."""
    date_to = date_to or metadata(session, table)["max_date"]
    return date_from or date_to - timedelta(days=days - 1), date_to


def q1(session, org_id: str, service: str | None = None, date_from: date | None = None,
       date_to: date | None = None) -> list[dict]:
    """Q1. Daily cost and requests per service of one org over [date_from, date_to] (default: the last 7 days)."""
    date_from, date_to = day_window(session, *DAY_WINDOWS["q1"], date_from, date_to)
    rows: list[dict] = []
    for bucket in month_buckets(date_from, date_to):
        common = {"org_id": org_id, "usage_month": bucket}
        if service is None:
            rows += _execute(session, "q1", common | {"date_from": date_from, "date_to": date_to})
        else:
            days = _days_in(bucket, date_from, date_to)
            rows += _execute(session, "q1_service", common | {"usage_dates": days, "service": service})
    return rows


def q2(session, org_id: str, n: int | None = None, as_of: date | None = None) -> list[dict]:
    """Q2. Top-n (default 5) services by cost over the 14 days ending at `as_of` (default: the latest usage date)."""
    as_of = as_of or metadata(session, "top_services_by_org_date")["max_date"]
    return _execute(session, "q2", {"org_id": org_id, "as_of_date": as_of, "n": int(n or 5)})


def q3(session, date_to: date | None = None, days: int | None = None, severity: str | None = None,
       date_from: date | None = None) -> list[dict]:
    """Q3. Tickets of `severity` (default critical) and SLA-breach rate per day over [date_from, date_to]
    (default: the `days`, 30 unless given, ending at the newest ticket), newest first."""
    table, default_days = DAY_WINDOWS["q3"]
    date_from, date_to = day_window(session, table, days or default_days, date_from, date_to)
    severity = (severity or "critical").lower()  # Silver conforms severities to lower case
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
    # Months are keyed by their first day: a range from the 15th still holds the month of the 15th.
    month_from, month_to = (month_from or facts["min_date"]).replace(day=1), month_to or facts["max_date"]
    rows: list[dict] = []
    for year in range(month_from.year, month_to.year + 1):
        rows += _execute(session, "q4", {"org_id": org_id, "billing_year": year,
                                         "month_from": month_from, "month_to": month_to})
    return [{"org_id": org_id, **row} for row in rows]


def q5(session, org_id: str | None = None, date_from: date | None = None,
       date_to: date | None = None) -> list[dict]:
    """Q5. GenAI tokens and estimated cost per day of one org (default: the most tokens; last 30 days)."""
    org_id = org_id or metadata(session, "genai_usage_by_org_month")["top_org_id"]
    date_from, date_to = day_window(session, *DAY_WINDOWS["q5"], date_from, date_to)
    rows: list[dict] = []
    for bucket in month_buckets(date_from, date_to):
        rows += _execute(session, "q5", {"org_id": org_id, "usage_month": bucket,
                                         "date_from": date_from, "date_to": date_to})
    return [{"org_id": org_id, **row} for row in rows]  # which org the default chose, as Q4 says


q1.cql = QUERIES["q1"] + ";\n\n" + QUERIES["q1_service"]
q2.cql, q3.cql, q4.cql, q5.cql = QUERIES["q2"], QUERIES["q3"], QUERIES["q4"], QUERIES["q5"]
DEMO_QUERIES = {"q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5}
MAX_TOP_N, MAX_DAYS = 1_000, 3_660
# Every window is paged month by month up to its last day: keep it inside the calendar Python can step through.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)


def bounded_int(largest: int):
    """argparse type: a whole number from 1 to `largest`."""
    def parse(text: str) -> int:
        value = positive_int(text)
        if value > largest:
            raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {largest:,}, got {text!r}")
        return value
    return parse


def query_date(text: str) -> date:
    """argparse type: a day (YYYY-MM-DD) the queries can page to."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise argparse.ArgumentTypeError(f"expected a date from {FIRST_DAY} to {LAST_DAY}, got {text!r}")
    return day


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", choices=sorted(DEMO_QUERIES), help="Q1 daily usage, Q2 top services, Q3 critical "
                        "tickets, Q4 revenue, Q5 GenAI")
    parser.add_argument("--org", help="org_id (default: the org with the highest total cost; Q4/Q5: revenue/tokens)")
    parser.add_argument("--service", help="Q1: only this service")
    parser.add_argument("--from", dest="date_from", type=query_date,
                        help="Q1, Q3, Q5: first day; Q4: first month (any day of it) (YYYY-MM-DD)")
    parser.add_argument("--to", dest="date_to", type=query_date, help="last day/month (default: latest)")
    parser.add_argument("--n", type=bounded_int(MAX_TOP_N), help=f"Q2: how many services (default 5, at most {MAX_TOP_N})")
    parser.add_argument("--as-of", type=query_date, help="Q2: end of the 14-day window (default: latest)")
    parser.add_argument("--days", type=bounded_int(MAX_DAYS),
                        help=f"Q3: days ending at --to (default 30, at most {MAX_DAYS}; or give --from)")
    parser.add_argument("--severity", help="Q3: ticket severity, any case (default critical)")
    parser.add_argument("--format", choices=["table", "json"], default="table")
    parser.add_argument("--target", choices=SERVING_TARGETS, help="default: SERVING_TARGET")
    parser.add_argument("--keyspace", help="default: CASSANDRA_KEYSPACE")


# The options each query reads; any other option given is refused rather than silently ignored.
QUERY_OPTIONS = {
    "q1": ("org", "service", "date_from", "date_to"),
    "q2": ("org", "n", "as_of", "date_to"),
    "q3": ("date_from", "date_to", "days", "severity"),
    "q4": ("org", "date_from", "date_to"),
    "q5": ("org", "date_from", "date_to"),
}
OPTION_FLAGS = {"org": "--org", "service": "--service", "date_from": "--from", "date_to": "--to", "n": "--n",
                "as_of": "--as-of", "days": "--days", "severity": "--severity"}


def unused_options(args: argparse.Namespace) -> list[str]:
    """The options given on the command line that `args.query` does not read."""
    return [flag for option, flag in OPTION_FLAGS.items()
            if getattr(args, option) is not None and option not in QUERY_OPTIONS[args.query]]


# Query -> the serving table whose leading org is the default --org.
DEFAULT_ORG_TABLE = {
    "q1": USAGE_TABLE, "q2": USAGE_TABLE, "q4": "revenue_by_org_year", "q5": "genai_usage_by_org_month",
}


def default_org(session, query: str) -> str | None:
    """The org a query shows when --org is omitted: the leader of its table (highest cost, revenue, tokens)."""
    table = DEFAULT_ORG_TABLE.get(query)
    return metadata(session, table)["top_org_id"] if table else None


def resolve_window(session, args: argparse.Namespace) -> str:
    """Fill in the dates a query would default to, so the header can say which range was asked for."""
    if args.query == "q2":
        args.as_of = args.as_of or args.date_to or metadata(session, "top_services_by_org_date")["max_date"]
        args.date_to = None
        return f"14 days ending {args.as_of}"
    if args.query == "q4":
        facts = metadata(session, "revenue_by_org_year")
        args.date_from = (args.date_from or facts["min_date"]).replace(day=1)
        args.date_to = args.date_to or facts["max_date"]
        _check_span(args.date_from, args.date_to)
        return f"months {args.date_from:%Y-%m} .. {args.date_to:%Y-%m}"
    table, days = DAY_WINDOWS[args.query]
    args.date_from, args.date_to = day_window(session, table, args.days or days, args.date_from, args.date_to)
    args.days = None
    _check_span(args.date_from, args.date_to)
    return f"{args.date_from} .. {args.date_to}"


def _check_span(date_from: date, date_to: date) -> None:
    if date_from > date_to:  # one end given, the other the data's latest day
        raise ValueError(f"the range {date_from} .. {date_to} ends before it starts: the data's latest day is "
                         f"{date_to} unless --to says otherwise; give an earlier --from")
    # A window is read one month partition at a time: ten years is 120 reads, a typo like 9998 is 95,000.
    if (date_to - date_from).days >= MAX_DAYS:
        raise ValueError(f"the range {date_from} .. {date_to} is longer than {MAX_DAYS:,} days: give a shorter one")


def run_query(session, args: argparse.Namespace) -> list[dict]:
    """Dispatch CLI arguments to q1..q5 (args.org must already be resolved for q1, q2, q4, q5)."""
    if args.query == "q1":
        return q1(session, args.org, args.service, args.date_from, args.date_to)
    if args.query == "q2":
        return q2(session, args.org, args.n, args.as_of or args.date_to)
    if args.query == "q3":
        return q3(session, args.date_to, args.days, args.severity, args.date_from)
    if args.query == "q4":
        return q4(session, args.org, args.date_from, args.date_to)
    return q5(session, args.org, args.date_from, args.date_to)


def run_cli(args: argparse.Namespace) -> int:
    if args.date_from and args.date_to and args.date_from > args.date_to:
        print(f"error: --from {args.date_from} is after --to {args.date_to}: give the earlier day first", file=sys.stderr)
        return 2
    unused = unused_options(args)
    if unused:
        print(f"error: {args.query} does not use {', '.join(unused)}; its options are "
              f"{', '.join(OPTION_FLAGS[o] for o in QUERY_OPTIONS[args.query])}", file=sys.stderr)
        return 2
    if args.query == "q3" and args.date_from and args.days:
        print("error: q3 takes --from or --days, not both (--days counts back from --to)", file=sys.stderr)
        return 2
    if args.query == "q2" and args.as_of and args.date_to:
        print("error: q2 takes --as-of or --to (the same day: the end of its 14-day window), not both", file=sys.stderr)
        return 2
    settings = Settings.load()
    try:
        target = target_from_settings(settings, args.target, args.keyspace)
        with open_session(target) as session:
            args.org = args.org or default_org(session, args.query)
            window = resolve_window(session, args)
            rows = run_query(session, args)
    except (CassandraError, MissingDataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    asked = [f"org {args.org}"] if args.query != "q3" else [f"severity {(args.severity or 'critical').lower()}"]
    asked += [f"service {args.service}"] if args.service else []
    print(f"-- {args.query.upper()} on {target.endpoint}, keyspace {target.keyspace}: {', '.join(asked)}, {window}",
          file=sys.stderr)
    print(DEMO_QUERIES[args.query].cql + ";", file=sys.stderr)
    print(json.dumps(rows, default=str, indent=1) if args.format == "json" else format_table(rows))
    if not rows:
        print(f"-- no rows for {', '.join(asked)}, {window}: check the values (org ids and services are as the "
              "landing spells them); with no options the query shows the latest data", file=sys.stderr)
    return 0
