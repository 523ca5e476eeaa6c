"""Cells of notebooks/04_gold.ipynb."""

TITLE = "04 · Gold: the business marts, exact to the cent"
OVERVIEW = """\
This notebook builds the Gold marts that the dashboards read from Cassandra:

| mart | grain (one row per …) | audience |
|---|---|---|
| `org_daily_usage_by_service` | org, usage date, service | FinOps |
| `revenue_by_org_month` | org, month | FinOps |
| `cost_anomaly_mart` | org, usage date, service flagged by any method | FinOps |
| `tickets_by_org_date`, `tickets_by_date_severity` | org, date, severity / date, severity | Support |
| `genai_tokens_by_org_date` | org, usage date | Product / GenAI |
| `top_services_14d` | org, as-of date, rank | FinOps (demo query 2) |

Each mart is computed in full (cheap at this size) but only the partitions whose content changed
are rewritten, so a re-run rewrites nothing and a late event rewrites only its day. Column
meanings are in `docs/data_dictionary.md`.

Prerequisite: `03_silver`. The next notebook is `05_serving`."""

CELLS = [
    ("parameters", "FULL_REFRESH = False"),
    ("markdown", "## Build the marts"),
    ("code", """\
import pandas as pd
from lakehouse_utils.notebook import report_frame, partitions_frame
from lakehouse_utils.pipeline import new_run_id, run_stage

gold_run = run_stage(ctx.spark, ctx.paths, "gold", new_run_id(), full_refresh=FULL_REFRESH)
gold_run.assert_reconciles()
report_frame(gold_run)"""),
    ("markdown", "## Reconcile Gold with Silver\n\nMoney to the cent, tokens and counts exactly."),
    ("code", """\
from lakehouse_utils.gold import evidence as gold_evidence

checks = pd.DataFrame(gold_evidence.reconcile(ctx.spark, ctx.paths)).set_index("check")
assert checks["ok"].all(), checks
checks"""),
    ("markdown", "## Inspect rows, partitions and sizes"),
    ("code", """\
pd.DataFrame(gold_evidence.gold_inventory(ctx.spark, ctx.paths)).set_index("mart")"""),
    ("code", """\
partitions_frame(ctx.spark, ctx.paths.gold("org_daily_usage_by_service")).head()"""),
    ("markdown", "## Look at the FinOps mart"),
    ("code", """\
pd.DataFrame(gold_evidence.sample(ctx.spark, ctx.paths, "org_daily_usage_by_service", 5))"""),
    ("code", """\
import matplotlib.pyplot as plt

org = gold_evidence.top_cost_org(ctx.spark, ctx.paths)
daily = pd.DataFrame(gold_evidence.daily_cost_by_service(ctx.spark, ctx.paths, org))
ax = daily.pivot(index="usage_date", columns="service", values="daily_cost_usd").plot(
    figsize=(10, 4), title=f"Daily cost per service, {org} (the org with the highest total cost)")
ax.set_ylabel("USD")
plt.show()"""),
    ("markdown", "## Look at revenue\n\nNet = subtotal − credits + taxes, in the invoice currency and in USD under "
                 "the FX rule of ADR 050."),
    ("code", """\
revenue = pd.DataFrame(gold_evidence.revenue_by_currency_month(ctx.spark, ctx.paths))
ax = revenue.pivot(index="month", columns="currency", values="net_usd").plot.bar(
    figsize=(8, 4), rot=0, title="Monthly net revenue in USD, by invoice currency")
ax.set_ylabel("USD")
plt.show()
revenue"""),
    ("markdown", "## Look at the other marts"),
    ("code", """\
pd.DataFrame(gold_evidence.sample(ctx.spark, ctx.paths, "top_services_14d", 6))"""),
    ("code", """\
pd.DataFrame(gold_evidence.sample(ctx.spark, ctx.paths, "tickets_by_date_severity", 5))"""),
    ("code", """\
pd.DataFrame(gold_evidence.sample(ctx.spark, ctx.paths, "cost_anomaly_mart", 5))"""),
    ("markdown", "## Re-run and compare\n\nSame Silver in, same Gold out: no partition is rewritten."),
    ("code", """\
from lakehouse_utils.evidence.inventory import compare, lake_inventory
from lakehouse_utils.notebook import inventory_frame

before = lake_inventory(ctx.spark, ctx.paths, zones=("gold",))
rerun = run_stage(ctx.spark, ctx.paths, "gold", new_run_id())
after = lake_inventory(ctx.spark, ctx.paths, zones=("gold",))
comparison = inventory_frame(compare(before, after))
assert comparison["identical"].all(), comparison
comparison"""),
]
