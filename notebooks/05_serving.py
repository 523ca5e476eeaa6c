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
# # 05 · Serving: Gold into Cassandra, and the five dashboard queries
#
# [![Open In Colab][colab-badge]][open-in-colab]
#
# [colab-badge]: https://colab.research.google.com/assets/colab-badge.svg
# [open-in-colab]: https://colab.research.google.com/github/cloud-provider-analytics/cloud-provider-analytics/blob/main/notebooks/05_serving.ipynb

# %% [markdown]
# ## Overview
#
# This notebook publishes the Gold marts to Cassandra and answers the five dashboard queries from it.
#
# * **Query-first model** (`cql/`): one table per query, partitions bucketed by month (or year) so
#   none grows without bound, collection columns where the data is a set or a map (anomaly methods
#   as `set<text>`, per-method scores as `map<text,double>`, ticket categories as `map<text,bigint>`).
# * **Loading**: a streaming read of each Gold table (`trigger(availableNow=True)`, checkpointed) with
#   `foreachBatch`: prepared statements, concurrent execution, bounded retries. Rows that disappeared
#   from Gold (a ranking that moved, an anomaly that vanished) are deleted, so Cassandra mirrors Gold.
# * **Targets**: the local Apache Cassandra (default; `make cassandra` or `CASSANDRA_HOST`) or AstraDB
#   (`SERVING_TARGET=astra`, see the end of this notebook).
#
# Prerequisite: `04_gold`. This is the last notebook.
#
# **Source:** edit `notebooks/05_serving.py` (jupytext), not this `.ipynb`, which is generated from it
# with its outputs; a change saved to the `.ipynb` (e.g. from Colab) must be synced back with
# `python -m scripts.sync_notebooks --from-ipynb 05_serving`.

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

    prepare_colab(serving=True)  # apt: Java 17, and Maven when SERVING_TARGET=local
else:
    PROJECT = Path.cwd().resolve().parent if Path.cwd().name == "notebooks" else Path.cwd().resolve()
sys.path.insert(0, str(PROJECT))

from lakehouse_utils.notebook import bootstrap

ctx = bootstrap("05_serving")
ctx.describe()

# %% [markdown]
# ## Parameters
#
# `DEMO_ORG`: the organisation Q1, Q2, Q4 and Q5 show (None: each query's own leader: Q1 and Q2 the org with
# the highest total cost, Q4 the highest net revenue, Q5 the most GenAI tokens; each result names its org);
# `TOP_N`: how many services Q2 ranks. Neither has a setting of that name; the serving target
# and keyspace come from the `SERVING_TARGET` and `CASSANDRA_KEYSPACE` settings.

# %% tags=["parameters"]
DEMO_ORG = None
TOP_N = 5

# %% [markdown]
# ## Where the tables go, and how long it takes
#
# Read this before the load starts: the local target may have to start a Cassandra node first.

# %%
from lakehouse_utils.notebook import serving_plan

print(serving_plan(ctx.settings))

# %% [markdown]
# ## Load Gold into Cassandra

# %%
from lakehouse_utils.notebook import readable, report_frame
from lakehouse_utils.pipeline import new_run_id, run_stage

serving_run = run_stage(ctx.spark, ctx.paths, "serving", new_run_id(), settings=ctx.settings,
                        target=ctx.settings.serving_target)
serving_run.assert_reconciles()
print(f"target {serving_run.extra['target']}, keyspace {serving_run.extra['keyspace']}")
report_frame(serving_run)

# %%
readable([{"table": t.table, "rows": t.rows_out, **{k: v for k, v in t.details.items() if k != "metadata"}}
          for t in serving_run.tables]).set_index("table")

# %% [markdown]
# ## Compare Cassandra with Gold
#
# Every Cassandra table is read back in full and fingerprinted (row count plus the sum of a
# 64-bit hash of every row, values normalised to the types the CQL declares); its Gold mart,
# projected to the same row shape, gets the same fingerprint. `matches_gold` is True only when
# the two agree row for row and value for value; `serving_metadata` has no mart.

# %%
from lakehouse_utils.evidence.inventory import cassandra_inventory
from lakehouse_utils.notebook import inventory_frame
from lakehouse_utils.serving.connection import open_session, target_from_settings

target = target_from_settings(ctx.settings)
with open_session(target) as session:
    cassandra_before = cassandra_inventory(session, target.keyspace, ctx.spark, ctx.paths)
served = inventory_frame(cassandra_before)
assert served["matches_gold"].dropna().all(), served
served

# %% [markdown]
# ## Run the five demo queries
#
# Each query reads one partition (or one per month the range touches) of its own table: no
# `ALLOW FILTERING`, no secondary index. The same queries with literal values, ready to paste
# into `cqlsh` or the AstraDB CQL console, are in `cql/demo_queries.cql` (`make cqlsh`).

# %%
from lakehouse_utils.notebook import cassandra_session
from lakehouse_utils.serving import queries

session = cassandra_session(ctx.settings)
org = DEMO_ORG or queries.metadata(session, queries.USAGE_TABLE)["top_org_id"]
print(f"demo org: {org}")

# %% [markdown]
# ### Q1 · Daily cost and requests per org and service over a date range

# %%
print(queries.q1.cql)
q1 = readable(queries.q1(session, org))
q1

# %%
import matplotlib.pyplot as plt

ax = q1.pivot(index="usage_date", columns="service", values="daily_cost_usd").plot.bar(
    stacked=True, figsize=(9, 4), rot=45, title=f"Q1 · daily cost per service, {org}")
ax.set_ylabel("USD")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Q2 · Top services by cost over the last 14 days

# %%
print(queries.q2.cql)
readable(queries.q2(session, org, TOP_N))

# %% [markdown]
# ### Q3 · Critical tickets and SLA-breach rate per day, last 30 days

# %%
print(queries.q3.cql)
readable(queries.q3(session))

# %% [markdown]
# ### Q4 · Monthly revenue with credits and taxes, in USD

# %%
print(queries.q4.cql)
readable(queries.q4(session, DEMO_ORG))

# %% [markdown]
# ### Q5 · GenAI tokens and estimated cost per day

# %%
print(queries.q5.cql)
q5 = readable(queries.q5(session, DEMO_ORG))
q5.head(10)

# %%
fig, ax = plt.subplots(figsize=(9, 4))
ax.bar(q5["usage_date"].astype(str), q5["total_tokens"], color="#7fb3d5")
ax.set_ylabel("tokens")
ax2 = ax.twinx()
ax2.plot(q5["usage_date"].astype(str), q5["estimated_cost_usd"], color="#c0392b", marker="o")
ax2.set_ylabel("estimated cost (USD)")
ax.set_title(f"Q5 · GenAI tokens and estimated cost per day, {q5['org_id'].iloc[0] if len(q5) else DEMO_ORG}")
ax.tick_params(axis="x", rotation=60, labelsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Re-run the load
#
# Nothing new in Gold: the checkpoints skip every file, and every Cassandra table is unchanged.

# %%
from lakehouse_utils.evidence.inventory import idempotency

rerun = run_stage(ctx.spark, ctx.paths, "serving", new_run_id(), settings=ctx.settings,
                  target=ctx.settings.serving_target)
with open_session(target) as session:
    cassandra_after = cassandra_inventory(session, target.keyspace, ctx.spark, ctx.paths)
comparison, same, verdict = idempotency(cassandra_before, cassandra_after)
print(verdict)
assert same, verdict
inventory_frame(comparison)

# %% [markdown]
# ## Use AstraDB instead
#
# 1. In the Astra console, create a database and, in it, the keyspace `cloud_analytics` (Astra does not
#    accept `CREATE KEYSPACE` from CQL; the loader says so if the keyspace is missing).
# 2. Download the secure connect bundle; create an application token (role *Database Administrator*).
# 3. Set, in `.env` or as Colab secrets (never in the notebook): `SERVING_TARGET=astra`,
#    `ASTRA_DB_SECURE_BUNDLE_PATH=/path/to/secure-connect-<db>.zip`, `ASTRA_DB_APPLICATION_TOKEN=AstraCS:...`.
# 4. Re-run this notebook (in Colab: *Runtime > Restart session*, then *Run all*; nothing is
#    installed for Astra). The tables are created from `cql/` (without the keyspace file) and the
#    token is never printed. To run the demo queries by hand, paste `cql/demo_queries.cql` into
#    the Astra CQL console.
