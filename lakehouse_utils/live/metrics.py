"""Live metrics: the batch layer's event rules and daily sums, applied to what one micro-batch adds.

Every function here reuses the batch code rather than copying it: the Silver masters are
conformed and checked with `silver.masters.conform_and_check` (in memory, nothing is
written), events go through `silver.events.check_events` (the rule catalogue of
`quality.EVENT_RULES`: casting, UTC dates, unit imputation, master references) and
`unify_versions`, and a day's figures come from `silver.daily.daily_features` over *all*
the live events of that key. The rows served keep the Gold mart's casts
(`gold.marts.build_org_daily_usage`) and the serving model's column contract
(`serving.model`). Only what needs the whole history stays in the batch layer: the spike
threshold (it changes no measure) and the anomaly columns. Decision: docs/decisions/120-live-speed-layer.md.
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils.gold.marts import DAILY_METRICS, GENAI_SERVICE, ORG_ATTRIBUTES
from lakehouse_utils.serving.model import ServingTable, serving_table
from lakehouse_utils.silver.daily import daily_features
from lakehouse_utils.silver.events import check_events, unify_versions
from lakehouse_utils.silver.masters import conform_and_check, read_bronze, snapshot_run_id, snapshot_run_ids

DAILY_KEY = ("org_id", "usage_date", "service")
# What daily_features reads from an event, plus the Bronze batch it came from.
STATE_COLUMNS = ("org_id", "usage_date", "service", "metric", "value", "cost_usd_increment", "genai_tokens",
                 "carbon_kg", "batch_id")
DAILY_TABLE, GENAI_TABLE = "daily_usage_by_org_month", "genai_usage_by_org_month"
# Columns only the batch layer can fill (they need every day of a series); live leaves them untouched.
BATCH_ONLY_COLUMNS = frozenset({"is_anomaly", "anomaly_methods"})


def load_references(spark: SparkSession, paths) -> dict[str, DataFrame]:
    """Silver's valid orgs and resources, computed from the latest Bronze snapshots exactly as Silver does.

    Live reads the masters once at start: a new master snapshot is the batch layer's job
    (restart `live` after it to enrich new orgs).
    """
    orgs, _, orgs_counts = conform_and_check("customers_orgs", read_bronze(spark, paths, "customers_orgs"), None,
                                             also=snapshot_run_ids())
    snapshot_run_id("customers_orgs", orgs_counts)  # refuses a Bronze master mixing two runs, as Silver does
    orgs = orgs.select("org_id", *ORG_ATTRIBUTES).persist(StorageLevel.MEMORY_AND_DISK)
    resources, _, resources_counts = conform_and_check("resources", read_bronze(spark, paths, "resources"), orgs,
                                                       also=snapshot_run_ids())
    snapshot_run_id("resources", resources_counts)
    resources = resources.select("resource_id").persist(StorageLevel.MEMORY_AND_DISK)
    orgs.count(), resources.count()
    return {"customers_orgs": orgs, "resources": resources}


def live_events(bronze_df: DataFrame, references: dict[str, DataFrame]) -> DataFrame:
    """Valid events of some Bronze rows, narrowed to what the daily figures need (Silver's rules)."""
    # A micro-batch is small: its window is cheaper than a job looking for repeated ids first.
    valid, _, _ = check_events(bronze_df, references["customers_orgs"], references["resources"], count=False,
                               check_repeats=False)
    return unify_versions(valid).select(*STATE_COLUMNS)


def daily_rows(state: DataFrame, keys: DataFrame | None, orgs: DataFrame) -> DataFrame:
    """Full daily figures of `keys` (every key when None) from every live event, shaped like the Gold mart."""
    events = state if keys is None else state.join(F.broadcast(keys), on=list(DAILY_KEY), how="left_semi")
    usage = daily_features(events).join(F.broadcast(orgs), on="org_id", how="left")
    # The casts and zero defaults of gold.marts.build_org_daily_usage, so the values are the mart's.
    return usage.select(
        F.col("org_id").cast("string"), F.col("usage_date").cast("date"), F.col("service").cast("string"),
        F.col("daily_cost_usd").cast("double"),
        *[F.coalesce(F.col(m).cast("double"), F.lit(0.0)).alias(m) for m in DAILY_METRICS],
        F.coalesce(F.col("genai_tokens").cast("long"), F.lit(0)).alias("genai_tokens"),
        F.col("carbon_kg").cast("double"), F.col("event_count").cast("long"),
        *[F.col(a).cast("string") for a in ORG_ATTRIBUTES],
    )


# genai_usage_by_org_month column -> daily column (gold.marts.build_genai_tokens renames, same casts).
GENAI_FROM_DAILY = {"org_id": "org_id", "usage_month": "usage_month", "usage_date": "usage_date",
                    "total_tokens": "genai_tokens", "estimated_cost_usd": "daily_cost_usd",
                    "genai_event_count": "event_count"}


def live_columns(table: ServingTable) -> list[str]:
    return [name for name in table.column_names if name not in BATCH_ONLY_COLUMNS]


def served(frame: DataFrame, table_name: str) -> DataFrame:
    """The serving model's columns of `table_name` (minus the batch-only ones), cast as the CQL declares."""
    table = serving_table(table_name)
    keep = set(live_columns(table))
    return frame.select(*[column.alias(name) for name, column in table.columns() if name in keep])


def upsert_cql(table_name: str) -> str:
    """An INSERT of the live columns only: Cassandra leaves the other columns (anomaly flags) as they are."""
    names = live_columns(serving_table(table_name))
    return f"INSERT INTO {table_name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"


def served_rows(state: DataFrame, keys: DataFrame | None, orgs: DataFrame) -> dict[str, list[tuple]]:
    """{table: rows as tuples in `upsert_cql` order} for the daily and the genai table (one Spark job)."""
    daily = [row.asDict() for row in served(daily_rows(state, keys, orgs), DAILY_TABLE).collect()]
    daily_names = live_columns(serving_table(DAILY_TABLE))
    genai_names = live_columns(serving_table(GENAI_TABLE))
    return {
        DAILY_TABLE: [tuple(row[name] for name in daily_names) for row in daily],
        GENAI_TABLE: [tuple(row[GENAI_FROM_DAILY[name]] for name in genai_names)
                      for row in daily if row["service"] == GENAI_SERVICE],
    }
