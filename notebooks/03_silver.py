# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Silver: clean, conform, enrich, and flag what looks wrong
#
# [![Open In Colab][colab-badge]][open-in-colab]
#
# [colab-badge]: https://colab.research.google.com/assets/colab-badge.svg
# [open-in-colab]: https://colab.research.google.com/github/cloud-provider-analytics/cloud-provider-analytics/blob/main/notebooks/03_silver.ipynb

# %% [markdown]
# ## Overview
#
# This notebook turns Bronze into Silver:
#
# * **Data-quality rules as data** (`lakehouse_utils.quality`): each rule has a name, the columns it
#   reads, a predicate, an action (`quarantine`, `flag` or `impute`) and a description; one engine
#   applies them to every table. Failing rows go to `quarantine/<table>` with the rule and a reason.
# * **Events**: `value` safely cast (numbers sent as strings become numbers, `"N/A"` becomes null
#   and is flagged), missing `unit` imputed from the metric, schema v1/v2 unified (`carbon_kg` null
#   for v1), UTC `usage_date`, enrichment with organisation and resource attributes (broadcast joins).
# * **Masters** conformed: categoricals trimmed and lower-cased, tags parsed, billing normalised to USD.
# * **Daily features** per organisation, date and service, with cost anomalies flagged by three
#   methods (z-score, MAD, percentile) and a consensus.
# * **Incremental**: only the dates touched by new Bronze batches are recomputed; the result equals a
#   full recompute.
#
# Prerequisites: `01_bronze_batch` and `02_bronze_stream`. The next notebook is `04_gold`.
#
# **Source:** edit `notebooks/03_silver.py` (jupytext), not this `.ipynb`, which is generated from it
# with its outputs; a change saved to the `.ipynb` (e.g. from Colab) must be synced back with
# `python -m scripts.sync_notebooks --from-ipynb 03_silver`.

# %% [markdown]
# ## Setup
#
# The next cell installs what Colab lacks (this repository, the pinned packages, Java 17 with apt;
# in `05_serving` with `SERVING_TARGET=local` also Maven, which fetches the local Cassandra's jars;
# nothing more for AstraDB), mounts Google Drive for the lake, and builds the Spark session.
# Locally it only puts the project on the path. Configuration comes from the environment, `.env`
# or Colab secrets (see `.env.example`); secrets are never printed.

# %% cellView="form"
# @title Setup: works in Colab and locally, unchanged
import os
import subprocess
import sys
from pathlib import Path

REPO_URL = os.environ.get("REPO_URL", "https://github.com/cloud-provider-analytics/cloud-provider-analytics.git")
if "google.colab" in sys.modules:  # Drive is mounted by `bootstrap` when the lake or the landing is on it
    PROJECT = Path("/content/cloud-provider-analytics")
    if not PROJECT.exists():
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, str(PROJECT)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(PROJECT / "requirements-colab.txt")], check=True)
    sys.path.insert(0, str(PROJECT))
    from lakehouse_utils.notebook import prepare_colab

    prepare_colab()  # apt: Java 17 (this notebook does not serve)
else:
    PROJECT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(PROJECT))

from lakehouse_utils.notebook import bootstrap

ctx = bootstrap("03_silver")
ctx.describe()

# %% [markdown]
# ## Parameters
#
# `SPIKE_FACTOR`: a cost above p99 × this factor is flagged as a spike. `FULL_REFRESH`: recompute
# every date instead of only the dates new Bronze batches touched. Neither has a setting of the
# same name; `python -m lakehouse_utils pipeline` uses the same defaults.

# %% tags=["parameters"]
SPIKE_FACTOR = 3.0
FULL_REFRESH = False

# %% [markdown]
# ## Build Silver
#
# Every row reconciles: `rows_in` = `rows_out` + `duplicates` + `quarantined` + `ignored`. `org_service_daily`
# (one row per org, service and day) reconciles on the events it sums, so its `rows_in`/`rows_out` are events;
# `table_rows` is the number of rows each table received.

# %%
from lakehouse_utils.notebook import partitions_frame, readable, report_frame, sample
from lakehouse_utils.pipeline import new_run_id, run_stage

silver_run = run_stage(ctx.spark, ctx.paths, "silver", new_run_id(), spike_factor=SPIKE_FACTOR, full_refresh=FULL_REFRESH)
silver_run.assert_reconciles()
report_frame(silver_run)

# %% [markdown]
# ## Count what each rule did
#
# Every Bronze event is either in Silver or in the quarantine.

# %%
import pandas as pd

events = silver_run.table("usage_events")
rule_counts = pd.DataFrame(
    [(action, rule, count) for action, rules in events.details["rules"].items() for rule, count in rules.items()],
    columns=["action", "rule", "rows"],
).sort_values(["action", "rows"], ascending=[True, False]).set_index(["action", "rule"])
spike = silver_run.extra["spike"]
print(f"Bronze events {events.rows_in:,} = Silver {events.rows_out:,} + quarantined {events.quarantined:,}"
      f" + duplicates {events.duplicates:,}  ->  reconciles: {events.reconciles}")
print(f"cost spike threshold: {spike['threshold']:,.2f} USD (p{spike['percentile'] * 100:.0f} of the event cost, "
      f"{spike['p99']:,.2f} USD, × factor {spike['factor']:g}); {spike['spikes_in_scope']:,} events above it")
rule_counts

# %%
import matplotlib.pyplot as plt

ax = rule_counts["rows"].plot.barh(figsize=(8, 4), title="Rows caught per data-quality rule (events)")
ax.set_xlabel("rows")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Show quarantine samples per rule

# %%
from pyspark.sql import Window
from pyspark.sql import functions as F

quarantine = ctx.spark.read.parquet(ctx.paths.quarantine("usage_events"))
first_per_rule = Window.partitionBy("rule").orderBy("event_id")
readable(quarantine.withColumn("n", F.row_number().over(first_per_rule)).where("n <= 2")
         .select("rule", "reason", "event_id", "org_id", "metric", "value_raw", "cost_usd_increment", "source_file")
         .toPandas())

# %% [markdown]
# ## Look at conformed events
#
# Imputed units and values that were not numeric stay in Silver, flagged.

# %%
silver_events = ctx.spark.read.parquet(ctx.paths.silver("usage_events"))
silver_events.select(
    F.count("*").alias("events"),
    F.sum(F.col("is_unit_imputed").cast("int")).alias("units_imputed"),
    F.sum(F.col("is_value_not_numeric").cast("int")).alias("values_not_numeric"),
    F.sum(F.col("is_cost_spike").cast("int")).alias("cost_spikes"),
    F.sum(F.col("carbon_kg").isNull().cast("int")).alias("carbon_unknown_v1"),
    F.countDistinct("usage_date").alias("dates"),
).toPandas()

# %%
sample(ctx.spark, ctx.paths.silver("usage_events"), 5, where="is_unit_imputed",
       columns=["event_id", "usage_date", "org_name", "service", "metric", "value", "unit", "is_unit_imputed",
                "schema_version", "carbon_kg", "genai_tokens"])

# %% [markdown]
# ## Check the masters
#
# Billing in USD under the FX rule of the decision log (ADR 050).

# %%
sample(ctx.spark, ctx.paths.silver("billing_monthly"), 6)

# %% [markdown]
# ## Compare the three anomaly methods
#
# Share of daily (org, service) rows each method flags, and the consensus (at least two of three).

# %%
daily = ctx.spark.read.parquet(ctx.paths.silver("org_service_daily"))
daily.select(
    F.count("*").alias("daily_rows"),
    *[F.round(F.avg(F.col(flag).cast("double")) * 100, 2).alias(f"% {flag}")
      for flag in ("is_anomaly_zscore", "is_anomaly_mad", "is_anomaly_pctl", "is_anomaly")],
).toPandas()

# %%
top_series = (daily.groupBy("org_id", "service").agg(F.sum(F.col("is_anomaly").cast("int")).alias("flags"))
              .orderBy(F.desc("flags"), "org_id", "service").first())
series = (daily.where((F.col("org_id") == top_series["org_id"]) & (F.col("service") == top_series["service"]))
          .orderBy("usage_date").select("usage_date", "daily_cost_usd", "baseline_cost_usd", "is_anomaly").toPandas())
fig, ax = plt.subplots(figsize=(10, 4))
ax.plot(series["usage_date"], series["daily_cost_usd"], label="daily cost (USD)")
ax.plot(series["usage_date"], series["baseline_cost_usd"], ls="--", label="baseline (median)")
flagged = series[series["is_anomaly"]]
ax.scatter(flagged["usage_date"], flagged["daily_cost_usd"], color="red", zorder=3, label="consensus anomaly")
ax.set_title(f"{top_series['org_id']} / {top_series['service']}: daily cost with anomaly flags")
ax.legend()
plt.show()

# %% [markdown]
# ## Inspect the partitions

# %%
silver_partitions = partitions_frame(ctx.spark, ctx.paths.silver("usage_events"))
print(f"silver/usage_events: {len(silver_partitions)} date partitions, at most "
      f"{silver_partitions['files'].max()} file(s) each, {silver_partitions['KiB'].sum() / 1024:.1f} MiB")
silver_partitions.head()

# %% [markdown]
# ## Re-run and compare
#
# No new Bronze batch: nothing to recompute, identical counts.

# %%
from lakehouse_utils.evidence.inventory import compare, lake_inventory
from lakehouse_utils.notebook import inventory_frame

before = lake_inventory(ctx.spark, ctx.paths, zones=("silver", "quarantine"))
rerun = run_stage(ctx.spark, ctx.paths, "silver", new_run_id(), spike_factor=SPIKE_FACTOR)
after = lake_inventory(ctx.spark, ctx.paths, zones=("silver", "quarantine"))
comparison = inventory_frame(compare(before, after))
print(f"re-run plan: {rerun.extra['plan']['reason']}")
assert comparison["identical"].all(), comparison
comparison
