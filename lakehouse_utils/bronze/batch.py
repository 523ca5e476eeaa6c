"""Batch ingestion of the seven landing CSV masters into Bronze, one full snapshot per run.

Per master: check the header, read every field as text, cast to the contract
types, drop exact duplicates, let the last line of a natural key win, and
replace `bronze/<master>` and `quarantine/<master>` atomically. Every structural
check runs on all files before anything is written. A master whose landing file, code and
written tables are those of the last run is left as it is (same snapshot, same run id).
Decisions: docs/decisions/030-bronze-batch.md.
"""

from __future__ import annotations

import csv
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.bronze.batch_parse import (
    DUPLICATE,
    OK,
    SUPERSEDED,
    UNPARSABLE,
    raw_name,
    read_raw,
    record_start_lines,
    with_parse_result,
    with_status,
)
from lakehouse_utils.contracts import (
    BRONZE_PARTITIONING,
    MASTER_SOURCES,
    TECHNICAL_COLUMNS,
    MasterSchema,
    bronze_struct,
    header_problems,
    master_schema,
)
from lakehouse_utils.fingerprint import code_version
from lakehouse_utils.paths import EVENTS_DIR, LakePaths, join
from lakehouse_utils.report import StageReport, TableCounts

STAGE = "bronze_batch"
SAMPLE_SIZE = 20
PARALLEL_MASTERS = 3

RULES = {UNPARSABLE: "unparsable_row", SUPERSEDED: "duplicate_key_superseded"}


class LandingError(Exception):
    """A landing file cannot be ingested as it is; nothing was written."""


class LandingSchemaError(LandingError, ValueError):
    """A landing file's header does not match the contract in lakehouse_utils.contracts."""


class LandingFileMissingError(LandingError, FileNotFoundError):
    """A master file is absent from the landing folder."""


@dataclass(frozen=True)
class LandingFile:
    """A validated landing file and the column order its header declares."""

    source: str
    uri: str
    header: tuple[str, ...]

    @property
    def is_reordered(self) -> bool:
        return list(self.header) != master_schema(self.source).column_names


def parse_header(line: str) -> list[str]:
    """Column names of a CSV header line (quotes honoured, BOM and surrounding blanks removed)."""
    cells = next(csv.reader([line.lstrip("\ufeff")]), [])
    return [cell.strip() for cell in cells]


def validate_landing(spark: SparkSession, paths: LakePaths, sources: list[str]) -> dict[str, LandingFile]:
    """Check that every master exists and has the expected columns; raise before any write."""
    uris = {source: paths.landing_master(source) for source in sources}
    missing = [uri for source, uri in uris.items() if not io.exists(spark, uri)]
    if missing:
        raise LandingFileMissingError(
            f"landing master file(s) not found: {', '.join(missing)}. Point --landing (or LANDING_DIR) at the "
            f"folder that holds the seven master CSV files and {EVENTS_DIR}/, or generate one: "
            "python -m lakehouse_utils generate --out <folder>")
    landing, problems = {}, []
    for source, uri in uris.items():
        expected = master_schema(source).column_names
        first_line = io.read_first_line(spark, uri) or ""
        found = parse_header(first_line) if first_line.strip() else []
        issues = header_problems(expected, found) if found else ["the file is empty (no header line)"]
        if issues:
            problems.append(f"{uri}: {'; '.join(issues)}\n  expected columns: {expected}\n  found columns:    {found}")
        landing[source] = LandingFile(source, uri, tuple(found))
    if problems:
        raise LandingSchemaError("landing header check failed, nothing was written:\n" + "\n".join(problems))
    return landing


def bronze_columns(schema: MasterSchema, ingest_ts: datetime, landing: LandingFile, run_id: str) -> list[Column]:
    """Typed business columns in contract order, the technical columns, then a derived partition column."""
    technical = {"ingest_ts": F.lit(ingest_ts), "source_file": F.lit(landing.uri), "run_id": F.lit(run_id)}
    columns = [F.col(name) for name in schema.column_names]
    columns += [technical[name].cast(dtype).alias(name) for name, dtype in TECHNICAL_COLUMNS]
    partition_column, copied_from = BRONZE_PARTITIONING.get(schema.source, (None, None))
    if copied_from:
        columns.append(F.trunc(copied_from, "month").alias(partition_column))
    return columns


def quarantine_columns(
    schema: MasterSchema, quarantined_at: datetime, landing: LandingFile, run_id: str
) -> list[Column]:
    """Rule and reason, the fields as they were in the file (text), and where the record came from."""
    superseded_reason = F.concat(
        F.lit("key "), F.col("key_text"), F.lit(" appears again at line "), F.col("winner_line").cast("string"),
        F.lit(" with different content; the later line wins"),
    )
    is_superseded = F.col("status") == SUPERSEDED
    return [
        F.when(is_superseded, F.lit(RULES[SUPERSEDED])).otherwise(F.lit(RULES[UNPARSABLE])).alias("rule"),
        F.when(is_superseded, superseded_reason).otherwise(F.col("problems")).alias("reason"),
        *[F.col(raw_name(name)).alias(name) for name in schema.column_names],
        F.col("raw_line"),
        F.col("line_number"),
        F.col("record_number"),
        F.lit(landing.uri).alias("source_file"),
        F.lit(run_id).alias("run_id"),
        F.lit(quarantined_at).cast("timestamp").alias("quarantined_at"),
    ]


def summarise(classified_df: DataFrame) -> dict:
    """All counts of one master from a single aggregation (plus small samples for the report)."""
    def count_of(status: str) -> Column:
        return F.sum(F.when(F.col("status") == status, 1).otherwise(0)).alias(status)

    def first_sorted(status: str, value: Column) -> Column:
        return F.slice(F.array_sort(F.collect_list(F.when(F.col("status") == status, value))), 1, SAMPLE_SIZE)

    row = classified_df.agg(
        F.count(F.lit(1)).alias("rows_in"),
        *[count_of(status) for status in (OK, DUPLICATE, SUPERSEDED, UNPARSABLE)],
        first_sorted(SUPERSEDED, F.col("key_text")).alias("superseded_keys"),
        first_sorted(UNPARSABLE, F.col("line_number")).alias("unparsable_lines"),
    ).first()
    return {key: (value or 0) if not isinstance(value, list) else value for key, value in row.asDict().items()}


def write_snapshot(
    spark: SparkSession, paths: LakePaths, classified_df: DataFrame, rows_out: int, landing: LandingFile,
    run_id: str, ingest_ts: datetime,
) -> tuple[str | None, int, int]:
    """Replace `bronze/<master>` and `quarantine/<master>`; return the partition column used and the
    rows the two writes counted (Bronze, quarantine)."""
    schema = master_schema(landing.source)
    partition_column = BRONZE_PARTITIONING.get(schema.source, (None, None))[0]
    bronze_df = classified_df.filter(F.col("status") == OK).select(*bronze_columns(schema, ingest_ts, landing, run_id))
    if rows_out == 0:
        # A partitioned write of no rows leaves no file, and readers could not infer the schema:
        # write one schema-only file, with the columns in their read-back order.
        bronze_df, partition_column = bronze_df.select(*bronze_struct(schema.source).fieldNames()), None
    written = io.replace_table(spark, bronze_df, paths.bronze(schema.source),
                               partition_by=[partition_column] if partition_column else None)
    is_quarantined = F.col("status").isin(SUPERSEDED, UNPARSABLE)
    quarantine_df = classified_df.filter(is_quarantined).select(*quarantine_columns(schema, ingest_ts, landing, run_id))
    quarantined = io.replace_table(spark, quarantine_df, paths.quarantine(schema.source))
    return partition_column, written.rows, quarantined.rows


def ingest_master(
    spark: SparkSession, paths: LakePaths, landing: LandingFile, run_id: str, ingest_ts: datetime
) -> TableCounts:
    """Read, classify and write one master; return its reconciled counts and the evidence a notebook shows."""
    started = time.perf_counter()
    schema = master_schema(landing.source)
    raw_df = read_raw(spark, landing.uri, landing.header)
    parsed_df = with_parse_result(raw_df, schema, landing.header, record_start_lines(spark, landing.uri))
    # Cached once: the counts and both writes read the classified rows without re-parsing the file.
    classified_df = with_status(parsed_df, schema).cache()
    try:
        summary = summarise(classified_df)
        partition_column, rows_out, quarantined = write_snapshot(
            spark, paths, classified_df, summary[OK], landing, run_id, ingest_ts)
    finally:
        classified_df.unpersist()
    inventory = io.partition_inventory(spark, paths.bronze(schema.source))
    details = {
        "file": landing.uri, "header": list(landing.header), "columns_reordered": landing.is_reordered,
        "bronze_table": paths.bronze(schema.source), "quarantine_table": paths.quarantine(schema.source),
        "partition_by": partition_column, "partitions": len(inventory),
        "files": sum(p["files"] for p in inventory), "bytes": sum(p["bytes"] for p in inventory),
        "partition_inventory": inventory, "write_mode": "replaced", "bronze_run_id": run_id,
        "unparsable": summary[UNPARSABLE], "superseded": summary[SUPERSEDED],
        "superseded_keys": summary["superseded_keys"], "unparsable_lines": summary["unparsable_lines"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    # rows_in and duplicates from the classification; rows_out and quarantined as the writes counted them
    return TableCounts(
        table=schema.source, rows_in=summary["rows_in"], rows_out=rows_out, duplicates=summary[DUPLICATE],
        quarantined=quarantined, details=details,
    )


def state_uri(paths: LakePaths) -> str:
    return join(paths.state(STAGE), "snapshots.json")


def snapshot_record(spark: SparkSession, paths: LakePaths, landing: LandingFile, digest: str) -> dict:
    """What a master's Bronze snapshot was made from and what it is now, without its run id."""
    return {"landing_uri": landing.uri, "sha256": digest, "code_version": code_version(),
            "bronze_files": io.table_files(spark, paths.bronze(landing.source)),
            "quarantine_files": io.table_files(spark, paths.quarantine(landing.source))}


def unchanged_counts(spark: SparkSession, paths: LakePaths, landing: LandingFile, run_id: str) -> TableCounts:
    """A master left as it is: nothing read, nothing written; the snapshot keeps the run id that wrote it."""
    inventory = io.partition_inventory(spark, paths.bronze(landing.source))
    return TableCounts(table=landing.source, rows_in=0, rows_out=0, details={
        "write_mode": "unchanged", "bronze_run_id": run_id, "file": landing.uri,
        "bronze_table": paths.bronze(landing.source), "quarantine_table": paths.quarantine(landing.source),
        "partitions": len(inventory), "files": sum(p["files"] for p in inventory),
        "bytes": sum(p["bytes"] for p in inventory), "partition_inventory": inventory})


def run(
    spark: SparkSession, paths: LakePaths, run_id: str, sources: list[str] | None = None,
    parallel: int = PARALLEL_MASTERS, full_refresh: bool = False, **options,
) -> StageReport:
    """Ingest the landing masters (all seven unless `sources` names some) into Bronze.

    A master is left as it is when its landing file has the bytes and location it had when its snapshot was
    written, the package code is the same, and its Bronze and quarantine files are the ones that run wrote
    (`full_refresh` rewrites it anyway). Re-running the chain then costs Silver and Gold nothing either."""
    selected = list(sources) if sources else list(MASTER_SOURCES)
    for source in selected:
        master_schema(source)
    started = time.perf_counter()
    landing = validate_landing(spark, paths, selected)
    ingest_ts = datetime.now(timezone.utc)
    report = StageReport(stage=STAGE, run_id=run_id, extra={
        "landing_root": paths.landing_root, "ingest_ts": ingest_ts.isoformat(), "sources": selected,
    })
    recorded = (io.read_json(spark, state_uri(paths)) or {}).get("masters", {})
    digests = {source: io.file_digest(spark, landing[source].uri) for source in selected}
    unchanged = {source for source in selected if not full_refresh and source in recorded
                 and {k: v for k, v in recorded[source].items() if k != "run_id"}
                 == snapshot_record(spark, paths, landing[source], digests[source])}
    counts = {source: unchanged_counts(spark, paths, landing[source], recorded[source]["run_id"])
              for source in unchanged}
    ingested = [source for source in selected if source not in unchanged]

    def ingest(source: str) -> TableCounts:
        return ingest_master(spark, paths, landing[source], run_id, ingest_ts)

    # A master is three tiny Spark jobs dominated by driver overhead; overlapping masters keeps the cores busy.
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(ingested) or 1))) as pool:
        counts.update(zip(ingested, pool.map(ingest, ingested), strict=True))
    for source in selected:
        report.add(counts[source])
    report.seconds = time.perf_counter() - started
    report.assert_reconciles()
    # Written last: a run that failed part-way leaves files the state does not list, so they are rewritten.
    snapshots = {**recorded, **{source: {**snapshot_record(spark, paths, landing[source], digests[source]),
                                         "run_id": run_id} for source in ingested}}
    io.write_json(spark, state_uri(paths), {"masters": snapshots})
    return report
