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
# # 02 · Bronze stream: usage events, exactly once, nothing lost
#
# [![Open In Colab][colab-badge]][open-in-colab]
#
# [colab-badge]: https://colab.research.google.com/assets/colab-badge.svg
# [open-in-colab]: https://colab.research.google.com/github/cloud-provider-analytics/cloud-provider-analytics/blob/main/notebooks/02_bronze_stream.ipynb

# %% [markdown]
# ## Overview
#
# This notebook streams `usage_events_stream/*.jsonl` into `bronze/usage_events` with Spark
# Structured Streaming: explicit schema, `withWatermark` on event time, dedupe by `event_id`,
# late-data handling and checkpointing.
#
# **The trap.** Every landing file holds events spread over the whole 60 days. A plain
# `withWatermark(...).dropDuplicates("event_id")` with a 1-hour watermark and 10 files per
# trigger keeps 7,234 of the 43,200 course events and silently drops the rest as late.
# Here the watermark only *classifies* events: an event behind it is flagged `is_late` with its
# lateness and still written, so Silver and Gold include it (Lambda: the batch layer owns the
# correctness of late data). Dedupe runs in Spark's own state store (RocksDB, in the checkpoint):
# `dropDuplicates` on `event_id` and on (`event_id`, content hash) markers, with no event-time
# column, so every id is remembered for ever and a micro-batch never reads Bronze back (ADR 045).
# A file re-delivered days later adds nothing; an `event_id` seen again with different content
# goes to quarantine as a conflicting duplicate. Malformed lines go to `quarantine/usage_events_raw`.
#
# Each micro-batch commits exactly once (a commit marker per batch id) and writes a file (at most one per core)
# into its ingest-date partition; small files are merged while the stream runs (at most 4 per partition).
# Prerequisites: none (independent of `01_bronze_batch`).
# The next notebook is `03_silver`, which needs both.
#
# **Source:** edit `notebooks/02_bronze_stream.py` (jupytext), not this `.ipynb`, which is generated from it
# with its outputs; a change saved to the `.ipynb` (e.g. from Colab) must be synced back with
# `python -m scripts.sync_notebooks --from-ipynb 02_bronze_stream`.

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

ctx = bootstrap("02_bronze_stream")
ctx.describe()

# %% [markdown]
# ## Parameters
#
# `MAX_FILES_PER_TRIGGER` sets the micro-batch size (None = all files in one batch); the result
# is the same whatever it is. `WATERMARK_DELAY` is how far behind the latest event time an event
# may arrive before it counts as late; it comes from the `WATERMARK_DELAY` setting (environment,
# `.env` or Colab secrets; default 2 hours), so the notebook and
# `python -m lakehouse_utils pipeline` classify the same events as late.

# %% tags=["parameters"]
MAX_FILES_PER_TRIGGER = 20
WATERMARK_DELAY = ctx.settings.watermark_delay

# %% [markdown]
# ## Stream the events into Bronze
#
# `trigger(availableNow=True)`: process every file present, then stop, so the notebook finishes.

# %%
from lakehouse_utils.notebook import partitions_frame, report_frame, sample
from lakehouse_utils.pipeline import new_run_id, run_stage

stream_run = run_stage(ctx.spark, ctx.paths, "bronze_stream", new_run_id(),
                       max_files_per_trigger=MAX_FILES_PER_TRIGGER, watermark_delay=WATERMARK_DELAY)
events = stream_run.table("usage_events")
report_frame(stream_run)

# %% [markdown]
# ## Follow the micro-batches
#
# Rows per batch and throughput.

# %%
import pandas as pd

from lakehouse_utils.notebook import batches_frame

batches = batches_frame(events)
print(f"{len(batches)} micro-batches, {events.details['events_per_second'] or 0:,.0f} lines/s over the whole stream")
batches.head(10)

# %% [markdown]
# ## Check the reconciliation
#
# Lines read = events written + exact replays + quarantined (malformed, conflicting) + blank lines ignored.

# %%
reconciliation = pd.Series({
    "lines read": events.rows_in,
    "events written": events.rows_out,
    "exact replays dropped": events.duplicates,
    "malformed / not an object": events.details["malformed_json"] + events.details["not_a_json_object"],
    "conflicting duplicates": events.details["conflicting_duplicates"],
    "blank lines": events.ignored,
    "unaccounted": events.unaccounted,
})
assert events.reconciles
reconciliation.to_frame("count")

# %% [markdown]
# ## See how late the events arrived
#
# How far behind the stream's watermark the late events were. They are all in Bronze, flagged, not dropped.

# %%
import matplotlib.pyplot as plt

lateness = pd.Series(events.details["lateness_histogram"])
print(f"late events: {events.details['late_rows']:,} of {events.rows_out:,} written "
      f"(watermark delay {events.details['watermark_delay']})")
ax = lateness.plot.bar(title="Late events by lateness behind the watermark", rot=0)
ax.set_ylabel("events")
plt.show()

# %%
from pyspark.sql import functions as F

bronze_events = ctx.spark.read.parquet(ctx.paths.bronze("usage_events"))
bronze_events.groupBy("is_late").agg(F.count("*").alias("events"), F.countDistinct("event_id").alias("distinct_ids")).toPandas()

# %% [markdown]
# ## Inspect the partitions
#
# Partitioned by ingest date (the day each micro-batch was committed, ADR 048): a batch writes a file (at most one per
# core) and small files are merged while the stream runs, so a partition holds at most 4 small files whatever the trigger size.
# Silver re-partitions by event date.

# %%
event_partitions = partitions_frame(ctx.spark, ctx.paths.bronze("usage_events"))
print(f"{len(event_partitions)} partitions, at most {event_partitions['files'].max()} file(s) each, "
      f"{event_partitions['KiB'].sum() / 1024:.1f} MiB in total")
event_partitions.head()

# %%
sample(ctx.spark, ctx.paths.bronze("usage_events"), 5,
       columns=["event_id", "event_ts", "service", "metric", "value_raw", "unit", "cost_usd_increment",
                "schema_version", "carbon_kg", "genai_tokens", "is_late", "lateness_seconds", "source_file"])

# %% [markdown]
# ## Re-run with no new files
#
# The checkpoint knows every file already processed: nothing is added.

# %%
before = bronze_events.count()
rerun = run_stage(ctx.spark, ctx.paths, "bronze_stream", new_run_id(),
                  max_files_per_trigger=MAX_FILES_PER_TRIGGER, watermark_delay=WATERMARK_DELAY)
after = ctx.spark.read.parquet(ctx.paths.bronze("usage_events")).count()
print(f"rows before: {before:,}  after: {after:,}  lines read by the re-run: {rerun.table('usage_events').rows_in}")
assert before == after
