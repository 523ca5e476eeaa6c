"""Driver-side upserts of live rows into Cassandra, retried with backoff until they succeed.

A live micro-batch changes a few hundred rows: one driver session is faster than Spark
tasks that each open a Cluster. The rows are full values, so an upsert repeated after a
failure or a crash can never double anything. While Cassandra is unreachable the batch
waits here (so neither Bronze's live marker nor Spark's offsets are committed), says so,
and goes on as soon as the node answers again, or gives up when asked to stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from lakehouse_utils.live.metrics import live_columns, upsert_cql
from lakehouse_utils.serving.connection import (
    CassandraError,
    CassandraTarget,
    KeyspaceMissingError,
    open_session,
    plain_value,
)
from lakehouse_utils.serving.model import METADATA_TABLE, serving_table
from lakehouse_utils.serving.writer import execute_with_retries, partition_units, prepare

# Key width of the partition key of both live tables: (org_id, usage_month).
PARTITION_KEY_WIDTH = 2
CONCURRENCY = 32
FIRST_BACKOFF_S, MAX_BACKOFF_S = 1.0, 15.0


class LiveStopped(RuntimeError):
    """Asked to stop while Cassandra was unreachable: the batch is not committed and will be replayed."""


class LiveKeyspaceGone(RuntimeError):
    """The keyspace (or a table of it) was dropped while `live` ran: waiting for it would never end."""


# What Cassandra answers when a write names a keyspace or table that no longer exists (the node is up).
_GONE = ("does not exist", "unconfigured table")


def _schema_gone(error: Exception) -> bool:
    """Cassandra's "Keyspace ... does not exist" / "unconfigured table": raw from the driver (a prepare or a
    metadata read after a reconnect) or inside our write error, which names the driver's class."""
    from cassandra import InvalidRequest

    text = str(error)
    invalid = isinstance(error, InvalidRequest) or "InvalidRequest" in text
    return isinstance(error, KeyspaceMissingError) or (invalid and any(words in text for words in _GONE))


class LiveUpserter:
    """Holds one session to the target; `upsert` returns only when every row is acknowledged."""

    def __init__(self, target: CassandraTarget, stop: threading.Event, say: Callable[[str], None] = print) -> None:
        self.target, self.stop, self.say = target, stop, say
        self._context = None
        self._session = None
        self._prepared: dict[str, object] = {}
        self.retries = 0

    def _connect(self):
        if self._session is None:
            context = open_session(self.target)
            self._session = context.__enter__()
            self._context = context
            self._prepared = {}
        return self._session

    def close(self) -> None:
        if self._context is not None:
            try:
                self._context.__exit__(None, None, None)
            finally:
                self._context, self._session, self._prepared = None, None, {}

    def _write(self, rows: dict[str, list[tuple]]) -> int:
        session = self._connect()
        written = 0
        for table, table_rows in rows.items():
            if not table_rows:
                continue
            if table not in self._prepared:
                self._prepared[table] = prepare(session, upsert_cql(table), self.target)
            ordered = sorted(table_rows, key=lambda row: row[:PARTITION_KEY_WIDTH])
            units = list(partition_units(iter(ordered), PARTITION_KEY_WIDTH))
            written += execute_with_retries(session, self._prepared[table], units, CONCURRENCY, table, max_attempts=2,
                                            target=self.target)
            self._extend_date_range(session, table, table_rows)
        return written

    def _extend_date_range(self, session, table: str, rows: list[tuple]) -> None:
        """A day the batch layer has not served yet widens the table's `serving_metadata` range, so the queries'
        default window ("the latest 7 days") includes what `live` just served. Only a table the serving stage
        loaded has a row to widen (its leading org comes from there); `live` holds the lake lock, so nothing
        else writes the row meanwhile."""
        position = live_columns(serving_table(table)).index("usage_date")
        first, last = min(row[position] for row in rows), max(row[position] for row in rows)
        found = session.execute(f"SELECT min_date, max_date FROM {METADATA_TABLE} WHERE table_name = %s",
                                (table,)).one()
        if found is None or found.min_date is None or found.max_date is None:
            return
        known_first, known_last = plain_value(found.min_date), plain_value(found.max_date)
        if first < known_first or last > known_last:
            session.execute(f"UPDATE {METADATA_TABLE} SET min_date = %s, max_date = %s WHERE table_name = %s",
                            (min(first, known_first), max(last, known_last), table))

    def upsert(self, rows: dict[str, list[tuple]], batch_id: int | None = None) -> int:
        """Write every row; on a failure reconnect and retry with exponential backoff (1 s .. 15 s)."""
        delay, attempt = FIRST_BACKOFF_S, 1
        while True:
            try:
                return self._write(rows)
            except Exception as error:  # noqa: BLE001 - driver errors (NoHostAvailable, timeouts) and ours
                self.close()
                reason = str(error) if isinstance(error, CassandraError) else f"{type(error).__name__}: {error}"
                what = "catch-up" if batch_id is None else f"batch {batch_id}"
                if _schema_gone(error):
                    raise LiveKeyspaceGone(
                        f"keyspace {self.target.keyspace} on {self.target.endpoint} (or one of its tables) was dropped "
                        f"while `live` ran; {what} is not committed. Run `live` again: it creates what is missing and, "
                        "finding it empty, sends every Bronze batch again") from None
                if self.stop.is_set():
                    raise LiveStopped(f"stopped while Cassandra was unreachable; {what} is not committed and "
                                      "will be replayed by the next `live` run") from None
                self.say(f"Cassandra unavailable ({reason[:300]}); {what}: nothing is committed until its "
                         f"upserts succeed; retry {attempt} in {delay:.0f} s")
                self.retries += 1
                self.stop.wait(delay)
                delay, attempt = min(delay * 2, MAX_BACKOFF_S), attempt + 1
