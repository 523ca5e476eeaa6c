"""Small-file compaction of the streaming tables, while the stream runs; safe to interrupt.

Each micro-batch adds a file (at most one per core, one for a small batch) to the partition it writes (Bronze: its ingest date;
quarantine: the table root). As soon as a partition holds more than
`MAX_FILES_PER_PARTITION` small files, its smallest files are merged into one: the
smallest suffix (by size) whose total is at most the next larger file, so files form
tiers and a row is rewritten a few times (about log(batches)), not once per merge of
the whole partition. Files of `FULL_FILE_BYTES` or more are full: never merged again.
The rewrite is staged, checked (same row count) and recorded in a plan; the swap moves
the new file in *before* deleting the old ones, and an interrupted swap is rolled
forward by the next run, so a crash can never lose rows (at worst readers see some rows
twice until the next run). ADR 048.
"""

from __future__ import annotations

from collections import defaultdict

from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils import io
from lakehouse_utils.bronze.events_parsing import BRONZE_EVENTS_SCHEMA, BRONZE_PARTITION, RAW_QUARANTINE_SCHEMA
from lakehouse_utils.bronze.stream_files import (
    COMPACTION_PLAN,
    MAX_FILES_PER_PARTITION,
    StreamTargets,
    batch_of,
    new_compacted_name,
    staging_uri,
)
from lakehouse_utils.paths import join, relative_to

FULL_FILE_BYTES = 128 * 1024 * 1024  # Spark's default split size: a bigger file gains nothing from merging
IN_RUN_KEEP = 2  # small files a merge during the run leaves (the limit stays MAX_FILES_PER_PARTITION)


def files_to_merge(files: list[io.FileEntry], max_files: int = MAX_FILES_PER_PARTITION,
                   keep: int | None = None) -> list[str]:
    """The files of one partition to merge into one; none while it holds at most `max_files` small files.

    A merge leaves at most `keep` small files (default `max_files`): a lower value leaves room
    for the next batches, so a stream merges every few batches instead of after each one.
    """
    small = sorted((f for f in files if f.size < FULL_FILE_BYTES), key=lambda f: (-f.size, f.path))
    if len(small) <= max_files:
        return []
    fewest = len(small) - (keep or max_files) + 1  # merging fewer would leave too many files
    for count in range(fewest, len(small)):
        suffix = small[-count:]
        if sum(f.size for f in suffix) <= small[-count - 1].size:
            return [f.path for f in suffix]
    return [f.path for f in small]


def compact_after_batch(spark: SparkSession, targets: StreamTargets, bronze_partition: str) -> list[dict]:
    """Merge small files where a just-committed batch wrote: its Bronze partition and the quarantine root.

    Only those folders are listed, so the cost does not grow with the number of partitions;
    every file in them belongs to a committed batch (a crashed attempt's files were removed
    before its batch was redone).
    """
    done = []
    for table, folder, schema, partition in (
        (targets.bronze, join(targets.bronze, bronze_partition), BRONZE_EVENTS_SCHEMA, BRONZE_PARTITION),
        (targets.quarantine, targets.quarantine, RAW_QUARANTINE_SCHEMA, None),
    ):
        # both folders are leaves; one merge every ~3 batches (each merge is a few Spark jobs)
        merge = files_to_merge(io.list_files(spark, folder), keep=IN_RUN_KEEP)
        if merge:
            done += _rewrite(spark, table, schema, targets.checkpoint, {merge[0].rpartition("/")[0]: merge}, partition)
    return done


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


def _files_by_directory(spark: SparkSession, table: str, sizes: bool = False) -> dict[str, list]:
    directories: dict[str, list] = defaultdict(list)
    for entry in io.list_files(spark, table):
        directories[entry.path.rpartition("/")[0]].append(entry if sizes else entry.path)
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
    """Merge small files in every partition of `table` that has too many; returns what was compacted."""
    roll_forward(spark, checkpoint)
    targets = {
        directory: files_to_merge([f for f in files if _is_compactable(f.path, token, committed)])
        for directory, files in _files_by_directory(spark, table, sizes=True).items()
    }
    targets = {directory: files for directory, files in targets.items() if len(files) > 1}
    if not targets:
        return []
    return _rewrite(spark, table, schema, checkpoint, targets, partition_column)


def _rewrite(spark: SparkSession, table: str, schema: T.StructType, checkpoint: str, targets: dict[str, list[str]],
             partition_column: str | None) -> list[dict]:
    """Rewrite each group of files as one file in its folder: staged, checked, planned, swapped."""
    old_files = [f for files in targets.values() for f in files]
    staging = staging_uri(checkpoint, "compaction")
    io.delete(spark, staging)
    observation = Observation("compaction")
    source = spark.read.schema(schema).option("basePath", table).parquet(*old_files)
    source = source.observe(observation, F.count(F.lit(1)).alias("rows"))
    sort = ["event_date"] if "event_date" in schema.fieldNames() else []
    if partition_column and len(targets) > 1:
        (source.repartition(partition_column).sortWithinPartitions(*sort)
         .write.partitionBy(partition_column).parquet(staging))
    elif partition_column:  # one folder (the in-run case): one task, no shuffle
        source.coalesce(1).sortWithinPartitions(*sort).write.partitionBy(partition_column).parquet(staging)
    else:
        source.coalesce(1).write.parquet(staging)
    _check_same_rows(spark, schema, observation.get["rows"], table, staging)
    entries = _plan_entries(spark, table, staging, targets)
    plan = {"table": table, "staging": staging, "entries": entries}
    io.write_json(spark, join(checkpoint, COMPACTION_PLAN), plan)
    roll_forward(spark, checkpoint)
    return [{"partition": e["new"].rpartition("/")[0], "files_before": len(e["old"])} for e in entries]


def _check_same_rows(spark: SparkSession, schema: T.StructType, before: int, table: str, staging: str) -> None:
    """The staged copy, read back from disk, holds the rows read from the old files (counted while writing)."""
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

