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
# # 01 · Bronze batch: land the seven masters, typed and traced
#
# [![Open In Colab][colab-badge]][open-in-colab]
#
# [colab-badge]: https://colab.research.google.com/assets/colab-badge.svg
# [open-in-colab]: https://colab.research.google.com/github/cloud-provider-analytics/cloud-provider-analytics/blob/main/notebooks/01_bronze_batch.ipynb

# %% [markdown]
# ## Overview
#
# This notebook ingests the seven landing CSV masters (`customers_orgs`, `users`, `resources`,
# `support_tickets`, `marketing_touches`, `nps_surveys`, `billing_monthly`) into the Bronze zone.
#
# * **Explicit schemas**: every column is read as text and cast explicitly; a header that
#   differs from the contract stops the run before anything is written.
# * **Nothing dropped silently**: rows that do not parse go to `quarantine/<source>` with the raw
#   line and the reason; exact duplicate rows are removed and counted; a key repeated with
#   other content keeps its last occurrence (the correction) and quarantines the others.
# * **Traced**: `ingest_ts`, `source_file` and `run_id` on every row.
# * **Idempotent**: each table is replaced atomically, so a re-run leaves identical counts.
#
# Who it is for: anyone checking the batch layer. Prerequisites: none (this is the first
# notebook). The next one is `02_bronze_stream`.
#
# **Source:** edit `notebooks/01_bronze_batch.py` (jupytext), not this `.ipynb`, which is generated from it
# with its outputs; a change saved to the `.ipynb` (e.g. from Colab) must be synced back with
# `python -m scripts.sync_notebooks --from-ipynb 01_bronze_batch`.

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

ctx = bootstrap("01_bronze_batch")
ctx.describe()

# %% [markdown]
# ## Parameters
#
# The landing folder and the lake come from the `LANDING_DIR` and `LAKE_ROOT` settings;
# `SAMPLE_ROWS` (no setting of that name) is how many rows the samples below show.

# %% tags=["parameters"]
SAMPLE_ROWS = 5

# %% [markdown]
# ## Ingest the masters
#
# The same function runs behind `python -m lakehouse_utils pipeline --stage bronze_batch`.

# %%
from lakehouse_utils.notebook import partitions_frame, report_frame, sample
from lakehouse_utils.pipeline import new_run_id, run_stage

first_run = run_stage(ctx.spark, ctx.paths, "bronze_batch", new_run_id())
report_frame(first_run)

# %% [markdown]
# ## Check the reconciliation
#
# For every source: rows read = rows written + duplicates removed + rows quarantined.

# %%
first_run.assert_reconciles()
print(f"{len(first_run.tables)} sources, all reconcile: {first_run.reconciles} ({first_run.seconds:.0f} s)")

# %% [markdown]
# ## Inspect the partitioning
#
# Billing is partitioned by invoice month (`month=…`), tickets by creation month
# (`created_month=…`) and marketing touches by touch month (`touch_month=…`): a day holds only
# about ten tickets or touches, so daily folders would be a swarm of tiny files. The small
# dimensions are single files. One file per partition.

# %%
partitions_frame(ctx.spark, ctx.paths.bronze("billing_monthly"))

# %%
tickets_partitions = partitions_frame(ctx.spark, ctx.paths.bronze("support_tickets"))
print(f"support_tickets: {len(tickets_partitions)} month partitions, "
      f"{tickets_partitions['files'].max()} file(s) at most per partition, {tickets_partitions['KiB'].sum():.0f} KiB")
tickets_partitions.head()

# %% [markdown]
# ## Look at a few rows
#
# Typed columns, then the technical columns (`source_file` is shown relative to `LANDING_DIR`).

# %%
sample(ctx.spark, ctx.paths.bronze("customers_orgs"), SAMPLE_ROWS)

# %%
sample(ctx.spark, ctx.paths.bronze("billing_monthly"), SAMPLE_ROWS)

# %% [markdown]
# ## Show the quarantine
#
# Rows that could not be parsed or were superseded, with the rule and the reason (empty on clean data).

# %%
from lakehouse_utils.evidence.inventory import lake_inventory
from lakehouse_utils.notebook import inventory_frame

inventory_frame(lake_inventory(ctx.spark, ctx.paths, zones=("quarantine",)))

# %% [markdown]
# ## Re-run and compare
#
# Running the stage again on the same landing data must leave every Bronze table with the same
# rows, partitions and files.

# %%
from lakehouse_utils.evidence.inventory import compare

before = lake_inventory(ctx.spark, ctx.paths, zones=("bronze",))
second_run = run_stage(ctx.spark, ctx.paths, "bronze_batch", new_run_id())
after = lake_inventory(ctx.spark, ctx.paths, zones=("bronze",))
comparison = inventory_frame(compare(before, after))
assert comparison["identical"].all(), comparison
comparison
