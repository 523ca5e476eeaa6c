"""Silver stage: masters, usage events (incremental by date) and daily features.

A run conforms every master snapshot, then recomputes the event dates touched by
Bronze batches it has not seen (from *all* Bronze rows of those dates), overwrites
exactly those partitions of Silver and of its quarantine, and rebuilds the daily
feature table. A changed master snapshot, a Bronze that lost batches, a missing state
or `full_refresh=True` recompute everything. Decisions: docs/decisions/050-silver-quality.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.fingerprint import code_version
from lakehouse_utils.paths import LakePaths, join
from lakehouse_utils.quality import quarantine_frame
from lakehouse_utils.report import StageReport, TableCounts
from lakehouse_utils.silver.anomaly import AnomalyThresholds
from lakehouse_utils.silver.daily import build_daily
from lakehouse_utils.silver.events import (
    SPIKE_ACCURACY,
    SPIKE_PERCENTILE,
    check_events,
    silver_events,
    spike_threshold,
    spikes_written,
)
from lakehouse_utils.silver.masters import MASTER_ORDER, build_masters, read_bronze

STAGE = "silver"
PARTITION = "usage_date"
# What a Silver run writes; a run that would rewrite them from the same inputs leaves them as they are.
DERIVED_TABLES = ("usage_events", "org_service_daily")
NOTHING_NEW = "0 new Bronze batch(es)"


@dataclass
class Plan:
    """Which Bronze event dates this run recomputes, and why."""

    full: bool
    reason: str
    batches: list[str]  # every Bronze batch key seen by this run (saved in the state)
    dates: list = field(default_factory=list)  # incremental: usage dates to recompute (None = no date)


def state_uri(paths: LakePaths) -> str:
    return join(paths.state(STAGE), "incremental.json")


def batch_key(run_id: Column, batch_id: Column) -> Column:
    """A Bronze micro-batch: batch ids restart when Bronze is rebuilt, so the run id is part of the key."""
    return F.concat_ws(":", run_id, batch_id.cast("string"))


def in_dates(col_name: str, dates: list) -> Column:
    """`col_name` is one of `dates`; None in the list matches a null date (unparsable timestamps)."""
    known = [d for d in dates if d is not None]
    matches = F.col(col_name).isin(known) if known else F.lit(False)
    return matches | (F.col(col_name).isNull() & F.lit(None in dates))


def changed_dates(bronze_df: DataFrame, new_batches: list[str]) -> list:
    """Dates of the rows of new batches, plus every date holding another copy of one of their event_ids.

    The second part keeps `event_id_unique` exact: all copies of an id are ranked together.
    """
    is_new = batch_key(F.col("run_id"), F.col("batch_id")).isin(new_batches)
    new_ids = bronze_df.filter(is_new & F.col("event_id").isNotNull()).select("event_id").distinct()
    sharing = bronze_df.join(new_ids, on="event_id", how="left_semi").select("event_date")
    dated = bronze_df.filter(is_new).select("event_date").union(sharing).distinct()
    return sorted((row["event_date"] for row in dated.collect()), key=lambda d: (d is None, d))


def plan_run(spark: SparkSession, paths: LakePaths, bronze_df: DataFrame, state: dict | None,
             master_run_ids: dict, full_refresh: bool) -> Plan:
    """Full or incremental, from the saved state, the master snapshots and the Bronze batches."""
    keys = bronze_df.select(batch_key(F.col("run_id"), F.col("batch_id")).alias("key")).distinct().collect()
    batches = sorted(row["key"] for row in keys)
    if full_refresh:
        return Plan(True, "full_refresh requested", batches)
    if state is None or not io.exists(spark, paths.silver("usage_events")):
        return Plan(True, "no previous Silver state", batches)
    if state.get("master_run_ids") != master_run_ids:
        return Plan(True, "a master snapshot changed since the last run", batches)
    processed = set(state.get("bronze_batches", []))
    if processed - set(batches):
        return Plan(True, "Bronze lost batches seen before (rebuilt?)", batches)
    new_batches = sorted(set(batches) - processed)
    dates = changed_dates(bronze_df, new_batches) if new_batches else []
    return Plan(False, f"{len(new_batches)} new Bronze batch(es)", batches, dates)


def drifted_dates(existing_df: DataFrame, threshold: float | None) -> list:
    """Dates already in Silver whose spike flags a new threshold would change (p99 moved)."""
    expected = F.lit(False) if threshold is None else F.col("cost_usd_increment") > F.lit(threshold)
    drifted = existing_df.filter(F.col("is_cost_spike") != expected).select(PARTITION).distinct().collect()
    return [row[PARTITION] for row in drifted]


@dataclass
class EventsResult:
    counts: TableCounts
    spike: dict


def _check_planned(spark, paths, bronze_df, masters, plan, factor):
    """Check the planned dates; find the threshold over all valid events; widen the dates if flags drift.

    Returns the checked (valid, quarantine, counts) of the final dates, cached, and (p99, threshold).
    """
    def check():
        scope_df = bronze_df if plan.full else bronze_df.filter(in_dates("event_date", plan.dates))
        return check_events(scope_df, masters["customers_orgs"], masters["resources"], persist=True)

    checked = check()
    if plan.full:
        return checked, spike_threshold(checked[0], factor)
    existing_df = io.read_parquet(spark, paths.silver("usage_events")).filter(~in_dates(PARTITION, plan.dates))
    costs = checked[0].select("cost_usd_increment").union(existing_df.select("cost_usd_increment"))
    p99, threshold = spike_threshold(costs, factor)
    drift = drifted_dates(existing_df, threshold)
    if drift:
        # same events in total, so p99 stays; only the set of dates to rewrite grows
        checked[2].release()
        plan.dates = sorted(set(plan.dates) | set(drift), key=lambda d: (d is None, d))
        plan.reason += f"; spike threshold moved, {len(drift)} more date(s)"
        checked = check()
    return checked, (p99, threshold)


def _write(spark: SparkSession, df: DataFrame, uri: str, plan: Plan, sums: dict[str, Column] | None = None
           ) -> io.Written:
    """Full: atomic replacement. Incremental: overwrite the planned dates, drop the ones left empty.

    Returns the rows written (and `sums` of them), as the write counted them.
    """
    if plan.full:
        return io.replace_table(spark, df, uri, partition_by=[PARTITION], sums=sums)
    dates = {row[PARTITION] for row in df.select(PARTITION).distinct().collect()}
    written = (io.overwrite_partitions(spark, df, uri, partition_by=[PARTITION], sums=sums) if dates
               else io.Written(0, {name: 0 for name in sums or {}}))
    for empty in set(plan.dates) - dates:
        io.delete(spark, join(uri, f"{PARTITION}={'__HIVE_DEFAULT_PARTITION__' if empty is None else empty}"))
    return written


def process_events(spark, paths, bronze_df, masters, plan, run_id, spike_factor) -> EventsResult:
    """Check, flag, enrich and write the planned event dates and their quarantine."""
    (valid_df, quarantine_df, counts), (p99, threshold) = _check_planned(
        spark, paths, bronze_df, masters, plan, spike_factor)
    try:
        silver_df = silver_events(valid_df, threshold, masters["customers_orgs"], masters["resources"], run_id)
        written = _write(spark, silver_df, paths.silver("usage_events"), plan, sums=spikes_written())
        rows_out, spikes = written.rows, int(written.sums["cost_spike"] or 0)
        quarantined = _write(spark, quarantine_frame(quarantine_df, [*bronze_df.columns, PARTITION], run_id),
                             paths.quarantine("usage_events"), plan).rows
    finally:
        counts.release()
    spike = {"percentile": SPIKE_PERCENTILE, "accuracy": SPIKE_ACCURACY, "p99": p99, "factor": spike_factor,
             "threshold": threshold, "spikes_in_scope": spikes}
    rules = counts.by_action()
    rules["flag"]["cost_spike"] = spikes
    details = {"mode": "full" if plan.full else "incremental", "reason": plan.reason, "rules": rules, "spike": spike,
               "dates_recomputed": None if plan.full else len(plan.dates)}
    # rows_in: the checked Bronze rows; rows_out / quarantined: what the two writes received
    events = TableCounts("usage_events", counts.rows_in, rows_out, quarantined=quarantined, details=details)
    return EventsResult(events, spike)


def run_parameters(spike_factor: float, thresholds: AnomalyThresholds) -> dict:
    """The settings and code a Silver run's output depends on, as they read back from the state file."""
    return json.loads(json.dumps({"spike_factor": spike_factor, "anomaly_thresholds": asdict(thresholds),
                                  "code_version": code_version()}))


def lake_files(spark: SparkSession, paths: LakePaths) -> dict[str, list[list]]:
    """The data files of every table Silver reads (Bronze) and writes (Silver and its quarantine)."""
    tables = {f"bronze/{t}": paths.bronze(t) for t in (*MASTER_ORDER, "usage_events")}
    tables |= {f"silver/{t}": paths.silver(t) for t in (*MASTER_ORDER, *DERIVED_TABLES)}
    tables |= {f"quarantine/{t}_silver": paths.quarantine(f"{t}_silver") for t in MASTER_ORDER}
    tables["quarantine/usage_events"] = paths.quarantine("usage_events")
    return io.tables_files(spark, tables)


def nothing_to_do(state: dict | None, parameters: dict, files: dict[str, list[list]]) -> bool:
    """True when this run would rewrite every Silver table from the inputs, settings and code of the last run.

    Silver is a function of the Bronze tables, the spike and anomaly settings and the code: when the
    settings and code are those the state recorded and every Bronze, Silver and quarantine file is one the
    last run listed when it finished, a re-run (a notebook run twice, `make demo` again) lists files instead
    of running ~60 Spark jobs. Anything else takes the normal path and its checks.
    """
    return bool(state) and state.get("parameters") == parameters and state.get("files") == files


def unchanged_report(run_id: str, state: dict) -> StageReport:
    """Every table reported as left unchanged: nothing read, nothing written."""
    report = StageReport(stage=STAGE, run_id=run_id)
    for table in MASTER_ORDER:
        report.add(TableCounts(table, 0, 0, details={"write_mode": "unchanged"}))
    report.add(TableCounts("usage_events", 0, 0, details={
        "mode": "unchanged", "reason": NOTHING_NEW, "rules": {}, "spike": state.get("spike"), "dates_recomputed": 0,
        "write_mode": "unchanged"}))
    report.add(TableCounts("org_service_daily", 0, 0, details={"write_mode": "unchanged"}))
    report.extra = {"plan": {"full": False, "reason": NOTHING_NEW, "dates": []}, "spike": state.get("spike")}
    return report


def run(spark: SparkSession, paths: LakePaths, run_id: str, full_refresh: bool = False, spike_factor: float = 3.0,
        anomaly_thresholds: AnomalyThresholds | None = None, **_) -> StageReport:
    """Masters, then events (full or incremental), then daily features; save the incremental state.

    With nothing new since the last run (same inputs, same settings) nothing is rewritten."""
    thresholds = anomaly_thresholds or AnomalyThresholds()
    parameters = run_parameters(spike_factor, thresholds)
    state = io.read_json(spark, state_uri(paths))
    if not full_refresh and nothing_to_do(state, parameters, lake_files(spark, paths)):
        io.write_json(spark, state_uri(paths), {**state, "run_id": run_id})
        return unchanged_report(run_id, state)
    bronze_df = read_bronze(spark, paths, "usage_events", producer="02_bronze_stream")
    report = StageReport(stage=STAGE, run_id=run_id)
    masters = build_masters(spark, paths, run_id)
    for counts in masters.counts:
        report.add(counts)
    plan = plan_run(spark, paths, bronze_df, state, masters.bronze_run_ids, full_refresh)
    events = process_events(spark, paths, bronze_df, masters.frames, plan, run_id, spike_factor)
    report.add(events.counts)
    report.add(build_daily(spark, paths, run_id, thresholds))
    report.extra = {"plan": {"full": plan.full, "reason": plan.reason, "dates": [str(d) for d in plan.dates]},
                    "spike": events.spike}
    report.assert_reconciles()
    # The files are listed last, once everything is written: a run that failed part-way records nothing.
    io.write_json(spark, state_uri(paths), {
        "bronze_batches": plan.batches, "master_run_ids": masters.bronze_run_ids, "spike": events.spike,
        "parameters": parameters, "files": lake_files(spark, paths), "run_id": run_id,
    })
    return report
