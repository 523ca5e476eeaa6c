"""Serving stage: apply the CQL model, then stream every Gold mart into its Cassandra table.

Each mart is read as a file stream (`trigger(availableNow=True)`, checkpoint per
target and table), so a run loads only the Gold files written since the last
run; `serving.sync.TableSync` upserts them and deletes the rows Gold dropped.
Whenever a table changes, a small aggregate of its mart refreshes
`serving_metadata` (the defaults of the demo queries), inside the same batch.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils import io
from lakehouse_utils.config import Settings
from lakehouse_utils.contracts import GOLD_MARTS, validate_schema
from lakehouse_utils.paths import LakePaths, check_name, join
from lakehouse_utils.report import StageReport, TableCounts
from lakehouse_utils.serving.claim import Claim, check_claim, lake_id
from lakehouse_utils.serving.connection import (
    CQL_DIR,
    DDL_TIMEOUT_S,
    CassandraTarget,
    keyspace_exists,
    missing_keyspace_error,
    open_session,
    ship_bundle,
    split_statements,
    target_from_settings,
)
from lakehouse_utils.serving.model import METADATA_TABLE, SERVING_TABLES, ServingTable, serving_table
from lakehouse_utils.serving.sync import TableSync, gold_partition_columns, gold_partition_ids

log = logging.getLogger(__name__)

# In-flight requests (single rows or single-partition batches) per writer task; see docs/decisions/070
# (measured: 32 -> 4.2k, 64 -> 5.1k, 128 -> 5.1k rows/s on the busy 2-core box).
DEFAULT_CONCURRENCY = 64
# Tables loaded at once (each is its own streaming query); see docs/decisions/070.
PARALLEL_TABLES = 3
# The keyspace, the bound queries the code runs, and their literal copy for cqlsh / the Astra console.
NOT_TABLE_FILES = ("00_keyspace.cql", "queries.cql", "demo_queries.cql")
_KEYSPACE_STATEMENT = re.compile(r"(CREATE KEYSPACE IF NOT EXISTS\s+)cloud_analytics\b")


def cql_files() -> list:
    """Table files of the model (keyspace and query files excluded), in name order."""
    return sorted((p for p in CQL_DIR.iterdir() if p.name.endswith(".cql") and p.name not in NOT_TABLE_FILES),
                  key=lambda p: p.name)


def apply_schema(target: CassandraTarget) -> list[str]:
    """Create the keyspace (local only) and every table, IF NOT EXISTS. Returns the tables applied."""
    keyspace_cql = (CQL_DIR / "00_keyspace.cql").read_text(encoding="utf-8")
    with open_session(target, use_keyspace=False) as session:
        if target.kind == "local":
            for statement in split_statements(keyspace_cql):
                session.execute(_KEYSPACE_STATEMENT.sub(rf"\g<1>{check_name(target.keyspace, 'keyspace')}", statement),
                                timeout=DDL_TIMEOUT_S)
        elif not keyspace_exists(session, target.keyspace):
            raise missing_keyspace_error(target)
        session.set_keyspace(target.keyspace)
        applied = []
        for path in cql_files():
            for statement in split_statements(path.read_text(encoding="utf-8")):
                session.execute(statement, timeout=DDL_TIMEOUT_S)
            applied.append(path.name.removesuffix(".cql"))
    return applied


def checkpoint_uri(paths: LakePaths, table: ServingTable, target: CassandraTarget) -> str:
    return join(paths.checkpoint(f"serving_{table.name}"), target.slug)


def mirror_uri(paths: LakePaths, table: ServingTable, target: CassandraTarget) -> str:
    return join(paths.state("serving"), target.slug, table.name)


class GoldMissingError(FileNotFoundError):
    """A Gold mart the serving stage loads is not in the lake."""


def require_gold(spark: SparkSession, paths: LakePaths, tables: list[ServingTable]) -> None:
    """Every mart of `tables` exists; else the first missing one is named, before anything reaches Cassandra."""
    for table in tables:
        if not io.exists(spark, paths.gold(table.mart)):
            raise GoldMissingError(f"Gold mart {table.mart} not found at {paths.gold(table.mart)}: run the gold stage "
                                   "first (`python -m lakehouse_utils pipeline --stage gold`)")


def load_table(spark: SparkSession, paths: LakePaths, table: ServingTable, target: CassandraTarget,
               run_id: str, concurrency: int = DEFAULT_CONCURRENCY) -> TableCounts:
    """Stream the Gold files not yet loaded into `table`, then drop keys of vanished Gold partitions."""
    gold_uri = paths.gold(table.mart)
    require_gold(spark, paths, [table])
    columns = gold_partition_columns(spark, gold_uri)
    metadata: dict = {}
    sync = TableSync(spark, table, target, mirror_uri(paths, table, target),
                     paths.quarantine(f"serving_{table.name}"), columns, run_id, concurrency,
                     on_change=lambda: metadata.update(write_metadata(spark, paths, table, target, run_id)))
    if io.list_files(spark, gold_uri):
        schema = validate_schema(io.read_parquet(spark, gold_uri), GOLD_MARTS[table.mart], allow_extra=True,
                                 table=f"gold/{table.mart} at {gold_uri}",
                                 fix="rebuild Gold with the current code (pipeline --stage gold --full-refresh)")
        _run_stream(spark, gold_uri, schema, checkpoint_uri(paths, table, target), sync, table)
    sync.remove_vanished(gold_partition_ids(spark, gold_uri, columns))
    counts = sync.counts
    rows_per_second = counts.rows_out / counts.write_seconds if counts.write_seconds else None
    return TableCounts(
        table.name, rows_in=counts.rows_in, rows_out=counts.rows_out, duplicates=counts.duplicates,
        quarantined=counts.quarantined,
        details={"source_mart": table.mart, "target": target.endpoint, "keyspace": target.keyspace,
                 "batches": counts.batches, "stale_rows_deleted": counts.deleted, "concurrency": concurrency,
                 "write_seconds": round(counts.write_seconds, 3),
                 "rows_per_second": round(rows_per_second) if rows_per_second else None,
                 "metadata": metadata or "unchanged"},
    )


def _run_stream(spark: SparkSession, gold_uri: str, schema: T.StructType, checkpoint: str, sync: TableSync,
                table: ServingTable) -> None:
    # No maxFilesPerTrigger: one batch must hold every new file of a Gold partition (see serving.sync).
    stream = spark.readStream.schema(schema).parquet(gold_uri)
    query = (
        stream.writeStream.foreachBatch(sync)
        .option("checkpointLocation", checkpoint)
        .queryName(f"serving_{table.name}")
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
    except StreamingQueryException:
        if sync.failure is not None:
            raise sync.failure from None
        raise
    finally:
        if query.isActive:
            query.stop()


def write_metadata(spark: SparkSession, paths: LakePaths, table: ServingTable, target: CassandraTarget,
                   run_id: str) -> dict:
    """Date range, row count and leading org of the mart (one small aggregate) into serving_metadata."""
    gold_uri = paths.gold(table.mart)
    if io.list_files(spark, gold_uri):
        stats = _mart_stats(io.read_parquet(spark, gold_uri).select(*table.select_columns()), table)
    else:
        stats = {"row_count": 0, "min_date": None, "max_date": None, "top_org_id": None}
    with open_session(target) as session:
        session.execute(
            f"INSERT INTO {METADATA_TABLE} (table_name, source_mart, row_count, min_date, max_date, top_org_id, "
            "run_id, loaded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (table.name, table.mart, stats["row_count"], stats["min_date"], stats["max_date"], stats["top_org_id"],
             run_id, datetime.now(timezone.utc)),
        )
    return stats


def _mart_stats(served: DataFrame, table: ServingTable) -> dict:
    measure = F.col(table.top_org_measure) if table.top_org_measure else F.lit(None).cast("double")
    per_org = served.groupBy(F.col("org_id") if "org_id" in table.column_names else F.lit(None).alias("org_id")).agg(
        F.count("*").alias("rows"), F.min(table.date_column).alias("first"), F.max(table.date_column).alias("last"),
        F.sum(measure).alias("total"))
    # max of (total, org_id): the org with the highest total (ties: the greater org_id); null without a measure.
    leader = F.max(F.when(F.col("total").isNotNull(), F.struct("total", "org_id")))
    return per_org.agg(F.sum("rows").alias("row_count"), F.min("first").alias("min_date"),
                       F.max("last").alias("max_date"), leader["org_id"].alias("top_org_id")).first().asDict()


def reset_table(spark: SparkSession, paths: LakePaths, table: ServingTable, target: CassandraTarget) -> None:
    """Empty the Cassandra table (when it has a row) and forget what was loaded (checkpoint and key mirror)."""
    name = check_name(table.name)
    with open_session(target) as session:
        if session.execute(f"SELECT * FROM {name} LIMIT 1").one() is not None:
            session.execute(f"TRUNCATE {name}", timeout=DDL_TIMEOUT_S)
    io.delete(spark, checkpoint_uri(paths, table, target))
    io.delete(spark, mirror_uri(paths, table, target))
    io.delete(spark, f"{mirror_uri(paths, table, target)}.partitions.json")


def run(spark: SparkSession, paths: LakePaths, run_id: str, target: str = "local", settings: Settings | None = None,
        keyspace: str | None = None, tables: list[str] | None = None, concurrency: int = DEFAULT_CONCURRENCY,
        full_refresh: bool = False, parallel_tables: int = PARALLEL_TABLES, **_) -> StageReport:
    """Apply the CQL model and load every Gold mart (or `tables`) into Cassandra."""
    selected = [serving_table(name) for name in tables] if tables else list(SERVING_TABLES)
    require_gold(spark, paths, selected)  # before the keyspace and its tables are created
    cassandra = target_from_settings(settings or Settings.load(), target, keyspace)
    applied = apply_schema(cassandra)
    ship_bundle(spark, cassandra)
    report = StageReport("serving", run_id, extra={"target": cassandra.endpoint, "keyspace": cassandra.keyspace,
                                                   "tables_applied": applied, "parallel_tables": parallel_tables})

    # A table this lake has no checkpoint for starts empty: rows loaded by anything else (another
    # lake, a deleted checkpoint) are unknown to this lake's key mirror and could never be deleted.
    loaded_before = {table.name: io.exists(spark, checkpoint_uri(paths, table, cassandra)) for table in SERVING_TABLES}
    mine = Claim(lake_id(spark, paths), paths.lake_root, run_id, datetime.now(timezone.utc))
    with open_session(cassandra) as session:
        loaded = any(loaded_before.values()) and not full_refresh
        claim = check_claim(session, cassandra, mine, f"this lake ({paths.lake_root}) loaded it before" if loaded else None)
        if claim != "kept":  # the defaults of the tables that go with the old content
            session.execute(f"TRUNCATE {METADATA_TABLE}", timeout=DDL_TIMEOUT_S)
    report.extra["keyspace_claim"] = claim

    def load(table: ServingTable) -> TableCounts:
        # "claimed": no lake's claim, so the keyspace was dropped and re-created (or predates claims)
        # under this lake's checkpoints, which would then load nothing: every table reloads in full.
        if full_refresh or claim != "kept" or not loaded_before[table.name]:
            reset_table(spark, paths, table, cassandra)
        return load_table(spark, paths, table, cassandra, run_id, concurrency)

    # Tables share nothing (own checkpoint, mirror and Cassandra table): overlapping them hides the
    # per-query start-up latency. Every load finishes before the first failure is raised.
    with ThreadPoolExecutor(max_workers=max(1, min(parallel_tables, len(selected)))) as pool:
        futures = [pool.submit(load, table) for table in selected]
    first_failure = next((error for error in (f.exception() for f in futures) if error is not None), None)
    if first_failure is not None:
        raise first_failure
    for future in futures:
        counts = report.add(future.result())
        log.info("serving %s: %s rows in, %s upserted, %s stale deleted", counts.table, counts.rows_in,
                 counts.rows_out, counts.details["stale_rows_deleted"])
    return report
