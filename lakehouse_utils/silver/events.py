"""Silver usage events: conform Bronze events, apply the event rules, flag spikes, enrich.

One row per unique valid event. v1 and v2 share one schema: `carbon_kg` is null for v1
(unknown, not zero) and `genai_tokens` exists only for the genai service.
Decisions: docs/decisions/050-silver-quality.md.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse_utils.contracts import (
    BRONZE_EVENTS_READ,
    ORG_ENRICHMENT,
    SILVER_EVENTS,
    SchemaMismatchError,
    validate_schema,
)
from lakehouse_utils.contracts.landing import NUMBER_PATTERN
from lakehouse_utils.quality import EVENT_RULES, QualityCounts, apply_rules, cost_spike_rule, repeated_keys
from lakehouse_utils.silver.masters import clean_text

# percentile_approx accuracy: rank error <= N / accuracy, so below 100,000 events p99 is exact.
SPIKE_PERCENTILE, SPIKE_ACCURACY = 0.99, 100_000
# The Silver contract without run_id (added last, from the run).
SILVER_EVENT_COLUMNS = [name for name in SILVER_EVENTS.column_names if name != "run_id"]


class JoinExplosionError(ValueError):
    """A master used for enrichment has more than one row per key."""


def parse_value(raw: Column) -> Column:
    """The number in `value_raw` (JSON number text or numeric string, blanks trimmed); else null."""
    trimmed = F.trim(raw)
    return F.when(trimmed.rlike(NUMBER_PATTERN), trimmed.try_cast("double"))


def _code(col_name: str) -> Column:
    return F.lower(clean_text(col_name)).alias(col_name)


def _text(col_name: str) -> Column:
    return clean_text(col_name).alias(col_name)


class BronzeContractError(SchemaMismatchError):
    """bronze/usage_events lacks a column Silver reads, or has it with another type."""


def conform_events(bronze_df: DataFrame) -> DataFrame:
    """All Bronze columns (ids trimmed, codes lower-cased) plus `value` and the UTC `usage_date`."""
    validate_schema(bronze_df, BRONZE_EVENTS_READ, table="bronze/usage_events", allow_extra=True,
                    error=BronzeContractError, fix="rebuild Bronze with the current code (notebook 02_bronze_stream)")
    normalised = {"org_id": _text("org_id"), "resource_id": _text("resource_id"), "service": _code("service"),
                  "region": _code("region"), "metric": _code("metric"), "unit": _code("unit")}
    return bronze_df.select(
        *[normalised.get(name, F.col(name)) for name in bronze_df.columns],
        parse_value(F.col("value_raw")).alias("value"),
        # session time zone is UTC (spark.py), so this is the UTC calendar day of the event
        F.to_date("event_ts").alias("usage_date"),
    )


def check_events(
    bronze_df: DataFrame, orgs_df: DataFrame, resources_df: DataFrame, persist: bool = False, count: bool = True,
    check_repeats: bool = True,
) -> tuple[DataFrame, DataFrame, QualityCounts | None]:
    """Conform and split Bronze events with EVENT_RULES (org/resource references: Silver masters)."""
    references = {"customers_orgs": orgs_df, "resources": resources_df}
    return apply_rules(conform_events(bronze_df), EVENT_RULES, references, persist=persist, count=count,
                       check_repeats=check_repeats)


def spike_threshold(costs_df: DataFrame, factor: float) -> tuple[float | None, float | None]:
    """(p99 of `cost_usd_increment`, p99 x factor) over the given valid events; (None, None) when empty."""
    p99 = costs_df.agg(F.percentile_approx("cost_usd_increment", SPIKE_PERCENTILE, SPIKE_ACCURACY)).first()[0]
    return (None, None) if p99 is None else (float(p99), float(p99) * factor)


def assert_unique(df: DataFrame, keys: list[str], table: str) -> None:
    """Fail before a join that would multiply rows: the master must have one row per key."""
    repeated = repeated_keys(df, keys)
    if repeated:
        examples = ", ".join(str(key) for key, _ in repeated)
        raise JoinExplosionError(f"silver/{table} has more than one row per {keys} (e.g. {examples}); "
                                 "enriching events with it would duplicate them")


def enrich_events(valid_df: DataFrame, orgs_df: DataFrame, resources_df: DataFrame) -> DataFrame:
    """Broadcast-join the org attributes and the resource state/tags (masters are small and unique)."""
    assert_unique(orgs_df, ["org_id"], "customers_orgs")
    assert_unique(resources_df, ["resource_id"], "resources")
    orgs = orgs_df.select("org_id", *ORG_ENRICHMENT)
    resources = resources_df.select("resource_id", F.col("state").alias("resource_state"),
                                    F.col("tags_map").alias("resource_tags"))
    return (
        valid_df.join(F.broadcast(orgs), on="org_id", how="left")
        .join(F.broadcast(resources), on="resource_id", how="left")
    )


def unify_versions(df: DataFrame) -> DataFrame:
    """v1 has no carbon measurement (null, not 0); tokens belong to genai events only."""
    is_v1 = F.col("schema_version") == 1
    is_genai = F.col("service") == "genai"
    return (
        df.withColumn("carbon_kg", F.when(~is_v1, F.col("carbon_kg")))
        .withColumn("genai_tokens", F.when(is_genai, F.col("genai_tokens")))
    )


def silver_events(
    valid_df: DataFrame, threshold: float | None, orgs_df: DataFrame, resources_df: DataFrame, run_id: str
) -> DataFrame:
    """Valid events -> the Silver contract (spike flag, v1/v2, enrichment).

    The spikes are counted by the write (`spikes_written`), not by a job of their own."""
    if threshold is None:
        flagged = valid_df.withColumn("is_cost_spike", F.lit(False))
    else:
        flagged, _, _ = apply_rules(valid_df, [cost_spike_rule(threshold)], count=False)
    enriched = enrich_events(unify_versions(flagged), orgs_df, resources_df)
    return enriched.select(*SILVER_EVENT_COLUMNS, F.lit(run_id).alias("run_id"))


def spikes_written() -> dict[str, Column]:
    """Summed over the rows the Silver write receives: the events flagged by the cost_spike rule."""
    return {"cost_spike": F.col("is_cost_spike").cast("long")}
