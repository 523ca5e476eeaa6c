"""What the live layer remembers: every valid event so far (narrow rows), and which batches Cassandra has.

The events are rebuilt from Bronze when `live` starts (the committed batches only: files a
crashed attempt left behind are not events yet) and then grow by each micro-batch's new
Bronze rows. They are held in Spark memory, truncated with `localCheckpoint`, so that a
day's figures are always recomputed from all of its events: full values, never increments.
A marker per batch (`<lake>/_state/live/<target>/commits/`) records that the batch's rows
reached Cassandra; a Bronze batch without one is caught up at the next start.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.bronze.events_parsing import BRONZE_EVENTS_SCHEMA
from lakehouse_utils.live.metrics import DAILY_KEY, live_events
from lakehouse_utils.paths import LakePaths, join

# Old checkpointed states are freed by Spark's ContextCleaner once the JVM collects them;
# a driver GC every this many batches keeps a long run's memory flat.
GC_EVERY_BATCHES = 10


class LiveEvents:
    """Valid live events (metrics.STATE_COLUMNS), in Spark memory."""

    def __init__(self, spark: SparkSession, references: dict[str, DataFrame]) -> None:
        self.spark, self.references = spark, references
        self.frame: DataFrame | None = None
        self._added = 0

    def rebuild(self, bronze_uri: str, committed_batches: set[int]) -> int:
        """Every valid event of the committed Bronze batches; returns how many."""
        if io.exists(self.spark, bronze_uri) and committed_batches:
            bronze = self.spark.read.schema(BRONZE_EVENTS_SCHEMA).parquet(bronze_uri)
            bronze = bronze.where(F.col("batch_id").isin(sorted(committed_batches)))
        else:
            bronze = self.spark.createDataFrame([], BRONZE_EVENTS_SCHEMA)
        self.frame = self._settle(live_events(bronze, self.references))
        return self.frame.count()

    def add(self, bronze_rows: DataFrame) -> None:
        """Add the valid events of new Bronze rows (the rules run once, here)."""
        self.frame = self._settle(self.frame.unionByName(live_events(bronze_rows, self.references)))
        self._added += 1
        if self._added % GC_EVERY_BATCHES == 0:
            self.spark.sparkContext._jvm.System.gc()

    def _settle(self, frame: DataFrame) -> DataFrame:
        """Materialise `frame` in a fixed number of partitions (a union adds the batch's partitions to the
        old ones: left as it is, every later job over the events would run one more task per batch)."""
        return frame.coalesce(self.spark.sparkContext.defaultParallelism).localCheckpoint(eager=True)

    def keys_of(self, batch_ids: set[int]) -> DataFrame:
        """The (org, date, service) keys the events of these Bronze batches touch."""
        return self.frame.where(F.col("batch_id").isin(sorted(batch_ids))).select(*DAILY_KEY).distinct()


class LiveMarkers:
    """One small JSON per Bronze batch whose rows Cassandra acknowledged, per target and query token."""

    def __init__(self, spark: SparkSession, paths: LakePaths, target_slug: str) -> None:
        self.spark = spark
        self.folder = join(paths.state("live"), target_slug, "commits")

    def uri(self, token: str, batch_id: int) -> str:
        return join(self.folder, f"{token}-{batch_id:08d}.json")

    def done(self, token: str) -> set[int]:
        prefix = f"{token}-"
        names = [entry.path.rsplit("/", 1)[-1] for entry in io.list_files(self.spark, self.folder)]
        return {int(name[len(prefix):-5]) for name in names if name.startswith(prefix) and name.endswith(".json")}

    def write(self, token: str, batch_id: int, record: dict) -> None:
        io.write_json(self.spark, self.uri(token, batch_id), record)

    def records(self) -> list[dict]:
        entries = [e for e in io.list_files(self.spark, self.folder) if e.path.endswith(".json")]
        return [record for record in (io.read_json(self.spark, e.path) for e in entries) if record]
