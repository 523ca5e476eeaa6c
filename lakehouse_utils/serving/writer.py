"""Executor-side writes: rows of one Cassandra partition as UNLOGGED batches, bounded retries.

`write_partition` runs inside `mapPartitions` on the executors: one Cluster per Spark
partition, rows sorted by partition key, grouped into single-partition batches
(one mutation each on the server) and sent with `execute_concurrent`. Only the
units that failed are retried, with exponential backoff; the statements are
idempotent upserts or deletes, so a retry can never duplicate.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from datetime import date

from lakehouse_utils.serving.connection import (
    CassandraTarget,
    CassandraUnavailableError,
    CassandraWriteError,
    open_session,
)

# One UNLOGGED batch holds rows of a single partition: at most BATCH_ROWS rows and about
# BATCH_BYTES of values, under Cassandra's default 5 KiB batch-size warning.
BATCH_ROWS = 20
BATCH_BYTES = 4000
# The writers receive a CQL date as its wire form: days from 1970-01-01 shifted by 2**31 (the driver's
# `SimpleDateType.EPOCH_OFFSET_DAYS`; see `serving.sync.with_cql_wire_dates`).
CQL_DATE_EPOCH_DAYS = 2**31
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _statement(prepared, unit: list[tuple]):
    """One row: the prepared statement. Several rows of one partition: an UNLOGGED batch (one mutation)."""
    from cassandra.query import BatchStatement, BatchType

    if len(unit) == 1:
        return prepared, unit[0]
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    for params in unit:
        batch.add(prepared, params)
    return batch, None


def describe_row(row: tuple, date_positions: tuple[int, ...] = ()) -> str:
    """A row as an error message quotes it, its dates (sent as wire numbers) shown as dates."""
    shown = list(row)
    for position in date_positions:
        if isinstance(shown[position], int):
            shown[position] = date.fromordinal(shown[position] - CQL_DATE_EPOCH_DAYS + _EPOCH_ORDINAL)
    return str(tuple(shown))[:300]


def execute_with_retries(session, prepared, units: list[list[tuple]], concurrency: int, table: str,
                         max_attempts: int = 5, base_delay_s: float = 0.2, date_positions: tuple[int, ...] = (),
                         target: CassandraTarget | None = None) -> int:
    """Execute every unit (rows of one partition); retry only the failed units, with exponential backoff.

    When the last attempt found no node at all (every failure a `NoHostAvailable`) and `target` is given, the
    error says the target cannot be reached and how to check it, as connecting would have."""
    from cassandra.cluster import NoHostAvailable
    from cassandra.concurrent import execute_concurrent

    pending = units
    for attempt in range(1, max_attempts + 1):
        results = execute_concurrent(session, [_statement(prepared, unit) for unit in pending],
                                     concurrency=concurrency, raise_on_first_error=False)
        failed = [(unit, result) for unit, (ok, result) in zip(pending, results, strict=False) if not ok]
        if not failed:
            return sum(len(unit) for unit in units)
        if attempt == max_attempts:
            unit, error = failed[0]
            failed_rows = sum(len(u) for u, _ in failed)
            if target is not None and all(isinstance(result, NoHostAvailable) for _, result in failed):
                raise CassandraUnavailableError(target.unreachable_message(
                    f"{failed_rows} rows of table {table} found no node after {max_attempts} attempts: "
                    f"NoHostAvailable: {error}"[:400]))
            raise CassandraWriteError(
                f"{failed_rows} rows of table {table} still failed after {max_attempts} attempts; "
                f"first failing row {describe_row(unit[0], date_positions)}: {type(error).__name__}: {str(error)[:300]}")
        time.sleep(base_delay_s * 2 ** (attempt - 1))
        pending = [unit for unit, _ in failed]
    return 0


def prepare(session, cql: str, target: CassandraTarget):
    """`session.prepare(cql)`; a node that went away since the session connected is unreachable, as connecting says."""
    from cassandra.cluster import NoHostAvailable

    try:
        return session.prepare(cql)
    except NoHostAvailable as error:
        raise CassandraUnavailableError(target.unreachable_message(f"NoHostAvailable: {error}"[:400])) from None


def partition_units(rows: Iterator, key_width: int, max_rows: int = BATCH_ROWS,
                    max_bytes: int = BATCH_BYTES) -> Iterator[list[tuple]]:
    """Consecutive rows with the same partition key (the first `key_width` values), bounded in rows and size.

    A unit's row cap comes from the size of its first row: the rows of one partition have the same
    columns, and sizing every row (`repr`) cost ~7 % of the writer's CPU.
    """
    unit: list[tuple] = []
    key: tuple = ()
    cap = 0
    for row in rows:
        values = tuple(row)
        if unit and (len(unit) >= cap or values[:key_width] != key):
            yield unit
            unit = []
        if not unit:
            key = values[:key_width]
            cap = max(1, min(max_rows, max_bytes // len(repr(values))))  # repr: a cheap over-estimate of the size
        unit.append(values)
    if unit:
        yield unit


def write_partition(rows: Iterable, target: CassandraTarget, cql: str, table: str, concurrency: int,
                    key_width: int, date_positions: tuple[int, ...] = (), chunk_rows: int = 5000) -> Iterator[int]:
    """Executor side: one Cluster per Spark partition (none when it is empty).

    Rows arrive sorted by partition key; the rows of one partition travel as UNLOGGED
    batches (`partition_units`). Units are sent in chunks of ~`chunk_rows` rows to bound memory.
    `date_positions`: the columns that hold wire dates (for error messages).
    """
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        yield 0
        return
    written = 0
    with open_session(target) as session:
        prepared = prepare(session, cql, target)
        chunk: list[list[tuple]] = []
        chunk_size = 0
        for unit in partition_units(itertools.chain([first], rows), key_width):
            chunk.append(unit)
            chunk_size += len(unit)
            if chunk_size >= chunk_rows:
                written += execute_with_retries(session, prepared, chunk, concurrency, table,
                                                date_positions=date_positions, target=target)
                chunk, chunk_size = [], 0
        if chunk:
            written += execute_with_retries(session, prepared, chunk, concurrency, table, date_positions=date_positions,
                                            target=target)
    yield written
