"""Speed == batch, cell for cell: the live columns of a serving table, from Cassandra or from its Gold mart.

Used by the tests and the freshness benchmark: both sides are keyed by the table's primary
key and hold exactly the columns `live` writes (the anomaly columns are the batch layer's).
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from lakehouse_utils import io
from lakehouse_utils.live.metrics import live_columns
from lakehouse_utils.paths import LakePaths
from lakehouse_utils.serving.model import serving_table

Measures = dict[tuple, tuple]


def _split(table_name: str, values: dict) -> tuple[tuple, tuple]:
    table = serving_table(table_name)
    key = tuple(values[name] for name in table.primary_key)
    return key, tuple(values[name] for name in live_columns(table) if name not in table.primary_key)


def cassandra_measures(session, table_name: str) -> Measures:
    """Every row of the Cassandra table (live columns), keyed by primary key."""
    from lakehouse_utils.serving.connection import plain_value

    names = live_columns(serving_table(table_name))
    rows = session.execute(f"SELECT {', '.join(names)} FROM {table_name}")
    return dict(_split(table_name, {n: plain_value(getattr(row, n)) for n in names}) for row in rows)


def gold_measures(spark: SparkSession, paths: LakePaths, table_name: str) -> Measures:
    """The rows the serving stage would load from the table's Gold mart (live columns), keyed by primary key."""
    table = serving_table(table_name)
    names = live_columns(table)
    frame = io.read_parquet(spark, paths.gold(table.mart)).select(*table.select_columns()).select(*names)
    return dict(_split(table_name, row.asDict()) for row in frame.collect())


def differences(expected: Measures, actual: Measures, limit: int = 5) -> list[str]:
    """Human-readable differences (missing, extra, changed keys); empty when the two are equal."""
    found = [f"missing {key}" for key in expected.keys() - actual.keys()]
    found += [f"extra {key}" for key in actual.keys() - expected.keys()]
    found += [f"{key}: expected {expected[key]} got {actual[key]}"
              for key in expected.keys() & actual.keys() if expected[key] != actual[key]]
    return sorted(found)[:limit] + ([f"... {len(found) - limit} more"] if len(found) > limit else [])
