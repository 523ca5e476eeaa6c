"""First-arrival dedupe of the event stream in Spark's own state store, with no Python per key.

The streaming query is one union of two branches, each a source of its own (ADR 045, 090.11):
- every parsed line, tagged `line`;
- key markers, tagged `marker`: two per keyed event line, `i|<event_id>` and
  `p|<event_id>|<content_hash>` (one column, the key), passed through `dropDuplicates` on the
  RocksDB state store.
  A marker comes out of a micro-batch only the first time Spark sees its key, so the
  batch learns which ids (and which id/content pairs) are new without reading Bronze.

The key branch carries no event-time column: nothing is evicted and no late row is dropped,
every id is remembered for ever (the horizon is unbounded). `classify_batch` turns the
union's micro-batch into the lines with `_outcome`, `_known_before` and `_first_file`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from lakehouse_utils.bronze.events_parsing import CONTENT_HASH_CHARS, KIND_EVENT

NEW, DUPLICATE, CONFLICT = "new", "duplicate", "conflicting_duplicate"
# Arrival order: the file source's own order (modification time, then name), then the line.
ARRIVAL_ORDER = ("file_modification_time", "source_file", "line_number")
ROW_KIND, DEDUPE_KEY = "_row_kind", "_dedupe_key"
LINE, MARKER, ID_MARKER, PAIR_MARKER = "line", "marker", "i", "p"
# The state store's partition count is fixed by the checkpoint for ever: every micro-batch
# runs this many state tasks. Marker rows are tiny; 2 matches the 2-core machine.
STATE_PARTITIONS = 2
STATE_STORE_CONF = {
    "spark.sql.streaming.stateStore.providerClass":
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider",
    # Each batch uploads only the keys it changed, not a snapshot of the whole store.
    "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
    # Counting the store's rows costs a RocksDB read before every write of a new key; the count
    # only feeds `numRowsTotal` in the query progress, which nothing here reads.
    "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
    # Nothing expires: an empty micro-batch after each data batch would only cost time.
    "spark.sql.streaming.noDataMicroBatches.enabled": "false",
    # Spark 4.1 writes a checksum file beside every state file. With the default checkpoint format
    # (version 1) a retried batch reuses its file names, so a checksum left by the failed attempt can
    # fail the restart; upstream turns checksums off for format 1 (SPARK-56461). Also ~0.1 s a batch.
    "spark.sql.streaming.checkpoint.fileChecksum.enabled": "false",
}
# Read by the query when it starts (the state store's settings and the partition count are also kept in
# its checkpoint). The micro-batch is cached once and read back 2-3 times, so compressing the cache costs
# more CPU than it saves (measured: -35 % CPU to fill it); local sessions have this already, a cluster's not.
QUERY_CONF = {**STATE_STORE_CONF, "spark.sql.shuffle.partitions": str(STATE_PARTITIONS),
              "spark.sql.inMemoryColumnarStorage.compressed": "false"}


def has_event_id() -> Column:
    return F.coalesce(F.col("event_id") != F.lit(""), F.lit(False))


def is_keyed_event() -> Column:
    return (F.col("line_kind") == KIND_EVENT) & has_event_id()


def with_markers(parsed: DataFrame, lines: DataFrame) -> DataFrame:
    """`lines` (the parsed lines, maybe watermarked) with the state-deduplicated key markers of `parsed`."""
    # Both markers of a line come from one projection: every branch of a streaming union is a
    # source of its own that lists, reads and parses the files again (ADR 090.11). A marker is its
    # key alone (id and hash are read back from it): the shuffle into the state store moves half the bytes.
    both = F.array(F.concat(F.lit(ID_MARKER + "|"), "event_id"),
                   F.concat_ws("|", F.lit(PAIR_MARKER), "event_id", "content_hash"))
    keyed = parsed.where(is_keyed_event()).select(F.explode(both).alias(DEDUPE_KEY))
    markers = keyed.dropDuplicates([DEDUPE_KEY]).withColumn(ROW_KIND, F.lit(MARKER))
    tagged = lines.withColumn(ROW_KIND, F.lit(LINE))
    return tagged.unionByName(markers, allowMissingColumns=True)


def lines_of(batch: DataFrame) -> DataFrame:
    return batch.where(F.col(ROW_KIND) == LINE).drop(ROW_KIND, DEDUPE_KEY)


def is_marker(kind: str) -> Column:
    return (F.col(ROW_KIND) == MARKER) & F.startswith(F.col(DEDUPE_KEY), F.lit(kind + "|"))


# A marker key starts with its kind and a separator (`i|`, `p|`); the id follows, 1-based.
_ID_START = len(ID_MARKER) + 2


def _new_ids(batch: DataFrame) -> DataFrame:
    """`event_id` of every `i|<id>` marker that came out of the state store (ids never seen before)."""
    key = F.col(DEDUPE_KEY)
    return batch.where(is_marker(ID_MARKER)).select(F.substring(key, F.lit(_ID_START), F.length(key)).alias("event_id"))


def _new_pairs(batch: DataFrame) -> DataFrame:
    """(event_id, content_hash) of every `p|<id>|<hash>` marker that came out; the hash's fixed length splits them."""
    key = F.col(DEDUPE_KEY)
    id_length = F.length(key) - (_ID_START + CONTENT_HASH_CHARS)
    return batch.where(is_marker(PAIR_MARKER)).select(F.substring(key, F.lit(_ID_START), id_length).alias("event_id"),
                                                      F.right(key, F.lit(CONTENT_HASH_CHARS)).alias("content_hash"))


_FIRST_TYPE = "struct<file_modification_time:timestamp,source_file:string,line_number:bigint,content_hash:string>"


def id_lookup(batch: DataFrame) -> DataFrame:
    """Per event_id of the batch that needs a look (seen in an earlier batch, or repeated in this one).

    `_id_new`: the id's `i|` marker came out (never seen before); `_first`: its first arrival
    in the batch (the arrival-order columns and the hash). Unrepeated new ids, the usual
    case, are left out, so the result is small and is broadcast back onto the lines.
    """
    arrival = F.struct(*ARRIVAL_ORDER, "content_hash")
    keyed = lines_of(batch).where(is_keyed_event()).select("event_id", arrival.alias("_arrival"),
                                                           F.lit(False).alias("_is_marker"))
    new_ids = _new_ids(batch).select("event_id", F.lit(None).cast(keyed.schema["_arrival"].dataType)
                                                .alias("_arrival"), F.lit(True).alias("_is_marker"))
    grouped = keyed.unionByName(new_ids).groupBy("event_id").agg(
        F.max("_is_marker").alias("_id_new"), F.count("_arrival").alias("_copies"),
        F.min("_arrival").alias("_first"))  # structs compare field by field: the first arrival
    return grouped.where(~F.col("_id_new") | (F.col("_copies") > 1)).select("event_id", "_id_new", "_first")


def new_pairs_of_known_ids(batch: DataFrame, lookup: DataFrame) -> DataFrame:
    """(event_id, content_hash) pairs never seen before, for ids seen in an earlier batch: conflicts with Bronze."""
    known = lookup.where(~F.col("_id_new")).select("event_id")
    pairs = _new_pairs(batch).join(known, on="event_id", how="left_semi")
    return pairs.withColumn("_pair_new", F.lit(True))


def classify(lines: DataFrame, lookup: DataFrame | None, new_pairs: DataFrame | None) -> DataFrame:
    """The lines with `_outcome`, `_known_before` and `_first_file` (`lookup`, `new_pairs`: see above; None: empty).

    An id seen before this batch is in Bronze already: a line with a content never seen for
    it is a conflict, one whose id/content pair was seen is a duplicate. A new id follows the
    batch's own arrival order: the first copy is new, a later one a duplicate when its hash
    is the first's, else a conflict. Events without an id are each new (Silver quarantines them).
    """
    if lookup is None:  # no id seen before, none repeated
        joined = lines.withColumns({"_id_new": F.lit(True), "_first": F.lit(None).cast(_FIRST_TYPE)})
    else:
        joined = lines.join(lookup, on="event_id", how="left")
    if new_pairs is None:  # no id seen before: no pair to look up
        joined = joined.withColumn("_pair_new", F.lit(None).cast("boolean"))
    else:
        joined = joined.join(new_pairs, on=["event_id", "content_hash"], how="left")
    known_before = F.coalesce(~F.col("_id_new"), F.lit(False))
    first_key = F.struct(*[F.col(f"_first.{name}").alias(name) for name in ARRIVAL_ORDER])
    is_first = F.col("_first").isNull() | (F.struct(*ARRIVAL_ORDER) == first_key)
    outcome = (
        F.when(F.col("line_kind") != KIND_EVENT, F.col("line_kind"))
        .when(~has_event_id(), F.lit(NEW))
        .when(known_before, F.when(F.col("_pair_new"), F.lit(CONFLICT)).otherwise(F.lit(DUPLICATE)))
        .when(is_first, F.lit(NEW))
        .when(F.col("content_hash") == F.col("_first.content_hash"), F.lit(DUPLICATE))
        .otherwise(F.lit(CONFLICT))
    )
    return joined.withColumns({
        "_outcome": outcome,
        "_known_before": known_before,
        "_first_file": F.when(~known_before, F.col("_first.source_file")),
    }).drop("_id_new", "_first", "_pair_new")


def start_query(spark, stream_writer):
    """Start `stream_writer` with `QUERY_CONF`, leaving the caller's session as it was.

    The query clones the session when it starts, so the state store and its partition
    count apply to the query only (later stages keep their own shuffle partitions).
    """
    before = {key: spark.conf.get(key, None) for key in QUERY_CONF}
    for key, value in QUERY_CONF.items():
        spark.conf.set(key, value)
    try:
        return stream_writer.start()
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
