"""File bookkeeping of the bronze stream: batch commits, watermark state, compaction.

A micro-batch becomes visible by moving its staged files into the table under names
that carry the query token and the batch id, and is then marked committed with
`<checkpoint>/bronze_commits/<batch_id>.json`. A batch re-invoked after a crash either
finds its marker (skip) or finds stray files with its tag (delete, redo).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from pyspark.sql import SparkSession

from lakehouse_utils import io
from lakehouse_utils.paths import join, relative_to

COMMITS_DIR, STATE_FILE = "bronze_commits", "bronze_state.json"
STAGING_DIR, COMPACTION_PLAN = "staging", "compaction_plan.json"
MAX_FILES_PER_PARTITION = 4
STATE_ENTRIES_KEPT = 50
_BATCH_FILE = re.compile(r"^part-(?P<token>[0-9a-f]{8})-b(?P<batch>\d{8})-")


@dataclass(frozen=True)
class StreamTargets:
    bronze: str
    quarantine: str
    checkpoint: str


def query_token(spark: SparkSession, checkpoint: str) -> str:
    """First 8 hex digits of the query id Spark keeps in `<checkpoint>/metadata`.

    The id survives restarts of the same checkpoint, so a re-invoked batch finds its own
    files; a fresh checkpoint gets a new id, so it never deletes files of an older one.
    """
    metadata = io.read_first_line(spark, join(checkpoint, "metadata"))
    if not metadata:
        raise RuntimeError(f"no query metadata in {checkpoint}; foreachBatch ran before Spark wrote the checkpoint")
    match = re.search(r'"id"\s*:\s*"([0-9a-f-]+)"', metadata)
    if not match:
        raise RuntimeError(f"cannot read the query id from {join(checkpoint, 'metadata')}: {metadata[:200]}")
    return match.group(1).replace("-", "")[:8]


def batch_tag(token: str, batch_id: int) -> str:
    return f"part-{token}-b{batch_id:08d}-"


def commit_uri(checkpoint: str, batch_id: int) -> str:
    return join(checkpoint, COMMITS_DIR, f"{batch_id:08d}.json")


def is_committed(spark: SparkSession, checkpoint: str, batch_id: int) -> bool:
    return io.exists(spark, commit_uri(checkpoint, batch_id))


def write_commit(spark: SparkSession, checkpoint: str, batch_id: int, record: dict) -> None:
    io.write_json(spark, commit_uri(checkpoint, batch_id), record)


def read_commits(spark: SparkSession, checkpoint: str) -> list[dict]:
    """Every committed batch's record, in batch order (the lossless history of the stream)."""
    entries = io.list_files(spark, join(checkpoint, COMMITS_DIR))
    records = [io.read_json(spark, entry.path) for entry in entries if entry.path.endswith(".json")]
    return sorted((r for r in records if r), key=lambda r: r["batch_id"])


def remove_batch_files(spark: SparkSession, tables: list[str], token: str, batch_id: int) -> int:
    """Delete files a crashed attempt of this batch left in the tables; returns how many."""
    tag = batch_tag(token, batch_id)
    # Globs, not a recursive listing: the table may hold thousands of files between compactions.
    patterns = [join(table, pattern) for table in tables for pattern in (f"{tag}*", f"*/{tag}*")]
    stray = [uri for pattern in patterns for uri in io.glob(spark, pattern)]
    for uri in stray:
        io.delete(spark, uri)
    return len(stray)


def publish_staged(spark: SparkSession, staging: str, table: str, tag: str) -> list[str]:
    """Move Spark's output files from staging into the table (same partition folders), renamed with the tag."""
    published = []
    base = staging.rstrip("/")
    for index, entry in enumerate(io.list_files(spark, base)):
        relative_dir = relative_to(base, entry.path).rpartition("/")[0]
        target_dir = join(table, relative_dir) if relative_dir else table
        target = join(target_dir, f"{tag}{index:05d}.snappy.parquet")
        io.rename(spark, entry.path, target)
        published.append(target)
    io.delete(spark, staging)
    return published


def previous_max_event_ts(spark: SparkSession, checkpoint: str, batch_id: int) -> str | None:
    """Max event time over batches before `batch_id` (ISO text), from the state keyed by batch id."""
    state = io.read_json(spark, join(checkpoint, STATE_FILE)) or {}
    earlier = [int(key) for key in state if int(key) < batch_id]
    return state[str(max(earlier))]["max_event_ts"] if earlier else None


def save_max_event_ts(
    spark: SparkSession, checkpoint: str, batch_id: int, max_event_ts: str | None, watermark: str | None
) -> None:
    uri = join(checkpoint, STATE_FILE)
    state = io.read_json(spark, uri) or {}
    state[str(batch_id)] = {"max_event_ts": max_event_ts, "watermark": watermark}
    kept = sorted(state, key=int)[-STATE_ENTRIES_KEPT:]
    io.write_json(spark, uri, {key: state[key] for key in kept})


def staging_uri(checkpoint: str, name: str) -> str:
    return join(checkpoint, STAGING_DIR, name)


def new_compacted_name() -> str:
    return f"part-compact-{uuid.uuid4().hex[:12]}.snappy.parquet"


def batch_of(file_uri: str) -> tuple[str, int] | None:
    """(token, batch id) of a batch file, None for compacted files."""
    match = _BATCH_FILE.match(file_uri.rsplit("/", 1)[-1])
    return (match.group("token"), int(match.group("batch"))) if match else None
