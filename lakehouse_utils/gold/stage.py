"""Gold stage: the business marts, computed in full from Silver, written incrementally.

Every mart is recomputed from Silver on each run (cheap at this size and always
exact); `gold.write.write_marts` then rewrites only the partitions whose content
changed (a mart without partitions counts as one), so a late event upstream
rewrites only the days it touches. Input columns and types are checked against
`contracts.SILVER_TABLES` before anything is computed.
Grains and columns: docs/data_dictionary.md. Decisions: docs/decisions/060-gold-marts.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.contracts import SILVER_TABLES, SchemaMismatchError, project, validate_schema
from lakehouse_utils.gold.evidence import gold_inventory, reconcile
from lakehouse_utils.gold.marts import (
    ANOMALY_METHODS,
    DAILY_METRICS,
    GENAI_SERVICE,
    MART_PARTITIONS,
    MARTS,
    ORG_ATTRIBUTES,
    build_cost_anomaly_mart,
    build_genai_tokens,
    build_org_daily_usage,
    build_revenue,
    build_top_services,
)
from lakehouse_utils.gold.tickets import TICKET_COLUMNS, build_tickets_by_date_severity, build_tickets_by_org_date
from lakehouse_utils.gold.write import MartWrite, WriteResult, write_marts
from lakehouse_utils.paths import LakePaths
from lakehouse_utils.report import StageReport, TableCounts

# Silver columns Gold reads (docs/table_contracts.md, "Gold inputs").
DAILY_COLUMNS = (
    "org_id", "usage_date", "service", "daily_cost_usd", *DAILY_METRICS, "genai_tokens", "carbon_kg",
    "event_count", "z_score", "mad_score", "pct_rank", "is_anomaly", "baseline_cost_usd",
    *[flag for flag, _ in ANOMALY_METHODS.values()],
)
ORG_COLUMNS = ("org_id", *ORG_ATTRIBUTES)
BILLING_COLUMNS = (
    "org_id", "month", "currency", "subtotal", "credits", "taxes", "fx_rate_applied",
    "subtotal_usd", "credits_usd", "taxes_usd", "net_usd",
)
DAILY_KEY = ("org_id", "usage_date", "service")

__all__ = ["MARTS", "MART_PARTITIONS", "GoldInputError", "GoldSchemaError", "gold_inventory", "reconcile", "run"]


class GoldInputError(ValueError):
    """A Silver input is missing, lacks a column, or breaks its grain."""


class GoldSchemaError(SchemaMismatchError, GoldInputError):
    """A Silver input lacks a column Gold reads, or has it with another type."""


def read_silver(spark: SparkSession, paths: LakePaths, table: str, columns: tuple[str, ...]) -> DataFrame:
    """A Silver table restricted to the columns Gold reads, or a clear error."""
    uri = paths.silver(table)
    if not io.exists(spark, uri):
        raise GoldInputError(
            f"silver/{table} not found at {uri}: run the silver stage first "
            "(python -m lakehouse_utils pipeline --stage silver)"
        )
    df = spark.read.parquet(uri)
    validate_schema(df, project(SILVER_TABLES[table].schema, columns), table=f"silver/{table} at {uri}",
                    allow_extra=True, error=GoldSchemaError,
                    fix="rebuild Silver with the current code (pipeline --stage silver --full-refresh)")
    return df.select(*columns)


def assert_unique(df: DataFrame, keys: tuple[str, ...], table: str) -> None:
    """Raise when `keys` repeat in `df` (a join on them would multiply Gold's sums)."""
    repeated = df.groupBy(*keys).count().filter(F.col("count") > 1).limit(5).collect()
    if repeated:
        examples = ", ".join(f"{tuple(r[k] for k in keys)} x{r['count']}" for r in repeated)
        raise GoldInputError(f"{table}: key ({', '.join(keys)}) is not unique, e.g. {examples}; "
                             "Gold refuses to join on it because sums would be double counted")


@dataclass(frozen=True)
class DailyProfile:
    """Counts of silver/org_service_daily that the marts' row counts reconcile against."""

    rows: int
    genai_rows: int
    flagged_rows: int


def profile_daily(daily_df: DataFrame) -> DailyProfile:
    """One Spark job: row counts, plus the grain check of the daily table."""
    is_genai = F.col("service") == GENAI_SERVICE
    is_flagged = F.greatest(*[F.coalesce(F.col(flag), F.lit(False)) for flag, _ in ANOMALY_METHODS.values()])
    has_null_key = F.greatest(*[F.col(k).isNull() for k in DAILY_KEY])
    row = daily_df.agg(
        F.count("*").alias("rows"),
        F.count_distinct(*DAILY_KEY).alias("keys"),
        F.count(F.when(has_null_key, 1)).alias("null_keys"),
        F.count(F.when(is_genai, 1)).alias("genai_rows"),
        F.count(F.when(is_flagged, 1)).alias("flagged_rows"),
    ).first()
    if row["null_keys"]:
        raise GoldInputError(f"silver/org_service_daily has {row['null_keys']} row(s) with a null key {DAILY_KEY}")
    if row["rows"] != row["keys"]:
        assert_unique(daily_df, DAILY_KEY, "silver/org_service_daily")
    return DailyProfile(row["rows"], row["genai_rows"], row["flagged_rows"])


def build_marts(daily_df: DataFrame, orgs_df: DataFrame, tickets_df: DataFrame, billing_df: DataFrame) -> dict:
    """Mart name -> (DataFrame, measure column summed into the report, or None)."""
    return {
        "org_daily_usage_by_service": (build_org_daily_usage(daily_df, orgs_df), "event_count"),
        "revenue_by_org_month": (build_revenue(billing_df), "invoice_count"),
        "cost_anomaly_mart": (build_cost_anomaly_mart(daily_df), None),
        "tickets_by_org_date": (build_tickets_by_org_date(tickets_df), "tickets_opened"),
        "tickets_by_date_severity": (build_tickets_by_date_severity(tickets_df), "tickets_opened"),
        "genai_tokens_by_org_date": (build_genai_tokens(daily_df), "genai_event_count"),
        "top_services_14d": (build_top_services(daily_df), None),
    }


def mart_counts(name: str, result: WriteResult, profile: DailyProfile) -> TableCounts:
    """Counts per mart (see `run` for what rows_in means for each)."""
    details = result.as_details() | {"measure_total": result.measure_total}
    if name == "org_daily_usage_by_service":
        return TableCounts(name, profile.rows, result.rows, details=details)
    if name == "cost_anomaly_mart":
        return TableCounts(name, profile.rows, result.rows, ignored=profile.rows - profile.flagged_rows, details=details)
    if name == "genai_tokens_by_org_date":
        return TableCounts(name, profile.genai_rows, result.rows, details=details)
    details["aggregation"] = "rows_in = rows_out = groups; measure_total = source rows aggregated"
    if name == "top_services_14d":
        details |= {"as_of_dates": result.partitions, "source_daily_rows": profile.rows}
    return TableCounts(name, result.rows, result.rows, details=details)


def run(spark: SparkSession, paths: LakePaths, run_id: str, full_refresh: bool = False, **_) -> StageReport:
    """Build every mart from Silver and write what changed (everything when `full_refresh`).

    TableCounts per mart: org_daily_usage_by_service rows_in = Silver daily rows (1:1);
    cost_anomaly_mart rows_in = Silver daily rows, ignored = rows no method flags;
    genai_tokens_by_org_date rows_in = Silver daily rows of the genai service (1:1);
    aggregations (revenue, tickets, top services) rows_in = rows_out = groups, with the
    source rows they aggregate in details["measure_total"] (invoices, tickets, events).
    """
    report = StageReport("gold", run_id, extra={"full_refresh": full_refresh})
    daily = read_silver(spark, paths, "org_service_daily", DAILY_COLUMNS).persist()
    try:
        orgs = read_silver(spark, paths, "customers_orgs", ORG_COLUMNS)
        assert_unique(orgs, ("org_id",), "silver/customers_orgs")
        profile = profile_daily(daily)
        tickets = read_silver(spark, paths, "support_tickets", TICKET_COLUMNS)
        billing = read_silver(spark, paths, "billing_monthly", BILLING_COLUMNS)
        marts = [
            MartWrite(name, mart_df, paths.gold(name), MART_PARTITIONS[name], measure)
            for name, (mart_df, measure) in build_marts(daily, orgs, tickets, billing).items()
        ]
        for name, result in write_marts(spark, marts, full_refresh).items():
            report.add(mart_counts(name, result, profile))
    finally:
        daily.unpersist()
    return report
