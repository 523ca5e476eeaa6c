"""First-arrival dedupe of the event stream in Spark's state store, one key per event_id.

`applyInPandasWithState` keeps, per event_id, the content hash of its first arrival in
the RocksDB state store of the checkpoint. A micro-batch therefore looks up only the ids
it carries: its cost follows the batch, not Bronze. Every input line comes out once,
with `_outcome` (new / duplicate / conflicting_duplicate, or the line kind),
`_known_before` (the id was in an earlier batch) and `_first_file` (the file of the
reference arrival inside this batch). An id is forgotten `DEDUPE_HORIZON` after its last
arrival (a processing-time timeout). See docs/decisions/040-streaming-late-data.md (047).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from lakehouse_utils.bronze.events_parsing import KIND_EVENT

NEW, DUPLICATE, CONFLICT = "new", "duplicate", "conflicting_duplicate"
# Arrival order: the file source's own order (modification time, then name), then the line.
ARRIVAL_ORDER = ("file_modification_time", "source_file", "line_number")
# How long an event_id is remembered after its last arrival (ADR 047): the contract's 60-day
# event window plus 30 days for a re-sent file. A replay older than this becomes a new Bronze
# row again, and Silver's `event_id_unique` rule quarantines the second copy.
DEDUPE_HORIZON = timedelta(days=90)
HORIZON_MS = int(DEDUPE_HORIZON.total_seconds() * 1000)
STATE_SCHEMA = "content_hash string"
DEDUPE_KEY = "_dedupe_key"
# Lines without an id never touch the state: they are grouped by file under a key no id can take.
_UNKEYED_PREFIX = "\u0000"
STATE_STORE_CONF = {
    "spark.sql.streaming.stateStore.providerClass":
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    # Each batch uploads only the keys it changed, not a snapshot of the whole store.
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    # Timeouts are checked when data arrives: no empty micro-batch just to expire ids.
    "spark.sql.streaming.noDataMicroBatches.enabled": "false",
}


def has_event_id() -> Column:
    return F.coalesce(F.col("event_id") != F.lit(""), F.lit(False))


def dedupe_key() -> Column:
    keyed = (F.col("line_kind") == KIND_EVENT) & has_event_id()
    return F.when(keyed, F.col("event_id")).otherwise(F.concat(F.lit(_UNKEYED_PREFIX), F.col("source_file")))


def output_schema(keyed: DataFrame) -> T.StructType:
    """The input columns (the key included: no per-key column selection) and the three outcome columns."""
    extra = [T.StructField("_outcome", T.StringType()), T.StructField("_known_before", T.BooleanType()),
             T.StructField("_first_file", T.StringType())]
    return T.StructType(keyed.schema.fields + extra)


def _classify(key: tuple, frames: Iterator[pd.DataFrame], state: GroupState) -> pd.DataFrame | None:
    """The rows of one key with `_outcome`, `_known_before`, `_first_file` appended (in that order)."""
    if state.hasTimedOut:  # the horizon passed since this id's last arrival: forget it
        state.remove()
        return None
    chunks = list(frames)
    rows = chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)
    if key[0].startswith(_UNKEYED_PREFIX):
        return rows.assign(_outcome=rows["line_kind"].where(rows["line_kind"] != KIND_EVENT, NEW),
                           _known_before=False, _first_file=None)
    known = state.exists
    if len(rows) == 1 and not known:  # the usual case: an id seen for the first time, once
        state.update((rows["content_hash"].iat[0],))
        state.setTimeoutDuration(HORIZON_MS)
        return rows.assign(_outcome=NEW, _known_before=False, _first_file=rows["source_file"].iat[0])
    if len(rows) > 1:
        rows = rows.sort_values(list(ARRIVAL_ORDER), kind="stable", ignore_index=True)
    reference = state.get[0] if known else rows["content_hash"].iat[0]
    outcome = (rows["content_hash"] == reference).map({True: DUPLICATE, False: CONFLICT})
    if not known:
        outcome.iat[0] = NEW
        state.update((reference,))
    state.setTimeoutDuration(HORIZON_MS)
    return rows.assign(_outcome=outcome, _known_before=known, _first_file=None if known else rows["source_file"].iat[0])


# Numbers cross into pandas as text: pandas turns a NaN into a null and a long with nulls into a
# float, while Spark's double <-> string casts are exact (NaN and Infinity included).
_AS_TEXT = (T.DoubleType, T.FloatType, T.LongType, T.IntegerType)


def _numbers_as_text(parsed: DataFrame) -> tuple[DataFrame, dict[str, T.DataType]]:
    numeric = {f.name: f.dataType for f in parsed.schema.fields
               if isinstance(f.dataType, _AS_TEXT) and f.name not in ARRIVAL_ORDER}
    return parsed.withColumns({name: F.col(name).cast(T.StringType()) for name in numeric}), numeric


def classify_stream(parsed: DataFrame) -> DataFrame:
    """Every parsed line with its outcome, deduplicated against the state of earlier batches."""
    texted, numeric = _numbers_as_text(parsed)
    keyed = texted.withColumn(DEDUPE_KEY, dedupe_key())
    schema = output_schema(keyed)

    def classify(key, frames, state):
        out = _classify(key, frames, state)
        if out is not None:
            yield out

    classified = keyed.groupBy(DEDUPE_KEY).applyInPandasWithState(
        classify, schema, STATE_SCHEMA, "append", GroupStateTimeout.ProcessingTimeTimeout)
    return classified.withColumns({name: F.col(name).cast(dtype) for name, dtype in numeric.items()}).drop(DEDUPE_KEY)
