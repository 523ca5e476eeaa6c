"""Cells of notebooks/01_bronze_batch.ipynb."""

TITLE = "01 · Bronze batch: land the seven masters, typed and traced"
OVERVIEW = """\
This notebook ingests the seven landing CSV masters (`customers_orgs`, `users`, `resources`,
`support_tickets`, `marketing_touches`, `nps_surveys`, `billing_monthly`) into the Bronze zone.

* **Explicit schemas**: every column is read as text and cast explicitly; a header that
  differs from the contract stops the run before anything is written.
* **Nothing dropped silently**: rows that do not parse go to `quarantine/<source>` with the raw
  line and the reason; exact duplicate rows are removed and counted; a key repeated with
  other content keeps its last occurrence (the correction) and quarantines the others.
* **Traced**: `ingest_ts`, `source_file` and `run_id` on every row.
* **Idempotent**: each table is replaced atomically, so a re-run leaves identical counts.

Who it is for: anyone checking the batch layer. Prerequisites: none (this is the first
notebook). The next one is `02_bronze_stream`."""

CELLS = [
    ("markdown", "## Parameters\n\nThe landing folder and the lake come from `LANDING_DIR` and `LAKE_ROOT`."),
    ("parameters", 'SAMPLE_ROWS = 5'),
    ("markdown", "## Ingest the masters\n\nThe same function runs behind "
                 "`python -m lakehouse_utils pipeline --stage bronze_batch`."),
    ("code", """\
from lakehouse_utils.notebook import report_frame, partitions_frame, sample
from lakehouse_utils.pipeline import new_run_id, run_stage

first_run = run_stage(ctx.spark, ctx.paths, "bronze_batch", new_run_id())
report_frame(first_run)"""),
    ("markdown", "## Check the reconciliation\n\nFor every source: rows read = rows written + duplicates removed "
                 "+ rows quarantined."),
    ("code", """\
first_run.assert_reconciles()
print(f"{len(first_run.tables)} sources, all reconcile: {first_run.reconciles} ({first_run.seconds:.1f}s)")"""),
    ("markdown", "## Inspect the partitioning\n\nBilling is partitioned by month, tickets and touches by date; "
                 "the small dimensions are single files. One file per partition: no swarm of tiny files."),
    ("code", """\
partitions_frame(ctx.spark, ctx.paths.bronze("billing_monthly"))"""),
    ("code", """\
tickets_partitions = partitions_frame(ctx.spark, ctx.paths.bronze("support_tickets"))
print(f"support_tickets: {len(tickets_partitions)} date partitions, "
      f"{tickets_partitions['files'].max()} file(s) at most per partition, {tickets_partitions['KiB'].sum():.0f} KiB")
tickets_partitions.head()"""),
    ("markdown", "## Look at a few rows\n\nTyped columns, then the technical columns."),
    ("code", """\
sample(ctx.spark, ctx.paths.bronze("customers_orgs"), SAMPLE_ROWS)"""),
    ("code", """\
sample(ctx.spark, ctx.paths.bronze("billing_monthly"), SAMPLE_ROWS)"""),
    ("markdown", "## Show the quarantine\n\nRows that could not be parsed or were superseded, with the rule and "
                 "the reason (empty on clean data)."),
    ("code", """\
from lakehouse_utils.evidence.inventory import lake_inventory
from lakehouse_utils.notebook import inventory_frame

inventory_frame(lake_inventory(ctx.spark, ctx.paths, zones=("quarantine",)))"""),
    ("markdown", "## Re-run and compare\n\nRunning the stage again on the same landing data must leave every "
                 "Bronze table with the same rows, partitions and files."),
    ("code", """\
from lakehouse_utils.evidence.inventory import compare

before = lake_inventory(ctx.spark, ctx.paths, zones=("bronze",))
second_run = run_stage(ctx.spark, ctx.paths, "bronze_batch", new_run_id())
after = lake_inventory(ctx.spark, ctx.paths, zones=("bronze",))
comparison = inventory_frame(compare(before, after))
assert comparison["identical"].all(), comparison
comparison"""),
]
