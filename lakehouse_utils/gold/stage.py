"""Gold stage: the business marts, computed in full from Silver, written incrementally.

Every mart is recomputed from Silver on each run (cheap at this size and always
exact); `gold.write.write_marts` then rewrites only the partitions whose content
changed (a mart without partitions counts as one), so a late event upstream
rewrites only the days it touches. A run that finds the Silver inputs, the marts
and the code as the last run left them (their files listed) computes nothing.
Input columns and types are checked against `contracts.SILVER_TABLES` before
anything is computed.
Grains and columns: docs/data_dictionary.md. Decisions: docs/decisions/060-gold-marts.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.contracts import SILVER_TABLES, SchemaMismatchError, project, validate_schema
from lakehouse_utils.fingerprint import code_version
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
from lakehouse_utils.paths import LakePaths, join
from lakehouse_utils.quality import repeated_keys
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
SILVER_INPUTS = ("org_service_daily", "customers_orgs", "support_tickets", "billing_monthly")

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
    df = io.read_parquet(spark, uri)
    validate_schema(df, project(SILVER_TABLES[table].schema, columns), table=f"silver/{table} at {uri}",
                    allow_extra=True, error=GoldSchemaError,
                    fix="rebuild Silver with the current code (pipeline --stage silver --full-refresh)")
    return df.select(*columns)


def assert_unique(df: DataFrame, keys: tuple[str, ...], table: str) -> None:
    """Raise when `keys` repeat in `df` (a join on them would multiply Gold's sums)."""
    repeated = repeated_keys(df, keys)
    if repeated:
        examples = ", ".join(f"{key} x{count}" for key, count in repeated)
        raise GoldInputError(f"{table}: key ({', '.join(keys)}) is not unique, e.g. {examples}; "
                             "Gold refuses to join on it because sums would be double counted")


@dataclass(frozen=True)
class DailyProfile:
    """Row counts of the Silver inputs that the marts reconcile against."""

    rows: int
    genai_rows: int
    flagged_rows: int
    tickets: int = 0
    invoices: int = 0


def profile_daily(daily_df: DataFrame, tickets_df: DataFrame | None = None,
                  billing_df: DataFrame | None = None) -> DailyProfile:
    """One Spark job: row counts of the inputs, plus the grain check of the daily table."""
    is_genai = F.col("service") == GENAI_SERVICE
    is_flagged = F.greatest(*[F.coalesce(F.col(flag), F.lit(False)) for flag, _ in ANOMALY_METHODS.values()])
    has_null_key = F.greatest(*[F.col(k).isNull() for k in DAILY_KEY])
    profile = daily_df.agg(
        F.count("*").alias("rows"),
        F.count_distinct(*DAILY_KEY).alias("keys"),
        F.count(F.when(has_null_key, 1)).alias("null_keys"),
        F.count(F.when(is_genai, 1)).alias("genai_rows"),
        F.count(F.when(is_flagged, 1)).alias("flagged_rows"),
    )
    # single-row aggregates side by side: still one job
    for name, df in (("tickets", tickets_df), ("invoices", billing_df)):
        counted = df.agg(F.count("*").alias(name)) if df is not None else daily_df.sparkSession.range(1).select(
            F.lit(0).alias(name))
        profile = profile.crossJoin(counted)
    row = profile.first()
    if row["null_keys"]:
        raise GoldInputError(f"silver/org_service_daily has {row['null_keys']} row(s) with a null key {DAILY_KEY}")
    if row["rows"] != row["keys"]:
        assert_unique(daily_df, DAILY_KEY, "silver/org_service_daily")
    return DailyProfile(row["rows"], row["genai_rows"], row["flagged_rows"], row["tickets"], row["invoices"])


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


# Aggregated marts: rows_out counts the source rows the mart's rows stand for (their measure
# summed over the mart as written), so that every Silver row is accounted for exactly once.
SOURCE_ROWS = {"revenue_by_org_month": ("invoices", "invoice_count"),
               "tickets_by_org_date": ("tickets", "tickets_opened"),
               "tickets_by_date_severity": ("tickets", "tickets_opened")}


def mart_counts(name: str, result: WriteResult, profile: DailyProfile) -> TableCounts:
    """Counts per mart: rows_in counted on Silver, rows_out on the mart as written (see `run`)."""
    details = result.as_details() | {"measure_total": result.measure_total, "mart_rows": result.rows}
    if name == "org_daily_usage_by_service":
        return TableCounts(name, profile.rows, result.rows, details=details)
    if name == "cost_anomaly_mart":
        return TableCounts(name, profile.rows, result.rows, ignored=profile.rows - profile.flagged_rows, details=details)
    if name == "genai_tokens_by_org_date":
        return TableCounts(name, profile.genai_rows, result.rows, details=details)
    if name in SOURCE_ROWS:
        source, measure = SOURCE_ROWS[name]
        details["unit"] = f"silver {source} (rows_out = sum of {measure} over the {result.rows} mart rows written)"
        return TableCounts(name, getattr(profile, source), int(result.measure_total or 0), details=details)
    # top_services_14d ranks windows of daily rows: no source row maps to one output row. Its rows are
    # counted as written and checked against an independent computation in tests/test_oracles.py.
    details |= {"unit": "mart rows (a top-N selection; not reconcilable to source rows)",
                "as_of_dates": result.partitions, "source_daily_rows": profile.rows}
    return TableCounts(name, result.rows, result.rows, details=details)


def lake_files(spark: SparkSession, paths: LakePaths) -> dict[str, list[list]]:
    """The data files of the Silver tables Gold reads and of every mart it writes."""
    tables = {f"silver/{t}": paths.silver(t) for t in SILVER_INPUTS} | {f"gold/{m}": paths.gold(m) for m in MARTS}
    return io.tables_files(spark, tables)


def unchanged_report(run_id: str) -> StageReport:
    """Silver, the marts and the code are as the last run left them: nothing read, nothing written."""
    report = StageReport("gold", run_id, extra={"full_refresh": False})
    for name in MARTS:
        report.add(TableCounts(name, 0, 0, details={"write_mode": "unchanged"}))
    return report


def run(spark: SparkSession, paths: LakePaths, run_id: str, full_refresh: bool = False, **_) -> StageReport:
    """Build every mart from Silver and write what changed (everything when `full_refresh`).

    TableCounts per mart (rows_in counted on Silver; rows_out on the mart as written, the
    write's own count checked against the fingerprints of what it rewrote):
    org_daily_usage_by_service rows_in = Silver daily rows (1:1);
    cost_anomaly_mart rows_in = Silver daily rows, ignored = rows no method flags;
    genai_tokens_by_org_date rows_in = Silver daily rows of the genai service (1:1);
    revenue_by_org_month rows_in = Silver invoices, rows_out = sum of invoice_count;
    tickets_by_* rows_in = Silver tickets, rows_out = sum of tickets_opened;
    top_services_14d rows_in = rows_out = mart rows (no source-row reconciliation exists).
    The mart rows themselves are in details["mart_rows"]. Raises ReconciliationError when
    a mart does not add up.
    """
    inputs_state = join(paths.state("gold"), "inputs.json")
    recorded = io.read_json(spark, inputs_state)
    if not full_refresh and recorded == {"code_version": code_version(), "files": lake_files(spark, paths)}:
        return unchanged_report(run_id)
    report = StageReport("gold", run_id, extra={"full_refresh": full_refresh})
    daily = read_silver(spark, paths, "org_service_daily", DAILY_COLUMNS).persist()
    try:
        orgs = read_silver(spark, paths, "customers_orgs", ORG_COLUMNS)
        assert_unique(orgs, ("org_id",), "silver/customers_orgs")
        tickets = read_silver(spark, paths, "support_tickets", TICKET_COLUMNS)
        billing = read_silver(spark, paths, "billing_monthly", BILLING_COLUMNS)
        profile = profile_daily(daily, tickets, billing)
        marts = [
            MartWrite(name, mart_df, paths.gold(name), MART_PARTITIONS[name], measure)
            for name, (mart_df, measure) in build_marts(daily, orgs, tickets, billing).items()
        ]
        for name, result in write_marts(spark, marts, full_refresh).items():
            report.add(mart_counts(name, result, profile))
    finally:
        daily.unpersist()
    report.assert_reconciles()
    # Listed once every mart is written: a run that failed part-way records nothing and is not skipped.
    io.write_json(spark, inputs_state, {"code_version": code_version(), "files": lake_files(spark, paths)})
    return report
