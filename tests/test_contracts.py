"""lakehouse_utils.contracts: every table a stage writes has exactly its contract's schema,
and `validate_schema` names what differs (at the stage boundaries too, instead of a Java error)."""

from __future__ import annotations

import os
import re
from datetime import date

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils import contracts
from lakehouse_utils.contracts import SchemaMismatchError, TableContract, validate_schema
from lakehouse_utils.paths import LakePaths
from lakehouse_utils.serving.model import SERVING_TABLES

S, L, D = T.StringType(), T.LongType(), T.DateType()
EXPECTED = T.StructType([T.StructField("org_id", S), T.StructField("usage_date", D), T.StructField("n", L)])


# ---------- validate_schema, no Spark job ----------

def test_matching_schema_is_returned_and_nullability_is_ignored():
    found = T.StructType([T.StructField(f.name, f.dataType, nullable=False) for f in EXPECTED.fields])
    assert validate_schema(found, EXPECTED, table="t") is found


def test_missing_unexpected_and_mistyped_columns_are_all_listed():
    found = T.StructType([T.StructField("org_id", S), T.StructField("n", S), T.StructField("extra", L)])
    with pytest.raises(SchemaMismatchError) as raised:
        validate_schema(found, EXPECTED, table="silver/x", fix="run silver")
    error = raised.value
    assert isinstance(error, ValueError)
    assert (error.missing, error.unexpected, error.mismatched) == (
        ["usage_date date"], ["extra bigint"], ["n: expected bigint, found string"])
    message = str(error)
    assert message.startswith("silver/x does not match its contract")
    assert "expected: org_id string, usage_date date, n bigint" in message
    assert "found:    org_id string, n string, extra bigint" in message
    assert "fix: run silver" in message


def test_extra_columns_pass_only_when_allowed_and_order_only_when_asked():
    found = T.StructType([EXPECTED.fields[2], EXPECTED.fields[0], EXPECTED.fields[1], T.StructField("x", S)])
    validate_schema(found, EXPECTED, table="t", allow_extra=True)
    with pytest.raises(SchemaMismatchError, match="unexpected column"):
        validate_schema(found, EXPECTED, table="t")
    with pytest.raises(SchemaMismatchError, match="another order") as raised:
        validate_schema(found, EXPECTED, table="t", allow_extra=True, ordered=True)
    assert raised.value.misordered


def test_nested_types_are_compared_without_nullability():
    expected = T.StructType([T.StructField("tags", T.MapType(S, S, valueContainsNull=True))])
    validate_schema(T.StructType([T.StructField("tags", T.MapType(S, S, valueContainsNull=False))]), expected,
                    table="t")
    with pytest.raises(SchemaMismatchError, match="tags: expected map<string,string>, found map<string,bigint>"):
        validate_schema(T.StructType([T.StructField("tags", T.MapType(S, L))]), expected, table="t")


def test_table_contract_stores_partition_columns_last():
    contract = TableContract("gold/x", EXPECTED, ("usage_date",))
    assert contract.stored.fieldNames() == ["org_id", "n", "usage_date"]
    assert contracts.SILVER_EVENTS.stored.fieldNames()[-1] == "usage_date"


def test_generator_writes_the_contract_headers():
    from lakehouse_utils.generator.masters import HEADERS, KEYS

    assert HEADERS == {s: contracts.master_schema(s).column_names for s in contracts.MASTER_SOURCES}
    assert KEYS == {s: contracts.master_schema(s).key for s in contracts.MASTER_SOURCES}


CQL_TO_SPARK = {"text": "string", "date": "date", "double": "double", "bigint": "bigint", "int": "int",
                "boolean": "boolean"}


def spark_type_of(cql_type: str) -> str:
    """frozen<set<text>> -> array<string>, map<text, bigint> -> map<string,bigint>, text -> string."""
    inner = re.fullmatch(r"frozen<(.+)>", cql_type)
    if inner:
        return spark_type_of(inner.group(1))
    collection = re.fullmatch(r"(set|list|map)<(.+)>", cql_type)
    if not collection:
        return CQL_TO_SPARK[cql_type]
    kind, parts = collection.group(1), [spark_type_of(p.strip()) for p in collection.group(2).split(",")]
    return f"map<{parts[0]},{parts[1]}>" if kind == "map" else f"array<{parts[0]}>"


def test_serving_rows_are_the_cql_columns_in_order_with_their_types():
    from lakehouse_utils.serving.connection import CQL_DIR

    for table in SERVING_TABLES:
        body = (CQL_DIR / f"{table.name}.cql").read_text().split("(", 1)[1].split("PRIMARY KEY")[0]
        declared = re.findall(r"^\s+(\w+)\s+(.+?),\s*$", body, flags=re.MULTILINE)
        expected = [(f.name, f.dataType.simpleString()) for f in contracts.SERVING_ROWS[table.name].fields]
        assert [(name, spark_type_of(cql)) for name, cql in declared] == expected, table.name


# ---------- the stages write exactly their contracts (one shared small generated run) ----------

def written_tables(paths: LakePaths) -> dict[str, T.StructType]:
    """Zone table -> its contract, for every table a run of bronze_batch..gold writes."""
    tables = {}
    for source in contracts.MASTER_SOURCES:
        tables[paths.bronze(source)] = contracts.bronze_struct(source)
        tables[paths.quarantine(source)] = contracts.master_quarantine_struct(source)
        tables[paths.quarantine(f"{source}_silver")] = contracts.master_quarantine_silver(source).stored
        tables[paths.silver(source)] = contracts.SILVER_MASTERS[source].stored
    tables[paths.bronze("usage_events")] = contracts.BRONZE_EVENTS.stored
    tables[paths.quarantine("usage_events_raw")] = contracts.RAW_QUARANTINE_SCHEMA
    tables[paths.quarantine("usage_events")] = contracts.EVENTS_QUARANTINE.stored
    tables[paths.silver("usage_events")] = contracts.SILVER_EVENTS.stored
    tables[paths.silver("org_service_daily")] = contracts.SILVER_DAILY.stored
    for mart, contract in contracts.GOLD_MARTS.items():
        tables[paths.gold(mart)] = contract.stored
    return tables


def test_every_written_table_has_exactly_its_contract_schema(spark, faulty_chain):
    paths, _, _ = faulty_chain
    tables = written_tables(paths)
    zones = [paths.bronze(""), paths.silver(""), paths.gold(""), paths.quarantine("")]
    on_disk = {os.path.join(zone, name) for zone in zones for name in os.listdir(zone.removeprefix("file:"))}
    assert {uri.removeprefix("file:") for uri in tables} == {uri.removeprefix("file:") for uri in on_disk}
    for uri, expected in tables.items():
        df = spark.read.parquet(uri)
        assert df.count() > 0, uri  # the faulty landing leaves a row in every table, quarantines included
        validate_schema(df, expected, table=uri, ordered=True)


def test_every_serving_row_has_exactly_its_contract_schema(spark, faulty_chain):
    paths, _, _ = faulty_chain
    for table in SERVING_TABLES:
        served = spark.read.parquet(paths.gold(table.mart)).select(*table.select_columns())
        validate_schema(served, contracts.SERVING_ROWS[table.name], table=table.name, ordered=True)


# ---------- the boundaries name the column instead of failing in Java ----------

def test_silver_refuses_bronze_events_with_a_mistyped_column(spark):
    from lakehouse_utils.silver.events import BronzeContractError, conform_events

    schema = T.StructType([T.StructField(f.name, S if f.name == "cost_usd_increment" else f.dataType)
                           for f in contracts.BRONZE_EVENTS_READ.fields])
    with pytest.raises(BronzeContractError, match="cost_usd_increment: expected double, found string"):
        conform_events(spark.createDataFrame([], schema))


def test_silver_refuses_a_bronze_master_without_a_column(spark, lake):
    from lakehouse_utils.silver.masters import read_bronze

    paths = LakePaths.from_roots(lake, lake)
    schema = contracts.bronze_input_struct("users")
    df = spark.createDataFrame([], schema).drop("email")
    df.write.parquet(paths.bronze("users"))
    with pytest.raises(SchemaMismatchError, match=r"bronze/users at .*\n  missing column\(s\):    email string"):
        read_bronze(spark, paths, "users")


def test_gold_refuses_silver_with_a_mistyped_column(spark, lake):
    from lakehouse_utils.gold.stage import GoldInputError, GoldSchemaError, read_silver

    paths = LakePaths.from_roots(lake, lake)
    rows = spark.createDataFrame([("o1", date(2025, 7, 1))], "org_id string, signup_date date")
    rows.withColumn("org_name", F.lit(1)).write.parquet(paths.silver("customers_orgs"))
    with pytest.raises(GoldSchemaError, match="org_name: expected string, found int") as raised:
        read_silver(spark, paths, "customers_orgs", ("org_id", "org_name"))
    assert isinstance(raised.value, GoldInputError)
