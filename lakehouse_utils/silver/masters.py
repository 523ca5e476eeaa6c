"""Silver masters: conform the Bronze snapshot of each CSV master and apply its rules.

Every master goes the same way: trim text, lower-case codes, derive typed helper
columns, run `quality.apply_rules` with the table's rules (orgs are the reference
of every other master), finish (USD amounts, active users) and replace the Silver
table and its `quarantine/<master>_silver` table. Decisions: docs/decisions/050-silver-quality.md.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils import io
from lakehouse_utils.contracts import (
    BRONZE_EVENTS_READ,
    MASTER_SOURCES,
    SILVER_MASTERS,
    TECHNICAL_COLUMNS,
    bronze_input_struct,
    master_schema,
    validate_schema,
)
from lakehouse_utils.paths import LakePaths
from lakehouse_utils.quality import MASTER_RULES, QualityCounts, apply_rules, quarantine_frame, rules_for
from lakehouse_utils.report import TableCounts

TECHNICAL = tuple(name for name, _ in TECHNICAL_COLUMNS)
# Masters checked or written at once (each is a few small Spark jobs).
PARALLEL_MASTERS = 3
# Categorical codes are compared and grouped on: trimmed and lower-cased. Names and labels
# (org_name, industry, comment) are only trimmed, because they are shown as they are.
CODE_COLUMNS = {
    "customers_orgs": {"hq_region", "plan_tier", "sales_rep", "lifecycle_stage", "marketing_source"},
    "users": {"email", "role"},
    "resources": {"service", "region", "state"},
    "support_tickets": {"category", "severity"},
    "marketing_touches": {"campaign", "channel"},
}
UPPER_CASE_COLUMNS = {"billing_monthly": {"currency"}}
# Orgs first: they are the reference of the org_exists rule of every other master.
MASTER_ORDER = ("customers_orgs", "users", "resources", "support_tickets", "billing_monthly", "nps_surveys",
                "marketing_touches")
assert set(MASTER_ORDER) == set(MASTER_SOURCES)


class BronzeMissingError(FileNotFoundError):
    """A Bronze table that Silver reads has not been written yet."""


class MixedSnapshotError(ValueError):
    """A Bronze master holds rows of more than one run, which bronze_batch never writes."""


def snapshot_run_ids() -> dict[str, Column]:
    """The run ids of a Bronze master, computed by the counting job of its rules (no job of their own)."""
    return {"first_run_id": F.min("run_id"), "last_run_id": F.max("run_id")}


@dataclass
class MastersBuild:
    """What `build_masters` wrote: Silver frames (read back), Bronze run ids used, counts."""

    frames: dict[str, DataFrame]
    bronze_run_ids: dict[str, str | None]
    counts: list[TableCounts] = field(default_factory=list)


def read_bronze(spark: SparkSession, paths: LakePaths, table: str, producer: str = "01_bronze_batch") -> DataFrame:
    uri = paths.bronze(table)
    if not io.exists(spark, uri):
        raise BronzeMissingError(f"bronze/{table} is missing at {uri}: run notebook {producer} (stage "
                                 f"{producer.split('_', 1)[1]}) first")
    df = io.read_parquet(spark, uri)
    expected = BRONZE_EVENTS_READ if table == "usage_events" else bronze_input_struct(table)
    validate_schema(df, expected, table=f"bronze/{table} at {uri}", allow_extra=True,
                    fix=f"rebuild it with the current code: run notebook {producer} again")
    return df


def snapshot_run_id(table: str, counts: QualityCounts) -> str | None:
    """The one run id of a Bronze master (None when it is empty), from `snapshot_run_ids()` in `counts.also`.

    bronze_batch replaces a master whole, so its rows share one run id; anything else was
    written by another tool, and Silver and live refuse it rather than mix two snapshots.
    """
    first, last = counts.also["first_run_id"], counts.also["last_run_id"]
    if first != last:
        raise MixedSnapshotError(
            f"bronze/{table} holds rows of more than one run ({first} ... {last}), but bronze_batch replaces a "
            "master whole: rebuild it with notebook 01_bronze_batch (stage bronze_batch), then run this stage again")
    return last


def clean_text(col_name: str) -> Column:
    """Trimmed text; an empty or blank field becomes null."""
    return F.nullif(F.trim(F.col(col_name)), F.lit(""))


def _normalised(table: str, name: str, dtype: T.DataType) -> Column:
    if name in CODE_COLUMNS.get(table, ()):
        return F.lower(clean_text(name)).alias(name)
    if name in UPPER_CASE_COLUMNS.get(table, ()):
        return F.upper(clean_text(name)).alias(name)
    return clean_text(name).alias(name) if isinstance(dtype, T.StringType) else F.col(name)


def with_tags(df: DataFrame) -> DataFrame:
    """`tags` array<string> and `tags_map` map<string,string> from tags_json (`["env:prod", ...]`).

    Empty tags_json means no tags (empty collections); unparsable JSON gives null. A tag
    without ':' maps to a null value; a repeated key keeps its first value (a map cannot
    hold it twice, and Spark would fail on the duplicate).
    """
    is_blank = F.col("tags_json").isNull() | (F.trim("tags_json") == "")
    parsed = F.expr("filter(transform(from_json(tags_json, 'array<string>'), t -> trim(t)), t -> t <> '')")
    entries = F.expr(
        "transform(tags, t -> named_struct('key', trim(substring_index(t, ':', 1)), "
        "'value', CASE WHEN instr(t, ':') > 0 THEN trim(substr(t, instr(t, ':') + 1)) END))"
    )
    first_per_key = F.expr("filter(__entries, (e, i) -> array_position(__entries.key, e.key) = i + 1)")
    return (
        df.withColumn("tags", F.when(is_blank, F.array().cast("array<string>")).otherwise(parsed))
        .withColumn("__entries", entries)
        .withColumn("tags_map", F.map_from_entries(first_per_key))
        .drop("__entries")
    )


def conform_master(table: str, bronze_df: DataFrame) -> DataFrame:
    """Bronze columns normalised in place, plus the helper columns the table's rules read."""
    schema = master_schema(table)
    conformed = bronze_df.select(*[_normalised(table, n, d) for n, d in schema.columns], *TECHNICAL)
    if table == "resources":
        return with_tags(conformed)
    if table == "support_tickets":
        return conformed.select("*", F.col("created_at").alias("created_date"),
                                F.col("resolved_at").alias("resolved_date"))
    if table == "billing_monthly":
        # the FX rules of quality.py override this where the given rate must not be used
        return conformed.select("*", F.col("exchange_rate_to_usd").alias("fx_rate_applied"))
    return conformed


def _usd(amount: str) -> Column:
    return F.round(F.col(amount) * F.col("fx_rate_applied"), 2)


def _finish_billing(df: DataFrame) -> DataFrame:
    """USD amounts under the FX rule; net = subtotal - credits + taxes (credits already 0 when empty)."""
    with_usd = df.select("*", _usd("subtotal").alias("subtotal_usd"), _usd("credits").alias("credits_usd"),
                         _usd("taxes").alias("taxes_usd"))
    return with_usd.withColumn("net_usd", F.round(F.col("subtotal_usd") - F.col("credits_usd") + F.col("taxes_usd"), 2))


def _finish_tickets(df: DataFrame) -> DataFrame:
    return df.select("*", F.col("resolved_date").isNull().alias("is_open"),
                     F.datediff("resolved_date", "created_date").alias("resolution_days"))


def with_active_users(orgs_df: DataFrame, users_df: DataFrame) -> DataFrame:
    """`active_users`: users flagged active per org (0 when none), for per-org ratios downstream."""
    active = users_df.groupBy("org_id").agg(F.count(F.when(F.col("active"), 1)).alias("active_users"))
    joined = orgs_df.join(F.broadcast(active), on="org_id", how="left")
    return joined.withColumn("active_users", F.coalesce("active_users", F.lit(0)).cast(T.LongType()))


# Silver column -> the conformed column it is renamed from (dates get a `_date` name in Silver).
RENAMED_FROM: dict[str, dict[str, str]] = {
    "users": {"created_date": "created_at", "last_login_date": "last_login"},
    "resources": {"created_date": "created_at"},
    "marketing_touches": {"touch_date": "timestamp"},
}
FINISHERS = {"billing_monthly": _finish_billing, "support_tickets": _finish_tickets}


def silver_master(table: str, valid_df: DataFrame, run_id: str) -> DataFrame:
    """The Silver contract of one master: its columns, then ingest_ts, source_file and this run's id."""
    finished = FINISHERS.get(table, lambda df: df)(valid_df)
    renamed = RENAMED_FROM.get(table, {})
    columns = [F.col(renamed.get(name, name)).alias(name) for name in SILVER_MASTERS[table].column_names
               if name != "run_id"]
    return finished.select(*columns).withColumn("run_id", F.lit(run_id))


def conform_and_check(
    table: str, bronze_df: DataFrame, orgs_df: DataFrame | None, persist: bool = False,
    also: dict[str, Column] | None = None,
) -> tuple[DataFrame, DataFrame, QualityCounts]:
    """Conform one master and split it with its rules; `orgs_df` is the org_exists reference.

    `persist=True` keeps the checked rows cached (release with `counts.release()`); `also`, extra
    aggregates for the counting job (`apply_rules`)."""
    references = {"customers_orgs": orgs_df} if orgs_df is not None else {}
    return apply_rules(conform_master(table, bronze_df), rules_for(MASTER_RULES, table), references, persist=persist,
                       also=also)


def _table_counts(table: str, counts: QualityCounts, bronze_run_id: str | None, rows_out: int,
                  quarantined: int) -> TableCounts:
    """rows_in counted on the checked snapshot; rows_out and quarantined as the two writes counted them."""
    return TableCounts(table=table, rows_in=counts.rows_in, rows_out=rows_out, quarantined=quarantined,
                       details={"bronze_run_id": bronze_run_id, "rules": counts.by_action()})


def build_masters(spark: SparkSession, paths: LakePaths, run_id: str, parallel: int = PARALLEL_MASTERS) -> MastersBuild:
    """Conform, check and write every Silver master and its quarantine; return them read back."""
    build = MastersBuild(frames={}, bronze_run_ids={})
    valid: dict[str, DataFrame] = {}
    counts: dict[str, QualityCounts] = {}
    written: dict[str, int] = {}
    quarantined: dict[str, int] = {}

    def check(table: str) -> None:
        # Cached by the counting job: both writes, and the org_exists checks of the other masters
        # (orgs), read the checked rows instead of re-reading Bronze and re-running the rules.
        valid[table], quarantine_df, counts[table] = conform_and_check(
            table, read_bronze(spark, paths, table), valid.get("customers_orgs"), persist=True, also=snapshot_run_ids())
        build.bronze_run_ids[table] = snapshot_run_id(table, counts[table])
        bronze_columns = [*master_schema(table).column_names, *TECHNICAL]
        quarantined[table] = io.replace_table(spark, quarantine_frame(quarantine_df, bronze_columns, run_id),
                                              paths.quarantine(f"{table}_silver")).rows

    def write(table: str) -> None:
        written[table] = io.replace_table(spark, silver_master(table, valid[table], run_id), paths.silver(table)).rows

    # Each master is a few small jobs dominated by driver latency: overlapping them keeps both cores busy.
    # customers_orgs goes first because the others check org_exists against its valid rows.
    try:
        check(MASTER_ORDER[0])
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(check, MASTER_ORDER[1:]))
            # active_users is added after the checks: the users it counts are the checked ones
            valid["customers_orgs"] = with_active_users(valid["customers_orgs"], valid["users"])
            list(pool.map(write, MASTER_ORDER))
    finally:
        for quality in counts.values():
            quality.release()
    for table in MASTER_ORDER:
        build.counts.append(_table_counts(table, counts[table], build.bronze_run_ids[table], written[table],
                                          quarantined[table]))
        build.frames[table] = io.read_parquet(spark, paths.silver(table))
    return build
