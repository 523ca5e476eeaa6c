"""Evidence a grader reads: rows, files and bytes per zone table and per Cassandra table.

`python -m lakehouse_utils evidence` prints the inventory; with `--rerun STAGE`
it takes the inventory, re-runs the stage(s), takes it again and shows that
nothing changed (idempotency).
"""

from __future__ import annotations

import argparse
import json

from pyspark.sql import SparkSession

from lakehouse_utils import io
from lakehouse_utils.paths import ZONES, LakePaths, join
from lakehouse_utils.report import format_table


def lake_tables(spark: SparkSession, paths: LakePaths) -> list[tuple[str, str]]:
    """(zone, table) for every table folder present in the lake, sorted."""
    found = []
    for zone in ZONES:
        fs, base = io._fs_and_path(spark, paths.zone(zone))
        if not fs.exists(base):
            continue
        for status in fs.listStatus(base):
            name = status.getPath().getName()
            if status.isDirectory() and not name.startswith((".", "_")):
                found.append((zone, name))
    return sorted(found)


def table_inventory(spark: SparkSession, paths: LakePaths, zone: str, table: str) -> dict:
    uri = join(paths.zone(zone), table)
    partitions = io.partition_inventory(spark, uri)
    files = sum(p["files"] for p in partitions)
    rows = spark.read.parquet(uri).count() if files else 0
    return {
        "zone": zone,
        "table": table,
        "rows": rows,
        "partitions": len(partitions),
        "files": files,
        "bytes": sum(p["bytes"] for p in partitions),
    }


def lake_inventory(spark: SparkSession, paths: LakePaths, zones: tuple[str, ...] = ZONES) -> list[dict]:
    return [table_inventory(spark, paths, zone, table) for zone, table in lake_tables(spark, paths) if zone in zones]


def cassandra_inventory(session, keyspace: str) -> list[dict]:
    """Row count per table of a keyspace (COUNT(*) is fine at mart sizes; timeout is generous)."""
    from lakehouse_utils.paths import check_name

    check_name(keyspace)
    tables = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
    )
    rows = []
    for record in sorted(t.table_name for t in tables):
        check_name(record)
        count = session.execute(f"SELECT COUNT(*) FROM {keyspace}.{record}", timeout=120).one()[0]
        rows.append({"zone": "cassandra", "table": record, "rows": int(count)})
    return rows


def compare(before: list[dict], after: list[dict], keys=("rows", "partitions", "files")) -> list[dict]:
    """Side-by-side inventories; `identical` is False for any table whose figures moved."""
    index_before = {(r["zone"], r["table"]): r for r in before}
    index_after = {(r["zone"], r["table"]): r for r in after}
    result = []
    for key in sorted(set(index_before) | set(index_after)):
        old, new = index_before.get(key, {}), index_after.get(key, {})
        row = {"zone": key[0], "table": key[1], "rows_before": old.get("rows"), "rows_after": new.get("rows")}
        row["identical"] = all(old.get(k) == new.get(k) for k in keys if k in old or k in new) if key[0] != "cassandra" \
            else old.get("rows") == new.get("rows")
        result.append(row)
    return result


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lake", help="lake root URI (default: LAKE_ROOT)")
    parser.add_argument("--landing", help="landing folder (default: LANDING_DIR)")
    parser.add_argument("--rerun", help="re-run this stage (or 'all') between two inventories and compare")
    parser.add_argument("--no-cassandra", action="store_true", help="skip the Cassandra table counts")
    parser.add_argument("--format", choices=["table", "json"], default="table")


def _inventory(spark, paths, settings, with_cassandra: bool) -> list[dict]:
    rows = lake_inventory(spark, paths)
    if with_cassandra:
        from lakehouse_utils.serving.connection import open_session, target_from_settings

        target = target_from_settings(settings)
        with open_session(target) as session:
            rows += cassandra_inventory(session, target.keyspace)
    return rows


def run_cli(args: argparse.Namespace) -> int:
    from lakehouse_utils.config import Settings
    from lakehouse_utils.pipeline import STAGES, run_pipeline
    from lakehouse_utils.spark import get_spark

    settings = Settings.load(lake_root=args.lake, landing_dir=args.landing)
    paths = LakePaths.from_settings(settings)
    spark = get_spark("evidence", settings)
    before = _inventory(spark, paths, settings, not args.no_cassandra)
    if not args.rerun:
        print(json.dumps(before, indent=2) if args.format == "json" else format_table(before))
        return 0
    stages = list(STAGES) if args.rerun == "all" else args.rerun.split(",")
    run_pipeline(spark, paths, stages, settings=settings, target=settings.serving_target,
                 watermark_delay=settings.watermark_delay)
    after = _inventory(spark, paths, settings, not args.no_cassandra)
    comparison = compare(before, after)
    print(json.dumps(comparison, indent=2) if args.format == "json" else format_table(comparison))
    same = all(r["identical"] for r in comparison)
    print(f"idempotency after re-running {args.rerun}: {'IDENTICAL' if same else 'CHANGED'}")
    return 0 if same else 1
