"""Support marts: tickets per (org, day, severity) and per (day, severity) across orgs.

Both roll up the same partial aggregate (one row per org, day, severity and
category), so a mean CSAT is always sum / count over tickets, never a mean of means.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse_utils.gold.marts import CRITICAL_SEVERITY, UNKNOWN

TICKET_COLUMNS = ("org_id", "created_date", "severity", "category", "csat", "sla_breached", "is_open")
_PARTIAL_MEASURES = ("tickets", "critical", "breaches", "open", "csat_sum", "csat_n")


def _ticket_partials(tickets_df: DataFrame) -> DataFrame:
    """One row per (org_id, created_date, severity, category) with additive measures."""
    rows = tickets_df.select(
        "org_id",
        "created_date",
        # Keys cannot be null in Cassandra; a missing label is published as 'unknown'.
        F.coalesce(F.lower(F.trim("severity")), F.lit(UNKNOWN)).alias("severity"),
        F.coalesce(F.lower(F.trim("category")), F.lit(UNKNOWN)).alias("category"),
        F.col("csat").cast("double").alias("csat"),
        "sla_breached",
        "is_open",
    )
    is_critical = F.col("severity") == CRITICAL_SEVERITY
    return rows.groupBy("org_id", "created_date", "severity", "category").agg(
        F.count("*").alias("tickets"),
        F.count(F.when(is_critical, 1)).alias("critical"),
        F.count(F.when(F.col("sla_breached"), 1)).alias("breaches"),
        F.count(F.when(F.col("is_open"), 1)).alias("open"),
        F.sum("csat").alias("csat_sum"),
        F.count("csat").alias("csat_n"),
    )


def _category_counts(entries: Column) -> Column:
    """map<category, tickets> from an array of (category, tickets) structs, summing repeats."""
    names = F.array_sort(F.array_distinct(F.transform(entries, lambda entry: entry["category"])))

    def total(name: Column) -> Column:
        same_category = F.filter(entries, lambda entry: entry["category"] == name)
        return F.aggregate(same_category, F.lit(0).cast("long"), lambda acc, entry: acc + entry["tickets"])

    return F.map_from_arrays(names, F.transform(names, total))


def _rollup(partials_df: DataFrame, keys: list[str]) -> DataFrame:
    """Sum the partials to `keys`; org_ids lists the orgs behind each row."""
    summed = partials_df.groupBy(*keys).agg(
        *[F.sum(m).alias(m) for m in _PARTIAL_MEASURES],
        F.collect_list(F.struct("category", "tickets")).alias("entries"),
        F.array_sort(F.collect_set("org_id")).alias("org_ids"),
    )
    has_csat = F.col("csat_n") > 0
    return summed.select(
        *keys,
        F.col("tickets").cast("long").alias("tickets_opened"),
        F.col("critical").cast("long").alias("critical_count"),
        F.col("breaches").cast("long").alias("sla_breach_count"),
        (F.col("breaches") / F.col("tickets")).cast("double").alias("sla_breach_rate"),
        F.when(has_csat, F.col("csat_sum") / F.col("csat_n")).cast("double").alias("mean_csat"),
        F.col("csat_n").cast("long").alias("csat_responses"),
        F.col("open").cast("long").alias("open_count"),
        _category_counts(F.col("entries")).alias("categories"),
        "org_ids",
    )


def build_tickets_by_org_date(tickets_df: DataFrame) -> DataFrame:
    """tickets_by_org_date: one row per (org_id, created_date, severity)."""
    rolled = _rollup(_ticket_partials(tickets_df), ["org_id", "created_date", "severity"])
    return rolled.select(
        F.col("org_id").cast("string"), F.col("created_date").cast("date"), F.col("severity").cast("string"),
        "tickets_opened", "critical_count", "sla_breach_count", "sla_breach_rate",
        "mean_csat", "csat_responses", "open_count", "categories",
    )


def build_tickets_by_date_severity(tickets_df: DataFrame) -> DataFrame:
    """tickets_by_date_severity: one row per (created_date, severity) across all orgs."""
    rolled = _rollup(_ticket_partials(tickets_df), ["created_date", "severity"])
    return rolled.select(
        F.col("created_date").cast("date"), F.col("severity").cast("string"),
        "tickets_opened", "critical_count", "sla_breach_count", "sla_breach_rate",
        "mean_csat", "csat_responses", "open_count", "categories",
        F.size("org_ids").cast("long").alias("org_count"), "org_ids",
    )
