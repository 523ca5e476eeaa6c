"""Small-file compaction of the streaming tables, safe to interrupt and to re-run.

Each micro-batch adds at most one file per partition, so many small triggers leave many
small files. After the query stops, every partition holding more than
`MAX_FILES_PER_PARTITION` files is rewritten as one file. The rewrite is staged, checked
(same row count) and recorded in a plan; the swap moves the new file in *before* deleting
the old ones, and an interrupted swap is rolled forward by the next run, so a crash can
never lose rows (at worst readers see a partition twice until the next run).
"""

from __future__ import annotations

from collections import defaultdict

from pyspark.sql import SparkSession
from pyspark.sql import types as T

from lakehouse_utils import io
from lakehouse_utils.bronze.stream_files import (
    COMPACTION_PLAN,
    MAX_FILES_PER_PARTITION,
    batch_of,
    new_compacted_name,
    staging_uri,
)
from lakehouse_utils.paths import join, relative_to


def roll_forward(spark: SparkSession, checkpoint: str) -> int:
    """Finish a swap that a crash interrupted; returns how many partitions it completed."""
    plan_uri = join(checkpoint, COMPACTION_PLAN)
    plan = io.read_json(spark, plan_uri)
    if not plan:
        return 0
    for entry in plan["entries"]:
        if not io.exists(spark, entry["new"]) and io.exists(spark, entry["staged"]):
            io.rename(spark, entry["staged"], entry["new"])
        if io.exists(spark, entry["new"]):  # never delete the old files before the new one is in place
            for old in entry["old"]:
                io.delete(spark, old)
    io.delete(spark, plan["staging"])
    io.delete(spark, plan_uri)
    return len(plan["entries"])


def _files_by_directory(spark: SparkSession, table: str) -> dict[str, list[str]]:
    directories: dict[str, list[str]] = defaultdict(list)
    for entry in io.list_files(spark, table):
        directories[entry.path.rpartition("/")[0]].append(entry.path)
    return directories


def _is_compactable(path: str, token: str, committed: set[int]) -> bool:
    """Files of a batch that is not committed yet belong to a crashed attempt: leave them to its cleanup."""
    tagged = batch_of(path)
    return tagged is None or tagged[0] != token or tagged[1] in committed


def compact_table(
    spark: SparkSession,
    table: str,
    schema: T.StructType,
    checkpoint: str,
    token: str,
    committed: set[int],
    partition_column: str | None = None,
) -> list[dict]:
    """Rewrite every partition of `table` with too many files as one file; returns what was compacted."""
    roll_forward(spark, checkpoint)
    targets = {
        directory: [f for f in files if _is_compactable(f, token, committed)]
        for directory, files in _files_by_directory(spark, table).items()
        if len(files) > MAX_FILES_PER_PARTITION
    }
    targets = {directory: files for directory, files in targets.items() if len(files) > 1}
    if not targets:
        return []
    old_files = [f for files in targets.values() for f in files]
    staging = staging_uri(checkpoint, "compaction")
    io.delete(spark, staging)
    source = spark.read.schema(schema).option("basePath", table).parquet(*old_files)
    if partition_column:
        source.repartition(partition_column).write.partitionBy(partition_column).parquet(staging)
    else:
        source.coalesce(1).write.parquet(staging)
    _check_same_rows(spark, schema, old_files, table, staging)
    entries = _plan_entries(spark, table, staging, targets)
    plan = {"table": table, "staging": staging, "entries": entries}
    io.write_json(spark, join(checkpoint, COMPACTION_PLAN), plan)
    roll_forward(spark, checkpoint)
    return [{"partition": e["new"].rpartition("/")[0], "files_before": len(e["old"])} for e in entries]


def _check_same_rows(spark: SparkSession, schema: T.StructType, old_files: list[str], table: str, staging: str) -> None:
    before = spark.read.schema(schema).option("basePath", table).parquet(*old_files).count()
    after = spark.read.schema(schema).parquet(staging).count()
    if before != after:
        raise RuntimeError(f"compaction of {table} produced {after} rows instead of {before}; "
                           f"nothing was swapped, the staged copy is in {staging}")


def _plan_entries(spark: SparkSession, table: str, staging: str, targets: dict[str, list[str]]) -> list[dict]:
    """Pair each staged file with the partition folder it replaces."""
    staged_by_dir = _files_by_directory(spark, staging)
    table_root, staging_root = table.rstrip("/"), staging.rstrip("/")
    entries = []
    for directory, old in sorted(targets.items()):
        relative = relative_to(table_root, directory)
        staged_dir = next(d for d in staged_by_dir if relative_to(staging_root, d) == relative)
        (staged,) = staged_by_dir[staged_dir]  # one file per partition: the write repartitioned by it
        entries.append({"staged": staged, "new": join(directory, new_compacted_name()), "old": old})
    return entries

