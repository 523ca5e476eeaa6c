"""Reconciliation and evidence for the Gold notebook: small aggregates only, never a whole mart."""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.evidence import first_rows
from lakehouse_utils.gold.marts import MARTS
from lakehouse_utils.paths import LakePaths

CENT = Decimal("0.01")
# Exact decimal sums: each double is rounded once to 10 places, then added without error.
_SUM_TYPE = "decimal(38,10)"


def _decimal_sum(column: Column) -> Column:
    return F.sum(column.cast(_SUM_TYPE))


def _totals(spark: SparkSession, uri: str, sums: dict[str, Column]) -> dict[str, Decimal]:
    """Decimal totals of one table in one Spark job (zero when the table is empty)."""
    row = io.read_parquet(spark, uri).agg(*[_decimal_sum(expr).alias(name) for name, expr in sums.items()]).first()
    return {name: row[name] if row[name] is not None else Decimal(0) for name in sums}


def _genai(column: str) -> Column:
    return F.when(F.col("service") == "genai", F.col(column))


def _check(name: str, gold: Decimal, silver: Decimal, tables: str, unit: Decimal) -> dict:
    gold_rounded, silver_rounded = gold.quantize(unit), silver.quantize(unit)
    return {"check": name, "tables": tables, "gold": gold_rounded, "silver": silver_rounded,
            "difference": gold - silver, "ok": gold_rounded == silver_rounded}


def reconcile(spark: SparkSession, paths: LakePaths) -> list[dict]:
    """Gold totals vs Silver totals, money to the cent, counts exactly; one dict per check."""
    events = _totals(spark, paths.silver("usage_events"), {
        "cost": F.col("cost_usd_increment"), "tokens": F.col("genai_tokens"), "events": F.lit(1),
        "genai_cost": _genai("cost_usd_increment"), "genai_tokens": _genai("genai_tokens"),
        "genai_events": F.when(F.col("service") == "genai", F.lit(1))})
    daily = _totals(spark, paths.gold("org_daily_usage_by_service"), {
        "cost": F.col("daily_cost_usd"), "tokens": F.col("genai_tokens"), "events": F.col("event_count")})
    genai = _totals(spark, paths.gold("genai_tokens_by_org_date"), {
        "cost": F.col("estimated_cost_usd"), "tokens": F.col("total_tokens"), "events": F.col("genai_event_count")})
    money = ("subtotal_usd", "credits_usd", "taxes_usd", "net_usd")
    billing = _totals(spark, paths.silver("billing_monthly"), {m: F.coalesce(F.col(m), F.lit(0.0)) for m in money}
                      | {"invoices": F.lit(1)})
    revenue = _totals(spark, paths.gold("revenue_by_org_month"), {m: F.col(m) for m in money}
                      | {"invoices": F.col("invoice_count")})
    tickets = _totals(spark, paths.silver("support_tickets"), {"tickets": F.lit(1)})
    by_org = _totals(spark, paths.gold("tickets_by_org_date"), {"tickets": F.col("tickets_opened")})
    by_day = _totals(spark, paths.gold("tickets_by_date_severity"), {"tickets": F.col("tickets_opened")})
    one = Decimal(1)
    usage, genai_mart = "org_daily_usage_by_service vs silver/usage_events", "genai_tokens_by_org_date vs genai events"
    revenue_vs_billing = "revenue_by_org_month vs silver/billing_monthly"
    silver_tickets = "silver/support_tickets"
    return [
        _check("daily_cost_usd", daily["cost"], events["cost"], usage, CENT),
        _check("genai_tokens", daily["tokens"], events["tokens"], usage, one),
        _check("event_count", daily["events"], events["events"], usage, one),
        _check("genai_estimated_cost_usd", genai["cost"], events["genai_cost"], genai_mart, CENT),
        _check("genai_total_tokens", genai["tokens"], events["genai_tokens"], genai_mart, one),
        _check("genai_event_count", genai["events"], events["genai_events"], genai_mart, one),
        *[_check(m, revenue[m], billing[m], revenue_vs_billing, CENT) for m in money],
        _check("invoice_count", revenue["invoices"], billing["invoices"], revenue_vs_billing, one),
        _check("tickets_opened", by_org["tickets"], tickets["tickets"], f"tickets_by_org_date vs {silver_tickets}", one),
        _check("tickets_opened", by_day["tickets"], tickets["tickets"], f"tickets_by_date_severity vs {silver_tickets}", one),
    ]


def gold_inventory(spark: SparkSession, paths: LakePaths) -> list[dict]:
    """Per mart: rows, partitions, data files, bytes and the most files in one partition."""
    inventory = []
    for mart in MARTS:
        uri = paths.gold(mart)
        partitions = io.partition_inventory(spark, uri)
        rows = io.read_parquet(spark, uri).count() if partitions else 0
        inventory.append({
            "mart": mart, "rows": rows, "partitions": len(partitions),
            "files": sum(p["files"] for p in partitions), "bytes": sum(p["bytes"] for p in partitions),
            "max_files_per_partition": max((p["files"] for p in partitions), default=0),
            "example_partition": partitions[0]["partition"] if partitions else None,
        })
    return inventory


def top_cost_org(spark: SparkSession, paths: LakePaths) -> str | None:
    """The org with the highest total cost (a sensible default for the notebook's plots)."""
    daily = io.read_parquet(spark, paths.gold("org_daily_usage_by_service"))
    row = daily.groupBy("org_id").agg(F.sum("daily_cost_usd").alias("cost")).orderBy(F.desc("cost"), "org_id").first()
    return row["org_id"] if row else None


def daily_cost_by_service(spark: SparkSession, paths: LakePaths, org_id: str | None = None) -> list[dict]:
    """One org's daily cost per service (at most days x services rows), for a line plot."""
    org_id = org_id or top_cost_org(spark, paths)
    daily = io.read_parquet(spark, paths.gold("org_daily_usage_by_service")).filter(F.col("org_id") == org_id)
    rows = daily.select("usage_date", "service", "daily_cost_usd").orderBy("usage_date", "service").collect()
    return [row.asDict() for row in rows]


def revenue_by_currency_month(spark: SparkSession, paths: LakePaths) -> list[dict]:
    """Monthly revenue per invoice currency: net in the currency and in USD, and invoices."""
    revenue = io.read_parquet(spark, paths.gold("revenue_by_org_month"))
    totals = revenue.groupBy("month", "currency").agg(
        F.round(F.sum("net_amount"), 2).alias("net_amount"),
        F.round(F.sum("net_usd"), 2).alias("net_usd"),
        F.sum("invoice_count").alias("invoices"),
    )
    return [row.asDict() for row in totals.orderBy("month", "currency").collect()]


def sample(spark: SparkSession, paths: LakePaths, mart: str, n: int = 5) -> list[dict]:
    """The first `n` rows of a mart by its columns (a bounded, repeatable sample for display)."""
    if mart not in MARTS:
        raise ValueError(f"unknown mart {mart!r}; expected one of {', '.join(MARTS)}")
    return [row.asDict() for row in first_rows(io.read_parquet(spark, paths.gold(mart)), n).collect()]
