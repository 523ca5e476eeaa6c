"""Cells of notebooks/05_serving.ipynb."""

TITLE = "05 · Serving: Gold into Cassandra, and the five dashboard queries"
OVERVIEW = """\
This notebook publishes the Gold marts to Cassandra and answers the five dashboard queries from it.

* **Query-first model** (`cql/`): one table per query, partitions bucketed by month (or year) so
  none grows without bound, collection columns where the data is a set or a map (anomaly methods
  as `set<text>`, per-method scores as `map<text,double>`, ticket categories as `map<text,bigint>`).
* **Loading**: a streaming read of each Gold table (`trigger(availableNow=True)`, checkpointed) with
  `foreachBatch`: prepared statements, concurrent execution, bounded retries. Rows that disappeared
  from Gold (a ranking that moved, an anomaly that vanished) are deleted, so Cassandra mirrors Gold.
* **Targets**: the local Apache Cassandra (default; `make cassandra` or `CASSANDRA_HOST`) or AstraDB
  (`SERVING_TARGET=astra`, see the end of this notebook).

Prerequisite: `04_gold`. This is the last notebook."""

CELLS = [
    ("parameters", "DEMO_ORG = None  # None: the org with the highest total cost\nTOP_N = 5"),
    ("markdown", "## Load Gold into Cassandra"),
    ("code", """\
import pandas as pd
from lakehouse_utils.notebook import report_frame
from lakehouse_utils.pipeline import new_run_id, run_stage

serving_run = run_stage(ctx.spark, ctx.paths, "serving", new_run_id(), settings=ctx.settings,
                        target=ctx.settings.serving_target)
serving_run.assert_reconciles()
print(f"target {serving_run.extra['target']}, keyspace {serving_run.extra['keyspace']}")
report_frame(serving_run)"""),
    ("code", """\
pd.DataFrame([{"table": t.table, "rows": t.rows_out, **{k: v for k, v in t.details.items() if k != "metadata"}}
              for t in serving_run.tables]).set_index("table")"""),
    ("markdown", "## Compare Cassandra with Gold\n\nRow counts per table, read back from Cassandra."),
    ("code", """\
from lakehouse_utils.serving.connection import open_session, target_from_settings
from lakehouse_utils.evidence.inventory import cassandra_inventory, lake_inventory

target = target_from_settings(ctx.settings)
with open_session(target) as session:
    cassandra_counts = pd.DataFrame(cassandra_inventory(session, target.keyspace)).set_index("table")["rows"]
gold_counts = pd.DataFrame(lake_inventory(ctx.spark, ctx.paths, zones=("gold",))).set_index("table")["rows"]
cassandra_counts.to_frame("cassandra_rows")"""),
    ("code", """\
gold_counts.to_frame("gold_rows")"""),
    ("markdown", "## Run the five demo queries\n\nEach query reads one partition (or one per month the range "
                 "touches) of its own table: no `ALLOW FILTERING`, no secondary index."),
    ("code", """\
from lakehouse_utils.serving import queries
from lakehouse_utils.notebook import cassandra_session

session = cassandra_session(ctx.settings)
org = DEMO_ORG or queries.metadata(session, queries.USAGE_TABLE)["top_org_id"]
print(f"demo org: {org}")"""),
    ("markdown", "### Q1 · Daily cost and requests per org and service over a date range"),
    ("code", """\
print(queries.q1.cql)
q1 = pd.DataFrame(queries.q1(session, org))
q1"""),
    ("code", """\
import matplotlib.pyplot as plt

ax = q1.pivot(index="usage_date", columns="service", values="daily_cost_usd").plot.bar(
    stacked=True, figsize=(9, 4), rot=45, title=f"Q1 · daily cost per service, {org}")
ax.set_ylabel("USD")
plt.tight_layout()
plt.show()"""),
    ("markdown", "### Q2 · Top services by cost over the last 14 days"),
    ("code", """\
print(queries.q2.cql)
pd.DataFrame(queries.q2(session, org, TOP_N))"""),
    ("markdown", "### Q3 · Critical tickets and SLA-breach rate per day, last 30 days"),
    ("code", """\
print(queries.q3.cql)
pd.DataFrame(queries.q3(session))"""),
    ("markdown", "### Q4 · Monthly revenue with credits and taxes, in USD"),
    ("code", """\
print(queries.q4.cql)
pd.DataFrame(queries.q4(session))"""),
    ("markdown", "### Q5 · GenAI tokens and estimated cost per day"),
    ("code", """\
print(queries.q5.cql)
q5 = pd.DataFrame(queries.q5(session))
q5.head(10)"""),
    ("code", """\
fig, ax = plt.subplots(figsize=(9, 4))
ax.bar(q5["usage_date"].astype(str), q5["total_tokens"], color="#7fb3d5")
ax.set_ylabel("tokens")
ax2 = ax.twinx()
ax2.plot(q5["usage_date"].astype(str), q5["estimated_cost_usd"], color="#c0392b", marker="o")
ax2.set_ylabel("estimated cost (USD)")
ax.set_title(f"Q5 · GenAI tokens and estimated cost per day, {q5['org_id'].iloc[0] if 'org_id' in q5 else ''}")
ax.tick_params(axis="x", rotation=60, labelsize=7)
plt.tight_layout()
plt.show()"""),
    ("markdown", "## Re-run the load\n\nNothing new in Gold: the checkpoints skip every file, counts stay the same."),
    ("code", """\
rerun = run_stage(ctx.spark, ctx.paths, "serving", new_run_id(), settings=ctx.settings,
                  target=ctx.settings.serving_target)
with open_session(target) as session:
    after = pd.DataFrame(cassandra_inventory(session, target.keyspace)).set_index("table")["rows"]
comparison = pd.DataFrame({"before": cassandra_counts, "after": after})
comparison["identical"] = comparison["before"] == comparison["after"]
assert comparison["identical"].all(), comparison
comparison"""),
    ("markdown", """\
## Use AstraDB instead

1. In the Astra console, create a database and, in it, the keyspace `cloud_analytics` (Astra does not
   accept `CREATE KEYSPACE` from CQL; the loader says so if the keyspace is missing).
2. Download the secure connect bundle; create an application token (role *Database Administrator*).
3. Set, in `.env` or as Colab secrets (never in the notebook): `SERVING_TARGET=astra`,
   `ASTRA_DB_SECURE_BUNDLE_PATH=/path/to/secure-connect-<db>.zip`, `ASTRA_DB_APPLICATION_TOKEN=AstraCS:...`.
4. Re-run this notebook. The tables are created from `cql/` (without the keyspace file) and the token is
   never printed."""),
]
