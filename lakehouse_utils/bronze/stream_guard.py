"""Refuse bad operations on the bronze stream before Spark starts (ADR 049).

The checkpoint and Bronze belong together: the checkpoint's file list and dedupe state
describe exactly what Bronze holds. `<checkpoint>/bronze_owner.json` records the stream
id and the landing folder; `<lake>/_state/bronze_usage_events/stream.json` records the
same id on the lake's side. Each mismatch stops the run with one paragraph that says what
is wrong and how to fix it; nothing is read or written.
"""

from __future__ import annotations

import uuid

from pyspark.sql import SparkSession

from lakehouse_utils import io
from lakehouse_utils.paths import join

OWNER_FILE, LAKE_STREAM_FILE = "bronze_owner.json", "stream.json"
# The shape of the streaming query a checkpoint was started with. Spark keeps one offset per
# source and state per operator, so a checkpoint only resumes the query shape that wrote it.
# 1 (no `layout` in the owner file): lines, id markers and pair markers, three sources.
# 2: lines and both markers from one projection, two sources (ADR 090.11).
CHECKPOINT_LAYOUT = 2


class StreamOperationError(RuntimeError):
    """A bad operation on the bronze stream (moved landing, lost or shared checkpoint); Bronze is untouched."""


class LandingMovedError(StreamOperationError):
    pass


class CheckpointMissingError(StreamOperationError):
    pass


class SharedCheckpointError(StreamOperationError):
    pass


class CheckpointLayoutError(StreamOperationError):
    pass


def _same(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _bronze_has_rows(spark: SparkSession, bronze: str) -> bool:
    return bool(io.glob(spark, join(bronze, "*", "*.parquet")) or io.glob(spark, join(bronze, "*.parquet")))


def check_stream(spark: SparkSession, checkpoint: str, bronze: str, landing: str, lake_state: str) -> str:
    """The stream id of this lake's checkpoint, created on the first run; raises on a bad operation."""
    owner = io.read_json(spark, join(checkpoint, OWNER_FILE))
    lake = io.read_json(spark, join(lake_state, LAKE_STREAM_FILE))
    started = io.exists(spark, join(checkpoint, "metadata"))
    if not started:
        if _bronze_has_rows(spark, bronze):
            raise CheckpointMissingError(
                f"bronze/usage_events at {bronze} holds events but the stream checkpoint {checkpoint} is missing; "
                "without it every landing file would be read again and Bronze would get duplicates, so nothing was "
                "read. Restore the checkpoint folder from a backup, or rebuild the stream: delete bronze/usage_events, "
                "quarantine/usage_events_raw and the checkpoint folder, then run bronze_stream again (Silver is then "
                "recomputed in full).")
        stream_id = uuid.uuid4().hex
        io.write_json(spark, join(checkpoint, OWNER_FILE), {"stream_id": stream_id, "landing": landing,
                                                            "bronze": bronze, "layout": CHECKPOINT_LAYOUT})
        io.write_json(spark, join(lake_state, LAKE_STREAM_FILE), {"stream_id": stream_id, "checkpoint": checkpoint})
        return stream_id
    if owner is None:
        raise SharedCheckpointError(
            f"the stream checkpoint {checkpoint} has no {OWNER_FILE}: it was written by an older version of "
            "bronze_stream (Bronze partitioned by event date) or by another query, so its state cannot be trusted. "
            "Rebuild the stream: delete bronze/usage_events, quarantine/usage_events_raw and the checkpoint folder, "
            "then run bronze_stream again.")
    if lake is None or lake.get("stream_id") != owner["stream_id"]:
        raise SharedCheckpointError(
            f"the stream checkpoint {checkpoint} belongs to another lake (stream {owner['stream_id']}, Bronze at "
            f"{owner.get('bronze')}), not to the Bronze at {bronze}; two lakes must not share a checkpoint, or each "
            "would skip files the other read. Give this lake its own checkpoint: remove or rename the shared folder "
            "here (the other lake keeps its copy) and, if this lake's Bronze is not empty, rebuild it too.")
    if not _same(owner["landing"], landing):
        raise LandingMovedError(
            f"the landing folder is {landing}, but the stream checkpoint {checkpoint} was started on "
            f"{owner['landing']}; the checkpoint lists files by path, so a moved or renamed folder would be read "
            "again from the start. Move the folder back (or point LANDING_DIR at it), or, to ingest from the new "
            "place, rebuild the stream: delete bronze/usage_events, quarantine/usage_events_raw and the checkpoint "
            "folder, then run bronze_stream again.")
    layout = owner.get("layout", 1)
    if layout != CHECKPOINT_LAYOUT:
        raise CheckpointLayoutError(
            f"the stream checkpoint {checkpoint} was written by {'an older' if layout < CHECKPOINT_LAYOUT else 'a newer'} "
            f"version of bronze_stream (query layout {layout}; this version runs layout {CHECKPOINT_LAYOUT}), and "
            "Spark can only resume a checkpoint with the query that wrote it, so nothing was read. Bronze and the "
            "checkpoint are both intact: run the version that wrote them, or rebuild the stream with this one: delete "
            "bronze/usage_events, quarantine/usage_events_raw and the checkpoint folder, then run bronze_stream again "
            "(Silver is then recomputed in full).")
    return owner["stream_id"]
