"""Small hand-made Gold marts (shapes of docs/data_dictionary.md) for the serving and query tests.

Two orgs, three services, 20 usage days across a month boundary (2025-07-20 ..
2025-08-08), tickets over 45 days, three billing months. Rows are generated in
Python from simple formulas, so each test can recompute what it expects.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession

from lakehouse_utils import io
from lakehouse_utils.contracts import GOLD_MARTS, MART_PARTITIONS
from lakehouse_utils.paths import LakePaths

ORGS = {"org_a": ("Acme", "retail", "pro", "us-east"), "org_b": ("Bolt", "fintech", "free", "eu-west")}
SERVICES = ("compute", "genai", "storage")
FIRST_DAY = date(2025, 7, 20)
DAYS = 20
# The keyspace the shared `small_served` fixture (conftest) loads these marts into.
SERVED_KEYSPACE = "cloud_analytics_test_small_served"
# Mart -> (schema, partition column), as the gold stage writes them (lakehouse_utils.contracts.gold).
MARTS = {mart: (contract.schema, MART_PARTITIONS[mart]) for mart, contract in GOLD_MARTS.items()}


def usage_days() -> list[date]:
    return [FIRST_DAY + timedelta(days=offset) for offset in range(DAYS)]


def daily_rows() -> list[tuple]:
    rows = []
    for o, (org, attributes) in enumerate(ORGS.items()):
        for day in usage_days():
            for s, service in enumerate(SERVICES):
                if org == "org_b" and service == "genai" and day.day % 4 == 0:
                    continue  # days without GenAI usage: Q5 shows only days "where present"
                cost = round(10.0 * (o + 1) + 3.0 * (s + 1) + 1.5 * (day.day % 5) + (7.0 if day.day % 9 == 0 else 0), 2)
                methods = ["zscore", "mad"] if (org, service, day.day % 6) == ("org_a", "compute", 0) else []
                tokens = 1000 * (day.day + o) if service == "genai" else 0
                carbon = None if day < date(2025, 7, 25) else round(0.1 * (s + 1), 3)
                rows.append((org, day, service, cost, 100.0 * (s + 1) + day.day, 2.0 * s, 5.0 * s, tokens, carbon,
                             10 + s, *attributes, bool(methods), methods, f"{day:%Y-%m}"))
    return rows


def top_rows(daily: list[tuple]) -> list[tuple]:
    """14-day cost per (org, as-of, service), ranked (cost desc, service asc), like the gold stage."""
    rows = []
    for org in ORGS:
        for as_of in usage_days():
            start = as_of - timedelta(days=13)
            totals: dict[str, list[float]] = {}
            for r in daily:
                if r[0] == org and start <= r[1] <= as_of:
                    slot = totals.setdefault(r[2], [0.0, 0.0])
                    slot[0] += r[3]
                    slot[1] += r[4]
            ranked = sorted(totals.items(), key=lambda item: (-round(item[1][0], 6), item[0]))
            rows += [(org, as_of, rank, svc, cost, req, start) for rank, (svc, (cost, req)) in enumerate(ranked, 1)]
    return rows


def anomaly_rows(daily: list[tuple]) -> list[tuple]:
    rows = []
    for r in daily:
        if r[15]:
            scores = {"zscore": 3.5, "mad": 4.1}
            rows.append((r[0], r[1], r[2], r[3], 12.0, 3.5, 4.1, 0.97, True, True, False, 2, True, r[15], scores))
    return rows


def ticket_rows() -> tuple[list[tuple], list[tuple]]:
    by_org, by_severity = [], {}
    for offset in range(45):
        day = date(2025, 7, 1) + timedelta(days=offset)
        for o, org in enumerate(ORGS):
            for severity in ("critical", "low"):
                if (offset + o) % 3 and severity == "critical":
                    continue
                opened, breaches = 1 + (offset % 2) + o, (offset + o) % 2
                csat = None if offset % 5 == 0 else 3.0 + o
                categories = {"billing": opened - 1, "outage": 1} if opened > 1 else {"outage": 1}
                measures = (opened, opened if severity == "critical" else 0, breaches, breaches / opened, csat,
                            0 if csat is None else opened, offset % 2, categories)
                by_org.append((org, day, severity, *measures))
                by_severity.setdefault((day, severity), []).append((org, measures))
    return by_org, [_severity_row(day, severity, entries) for (day, severity), entries in by_severity.items()]


def _severity_row(day: date, severity: str, entries: list[tuple]) -> tuple:
    opened = sum(m[0] for _, m in entries)
    breaches = sum(m[2] for _, m in entries)
    csat_n = sum(m[5] for _, m in entries)
    csat_sum = sum(m[4] * m[5] for _, m in entries if m[4] is not None)
    categories: dict[str, int] = {}
    for _, m in entries:
        for name, count in m[7].items():
            categories[name] = categories.get(name, 0) + count
    orgs = sorted(org for org, _ in entries)
    return (day, severity, opened, sum(m[1] for _, m in entries), breaches, breaches / opened,
            csat_sum / csat_n if csat_n else None, csat_n, sum(m[6] for _, m in entries), categories,
            len(orgs), orgs)


def revenue_rows() -> list[tuple]:
    rows = []
    for o, org in enumerate(ORGS):
        for m, month in enumerate((date(2025, 6, 1), date(2025, 7, 1), date(2025, 8, 1))):
            subtotal = -50.0 if (org, m) == ("org_b", 2) else 500.0 * (o + 1) + 100.0 * m
            credits = 0.0 if m == 0 else 20.0
            taxes = round(abs(subtotal) * 0.21, 2)
            rate = 1.0 if o == 0 else 1.1
            net = subtotal - credits + taxes
            rows.append((org, month, "USD" if o == 0 else "EUR", subtotal, credits, taxes, net, rate,
                         subtotal * rate, credits * rate, taxes * rate, net * rate, subtotal < 0, 1))
    return rows


def genai_rows(daily: list[tuple]) -> list[tuple]:
    return [(r[0], r[1], r[7], r[3], r[9]) for r in daily if r[2] == "genai"]


def build_gold(spark: SparkSession) -> dict[str, DataFrame]:
    daily = daily_rows()
    tickets_by_org, tickets_by_severity = ticket_rows()
    rows = {
        "org_daily_usage_by_service": daily, "top_services_14d": top_rows(daily),
        "cost_anomaly_mart": anomaly_rows(daily), "tickets_by_org_date": tickets_by_org,
        "tickets_by_date_severity": tickets_by_severity, "revenue_by_org_month": revenue_rows(),
        "genai_tokens_by_org_date": genai_rows(daily),
    }
    return {mart: spark.createDataFrame(rows[mart], MARTS[mart][0]) for mart in MARTS}


def write_gold(spark: SparkSession, paths: LakePaths, marts: dict[str, DataFrame]) -> None:
    """Whole-table writes, like the gold stage's first run (≤ 1 file per partition)."""
    for mart, df in marts.items():
        partition = MARTS[mart][1]
        io.replace_table(spark, df, paths.gold(mart), partition_by=[partition] if partition else None)
