"""Cassandra tables as evidence: rows and a content fingerprint from a full read, compared with Gold.

A served table is read in full through the driver, its values are turned back into
the Spark types its CQL declares (`date` -> DateType, `frozen<set<text>>` ->
array<string>, `frozen<map<text, double>>` -> map<string, double>, ...) and
fingerprinted by Spark. Its Gold mart goes through the serving projection
(`serving.model`: the very columns and casts the load writes), is cast to the same
types and fingerprinted the same way, sets sorted and a null set equal to an empty
one on both sides (Cassandra does not keep either distinction). `matches_gold` is
then a plain comparison of (rows, fingerprint).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils import io
from lakehouse_utils.fingerprint import Fingerprint, fingerprint
from lakehouse_utils.paths import LakePaths, check_name
from lakehouse_utils.serving.connection import plain_value

# Run bookkeeping, different on every load by design (see evidence.inventory.LINEAGE_COLUMNS).
CASSANDRA_LINEAGE = ("run_id", "loaded_at")
READ_TIMEOUT_S = 120


class ServingModelError(ValueError):
    """A Cassandra table whose columns or types the serving model (cql/) does not describe."""


_SCALARS = {
    "text": T.StringType(), "varchar": T.StringType(), "ascii": T.StringType(), "date": T.DateType(),
    "double": T.DoubleType(), "float": T.FloatType(), "bigint": T.LongType(), "counter": T.LongType(),
    "int": T.IntegerType(), "smallint": T.ShortType(), "tinyint": T.ByteType(), "boolean": T.BooleanType(),
    "timestamp": T.TimestampType(),
}


def spark_type(cql_type: str) -> T.DataType:
    """The Spark type of a CQL column type (as system_schema.columns spells it)."""
    text = cql_type.strip()
    if text.startswith("frozen<") and text.endswith(">"):
        return spark_type(text[len("frozen<"):-1])
    for prefix in ("set<", "list<"):
        if text.startswith(prefix):
            return T.ArrayType(spark_type(text[len(prefix):-1]))
    if text.startswith("map<"):
        key, value = _split_pair(text[len("map<"):-1])
        return T.MapType(spark_type(key), spark_type(value))
    if text not in _SCALARS:
        raise ServingModelError(f"CQL type {cql_type!r} has no fingerprint mapping; add it to evidence.serving._SCALARS")
    return _SCALARS[text]


def _split_pair(text: str) -> tuple[str, str]:
    depth = 0
    for position, char in enumerate(text):
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth == 0:
            return text[:position], text[position + 1:]
    raise ServingModelError(f"not a map<key, value> type: map<{text}>")


def table_schema(session, keyspace: str, table: str, columns: list[str] | None = None) -> T.StructType:
    """The Spark schema of a Cassandra table, in `columns` order (default: the table's, by name)."""
    found = {row.column_name: row.type for row in session.execute(
        "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s",
        (keyspace, table))}
    names = columns or sorted(found)
    missing = [name for name in names if name not in found]
    if missing:
        raise ServingModelError(f"Cassandra table {keyspace}.{table} lacks column(s) {missing} of the serving model: "
                                f"it was created from an older cql/ folder. Drop it (cqlsh: DROP TABLE {keyspace}.{table};) and "
                                "run the serving stage again: it creates the table as cql/ says and loads it")
    return T.StructType([T.StructField(name, spark_type(found[name])) for name in names])


def read_cassandra(spark: SparkSession, session, table: str, schema: T.StructType) -> DataFrame:
    """Every row of a Cassandra table (driver paging), as a Spark DataFrame of `schema`."""
    names = [check_name(name) for name in schema.fieldNames()]
    result = session.execute(f"SELECT {', '.join(names)} FROM {check_name(table)}", timeout=READ_TIMEOUT_S)
    rows = [tuple(plain_value(value) for value in row) for row in result]
    return spark.createDataFrame(rows, schema)


def served_gold(spark: SparkSession, paths: LakePaths, table_name: str, schema: T.StructType) -> DataFrame | None:
    """The Gold mart of a served table as the load writes it, cast to the Cassandra types; None without Gold."""
    from lakehouse_utils.serving.model import serving_table

    spec = serving_table(table_name)
    uri = paths.gold(spec.mart)
    if not io.list_files(spark, uri):
        return None
    served = io.read_parquet(spark, uri).select(*spec.select_columns())
    return served.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def served_fingerprints(spark: SparkSession, session, keyspace: str, paths: LakePaths,
                        table_name: str) -> tuple[Fingerprint, Fingerprint | None]:
    """(fingerprint of the Cassandra table, fingerprint of its Gold mart as served, or None without Gold)."""
    from lakehouse_utils.serving.model import serving_table

    schema = table_schema(session, keyspace, table_name, serving_table(table_name).column_names)
    cassandra = fingerprint(read_cassandra(spark, session, table_name, schema), sets=True)
    gold = served_gold(spark, paths, table_name, schema)
    return cassandra, (fingerprint(gold, sets=True) if gold is not None else None)


def cassandra_inventory(session, keyspace: str, spark: SparkSession | None = None,
                        paths: LakePaths | None = None) -> list[dict]:
    """Per table of the keyspace: rows and fingerprint from a full read, and `matches_gold`.

    `matches_gold` is True/False for every table the serving model loads from a Gold mart
    (False too when the mart is missing) and None for `serving_metadata`, which has no mart.
    Without `spark`/`paths` the active session and the configured lake are used.
    """
    from lakehouse_utils.serving.claim import LAKE_TABLE
    from lakehouse_utils.serving.model import SERVING_TABLES

    spark = spark or SparkSession.getActiveSession()
    if paths is None:
        from lakehouse_utils.config import Settings

        paths = LakePaths.from_settings(Settings.load())
    check_name(keyspace, "keyspace")
    # serving_lake (which lake claims the keyspace) is bookkeeping, like the lake's _state: left out.
    names = sorted(row.table_name for row in session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,))
        if row.table_name != LAKE_TABLE)
    served = {table.name for table in SERVING_TABLES}
    rows = []
    for name in names:
        if name in served:
            found, gold = served_fingerprints(spark, session, keyspace, paths, name)
            matches = gold is not None and (found.rows, found.digest) == (gold.rows, gold.digest)
            extra = {"gold_fingerprint": gold.digest if gold else None, "matches_gold": matches}
        else:
            schema = table_schema(session, keyspace, name)
            kept = T.StructType([f for f in schema.fields if f.name not in CASSANDRA_LINEAGE])
            found = fingerprint(read_cassandra(spark, session, name, kept), sets=True)
            extra = {"gold_fingerprint": None, "matches_gold": None}
        rows.append({"zone": "cassandra", "table": name, "rows": found.rows, "fingerprint": found.digest, **extra})
    return rows
