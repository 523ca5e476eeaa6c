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
# # 04 · Gold: the business marts, exact to the cent
#
# [![Open In Colab][colab-badge]][open-in-colab]
#
# [colab-badge]: https://colab.research.google.com/assets/colab-badge.svg
# [open-in-colab]: https://colab.research.google.com/github/cloud-provider-analytics/cloud-provider-analytics/blob/main/notebooks/04_gold.ipynb

# %% [markdown]
# ## Overview
#
# This notebook builds the Gold marts that the dashboards read from Cassandra:
#
# | mart | grain (one row per …) | audience |
# |---|---|---|
# | `org_daily_usage_by_service` | org, usage date, service | FinOps |
# | `revenue_by_org_month` | org, month | FinOps |
# | `cost_anomaly_mart` | org, usage date, service flagged by any method | FinOps |
# | `tickets_by_org_date`, `tickets_by_date_severity` | org, date, severity / date, severity | Support |
# | `genai_tokens_by_org_date` | org, usage date | Product / GenAI |
# | `top_services_14d` | org, as-of date, rank | FinOps (demo query 2) |
#
# Each mart is computed in full (cheap at this size) but only the partitions whose content changed
# are rewritten, so a re-run rewrites nothing and a late event rewrites only its day. Column
# meanings are in `docs/data_dictionary.md`.
#
# Prerequisite: `03_silver`. The next notebook is `05_serving`.
#
# **Source:** edit `notebooks/04_gold.py` (jupytext), not this `.ipynb`, which is generated from it
# with its outputs; a change saved to the `.ipynb` (e.g. from Colab) must be synced back with
# `python -m scripts.sync_notebooks --from-ipynb 04_gold`.

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

ctx = bootstrap("04_gold")
ctx.describe()

# %% [markdown]
# ## Parameters
#
# `FULL_REFRESH`: rewrite every partition instead of only those whose content changed (no
# setting of that name; the pipeline's default is the same).

# %% tags=["parameters"]
FULL_REFRESH = False

# %% [markdown]
# ## Build the marts
#
# `rows_in`/`rows_out` count what each mart reconciles on: its own rows for the daily-usage, GenAI and
# top-services marts; the invoices (`revenue_by_org_month`) or tickets (the two ticket marts) it aggregates;
# the daily rows the anomaly mart examined (`ignored`: not anomalous). `table_rows` is each mart's own size.

# %%
import pandas as pd

from lakehouse_utils.notebook import partitions_frame, readable, report_frame
from lakehouse_utils.pipeline import new_run_id, run_stage

gold_run = run_stage(ctx.spark, ctx.paths, "gold", new_run_id(), full_refresh=FULL_REFRESH)
gold_run.assert_reconciles()
report_frame(gold_run)

# %% [markdown]
# ## Reconcile Gold with Silver
#
# Money to the cent, tokens and counts exactly.

# %%
from lakehouse_utils.gold import evidence as gold_evidence

checks = readable(gold_evidence.reconcile(ctx.spark, ctx.paths)).set_index("check")
assert checks["ok"].all(), checks
checks

# %% [markdown]
# ## Inspect rows, partitions and sizes

# %%
pd.DataFrame(gold_evidence.gold_inventory(ctx.spark, ctx.paths)).set_index("mart")

# %%
partitions_frame(ctx.spark, ctx.paths.gold("org_daily_usage_by_service")).head()

# %% [markdown]
# ## Look at the FinOps mart

# %%
readable(gold_evidence.sample(ctx.spark, ctx.paths, "org_daily_usage_by_service", 5))

# %%
import matplotlib.pyplot as plt

org = gold_evidence.top_cost_org(ctx.spark, ctx.paths)
daily = pd.DataFrame(gold_evidence.daily_cost_by_service(ctx.spark, ctx.paths, org))
ax = daily.pivot(index="usage_date", columns="service", values="daily_cost_usd").plot(
    figsize=(10, 4), title=f"Daily cost per service, {org} (the org with the highest total cost)")
ax.set_ylabel("USD")
plt.show()

# %% [markdown]
# ## Look at revenue
#
# Net = subtotal − credits + taxes, in the invoice currency and in USD under the FX rule of ADR 050.

# %%
revenue = readable(gold_evidence.revenue_by_currency_month(ctx.spark, ctx.paths))
ax = revenue.pivot(index="month", columns="currency", values="net_usd").plot.bar(
    figsize=(8, 4), rot=0, title="Monthly net revenue in USD, by invoice currency")
ax.set_ylabel("USD")
plt.show()
revenue

# %% [markdown]
# ## Look at the other marts

# %%
readable(gold_evidence.sample(ctx.spark, ctx.paths, "top_services_14d", 6))

# %%
readable(gold_evidence.sample(ctx.spark, ctx.paths, "tickets_by_date_severity", 5))

# %%
readable(gold_evidence.sample(ctx.spark, ctx.paths, "cost_anomaly_mart", 5))

# %% [markdown]
# ## Re-run and compare
#
# Same Silver in, same Gold out: no partition is rewritten.

# %%
from lakehouse_utils.evidence.inventory import compare, lake_inventory
from lakehouse_utils.notebook import inventory_frame

before = lake_inventory(ctx.spark, ctx.paths, zones=("gold",))
rerun = run_stage(ctx.spark, ctx.paths, "gold", new_run_id())
after = lake_inventory(ctx.spark, ctx.paths, zones=("gold",))
comparison = inventory_frame(compare(before, after))
assert comparison["identical"].all(), comparison
comparison
