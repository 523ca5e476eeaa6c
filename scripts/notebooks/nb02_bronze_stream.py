"""Cells of notebooks/02_bronze_stream.ipynb."""

TITLE = "02 · Bronze stream: usage events, exactly once, nothing lost"
OVERVIEW = """\
This notebook streams `usage_events_stream/*.jsonl` into `bronze/usage_events` with Spark
Structured Streaming: explicit schema, `withWatermark` on event time, dedupe by `event_id`,
late-data handling and checkpointing.

**The trap.** Every landing file holds events spread over the whole 60 days. A plain
`withWatermark(...).dropDuplicates("event_id")` with a 1-hour watermark and 10 files per
trigger keeps 7,234 of the 43,200 course events and silently drops the rest as late.
Here the watermark only *classifies* events: an event behind it is flagged `is_late` with its
lateness and still written, so Silver and Gold include it (Lambda: the batch layer owns the
correctness of late data). Dedupe is against everything already in Bronze, so a file
re-delivered days later adds nothing; an `event_id` seen again with different content goes to
quarantine as a conflicting duplicate. Malformed lines go to `quarantine/usage_events_raw`.

Each micro-batch commits exactly once (a commit marker per batch id), and small files are
compacted at the end of the run. Prerequisites: none (independent of `01_bronze_batch`).
The next notebook is `03_silver`, which needs both."""

CELLS = [
    ("markdown", "## Parameters\n\n`MAX_FILES_PER_TRIGGER` sets the micro-batch size (None = all files in one "
                 "batch); the result is the same whatever it is. `WATERMARK_DELAY` is how far behind the latest "
                 "event time an event may arrive before it counts as late."),
    ("parameters", 'MAX_FILES_PER_TRIGGER = 20\nWATERMARK_DELAY = "2 hours"'),
    ("markdown", "## Stream the events into Bronze\n\n`trigger(availableNow=True)`: process every file present, "
                 "then stop, so the notebook finishes."),
    ("code", """\
from lakehouse_utils.notebook import report_frame, partitions_frame, sample
from lakehouse_utils.pipeline import new_run_id, run_stage

stream_run = run_stage(ctx.spark, ctx.paths, "bronze_stream", new_run_id(),
                       max_files_per_trigger=MAX_FILES_PER_TRIGGER, watermark_delay=WATERMARK_DELAY)
events = stream_run.table("usage_events")
report_frame(stream_run)"""),
    ("markdown", "## Follow the micro-batches\n\nRows per batch and throughput."),
    ("code", """\
import pandas as pd
from lakehouse_utils.notebook import batches_frame

batches = batches_frame(events)
print(f"{len(batches)} micro-batches, {events.details['events_per_second'] or 0:,} lines/s over the whole stream")
batches.head(10)"""),
    ("markdown", "## Check the reconciliation\n\nLines read = events written + exact replays + quarantined "
                 "(malformed, conflicting) + blank lines ignored."),
    ("code", """\
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
reconciliation.to_frame("count")"""),
    ("markdown", "## See how late the events arrived\n\nHow far behind the stream's watermark the late events were. "
                 "They are all in Bronze, flagged, not dropped."),
    ("code", """\
import matplotlib.pyplot as plt

lateness = pd.Series(events.details["lateness_histogram"])
print(f"late events: {events.details['late_rows']:,} of {events.rows_out:,} written "
      f"(watermark delay {events.details['watermark_delay']})")
ax = lateness.plot.bar(title="Late events by lateness behind the watermark", rot=0)
ax.set_ylabel("events")
plt.show()"""),
    ("code", """\
from pyspark.sql import functions as F

bronze_events = ctx.spark.read.parquet(ctx.paths.bronze("usage_events"))
bronze_events.groupBy("is_late").agg(F.count("*").alias("events"), F.countDistinct("event_id").alias("distinct_ids")).toPandas()"""),
    ("markdown", "## Inspect the partitions\n\nPartitioned by ingest date (the day each micro-batch was committed, "
                 "ADR 048): a batch writes one file, and small files are merged while the stream runs, so a "
                 "partition holds at most 4 small files whatever the trigger size. Silver re-partitions by "
                 "event date."),
    ("code", """\
event_partitions = partitions_frame(ctx.spark, ctx.paths.bronze("usage_events"))
print(f"{len(event_partitions)} partitions, at most {event_partitions['files'].max()} file(s) each, "
      f"{event_partitions['KiB'].sum() / 1024:.1f} MiB in total")
event_partitions.head()"""),
    ("code", """\
sample(ctx.spark, ctx.paths.bronze("usage_events"), 5,
       columns=["event_id", "event_ts", "service", "metric", "value_raw", "unit", "cost_usd_increment",
                "schema_version", "carbon_kg", "genai_tokens", "is_late", "lateness_seconds", "source_file"])"""),
    ("markdown", "## Re-run with no new files\n\nThe checkpoint knows every file already processed: nothing is added."),
    ("code", """\
before = bronze_events.count()
rerun = run_stage(ctx.spark, ctx.paths, "bronze_stream", new_run_id(),
                  max_files_per_trigger=MAX_FILES_PER_TRIGGER, watermark_delay=WATERMARK_DELAY)
after = ctx.spark.read.parquet(ctx.paths.bronze("usage_events")).count()
print(f"rows before: {before:,}  after: {after:,}  lines read by the re-run: {rerun.table('usage_events').rows_in}")
assert before == after"""),
]
