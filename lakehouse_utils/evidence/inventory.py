"""Evidence a grader reads: rows, files, bytes and a content fingerprint per zone and Cassandra table.

`python -m lakehouse_utils evidence` prints the inventory; with `--rerun STAGE`
it takes the inventory, re-runs the stage(s), takes it again and shows that
nothing changed (idempotency): same rows, partitions, files *and* fingerprint,
and every Cassandra table still equal to its Gold mart by fingerprint.

The fingerprint (`lakehouse_utils.fingerprint`) covers every column except the
lineage columns below, which say which run wrote a row and when: a re-run changes
them by design. Any other changed value, in any row, changes the fingerprint.
"""

from __future__ import annotations

import argparse
import json

from pyspark.sql import SparkSession

from lakehouse_utils import io
from lakehouse_utils.evidence.serving import cassandra_inventory
from lakehouse_utils.fingerprint import fingerprint_many
from lakehouse_utils.paths import ZONES, LakePaths, join, local_path
from lakehouse_utils.report import format_table

LINEAGE_COLUMNS = ("run_id", "source_run_id", "ingest_ts", "quarantined_at", "loaded_at")
COMPARED = ("rows", "partitions", "files", "fingerprint")

__all__ = ["cassandra_inventory", "compare", "idempotency", "lake_inventory", "lake_tables"]


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


def _listing(spark: SparkSession, paths: LakePaths, zone: str, table: str) -> dict:
    partitions = io.partition_inventory(spark, join(paths.zone(zone), table))
    return {"zone": zone, "table": table, "rows": 0, "partitions": len(partitions),
            "files": sum(p["files"] for p in partitions), "bytes": sum(p["bytes"] for p in partitions),
            "fingerprint": None}


def lake_inventory(spark: SparkSession, paths: LakePaths, zones: tuple[str, ...] = ZONES,
                   fingerprints: bool = True) -> list[dict]:
    """Every table of `zones`: listing figures, plus rows and fingerprint from one Spark job for all tables.

    `fingerprints=False` (benchmarks) counts rows only, which Parquet answers from file footers.
    """
    rows = [_listing(spark, paths, zone, table) for zone, table in lake_tables(spark, paths) if zone in zones]
    readable = [row for row in rows if row["files"]]
    frames = [io.read_parquet(spark, join(paths.zone(row["zone"]), row["table"])) for row in readable]
    if not fingerprints:
        for row, df in zip(readable, frames, strict=True):
            row["rows"] = df.count()
        return rows
    for row, found in zip(readable, fingerprint_many(frames, exclude=LINEAGE_COLUMNS), strict=True):
        row["rows"], row["fingerprint"] = found.rows, found.digest
    return rows


def compare(before: list[dict], after: list[dict], keys=COMPARED) -> list[dict]:
    """Side-by-side inventories; `identical` is False for any table whose figures or fingerprint moved.

    A Cassandra row also carries `matches_gold` (after the re-run); a table that is identical
    to itself but no longer equal to its Gold mart is still reported there.
    """
    index_before = {(r["zone"], r["table"]): r for r in before}
    index_after = {(r["zone"], r["table"]): r for r in after}
    result = []
    for key in sorted(set(index_before) | set(index_after)):
        old, new = index_before.get(key, {}), index_after.get(key, {})
        row = {"zone": key[0], "table": key[1], "rows_before": old.get("rows"), "rows_after": new.get("rows"),
               "fingerprint_before": old.get("fingerprint"), "fingerprint_after": new.get("fingerprint")}
        row["identical"] = bool(old) and bool(new) and all(old.get(k) == new.get(k) for k in keys if k in old or k in new)
        if key[0] == "cassandra":
            row["matches_gold"] = new.get("matches_gold")
        result.append(row)
    return result


def idempotency(before: list[dict], after: list[dict]) -> tuple[list[dict], bool, str]:
    """(comparison, ok, verdict): ok when every table is identical and every served table equals Gold."""
    comparison = compare(before, after)
    changed = [f"{r['zone']}/{r['table']}" for r in comparison if not r["identical"]]
    not_gold = [r["table"] for r in comparison if r.get("matches_gold") is False]
    served = [r for r in comparison if r.get("matches_gold") is not None]
    parts = [f"{len(comparison) - len(changed)}/{len(comparison)} tables IDENTICAL (rows, files, fingerprint)"]
    if changed:
        parts.append(f"CHANGED: {', '.join(changed)}")
    if served:
        parts.append(f"Cassandra = Gold by fingerprint for {len(served) - len(not_gold)}/{len(served)} tables"
                     + (f"; DIFFERENT from Gold: {', '.join(not_gold)}" if not_gold else ""))
    return comparison, not changed and not not_gold, "; ".join(parts)


class LakeNotFoundError(FileNotFoundError):
    """The lake to take the inventory of has no zone."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lake", help="lake root URI (default: LAKE_ROOT)")
    parser.add_argument("--landing", help="landing folder (default: LANDING_DIR)")
    parser.add_argument("--rerun", help="re-run this stage (or 'all') between two inventories and compare")
    parser.add_argument("--no-cassandra", action="store_true", help="skip the Cassandra tables")
    parser.add_argument("--format", choices=["table", "json"], default="table")


def _inventory(spark, paths, settings, with_cassandra: bool) -> list[dict]:
    rows = lake_inventory(spark, paths)
    if with_cassandra:
        from lakehouse_utils.serving.connection import open_session, target_from_settings

        target = target_from_settings(settings)
        with open_session(target) as session:
            rows += cassandra_inventory(session, target.keyspace, spark, paths)
    return rows


def run_cli(args: argparse.Namespace) -> int:
    from lakehouse_utils.config import Settings
    from lakehouse_utils.pipeline import parse_stages, run_pipeline
    from lakehouse_utils.spark import get_spark

    stages = parse_stages(args.rerun) if args.rerun else None  # a typo is refused before the JVM starts
    settings = Settings.load(lake_root=args.lake, landing_dir=args.landing)
    paths = LakePaths.from_settings(settings)
    root = local_path(paths.lake_root)
    if root is not None and not any((root / zone).is_dir() for zone in ("bronze", "silver", "gold")):
        raise LakeNotFoundError(f"no lake at {paths.lake_root} (no bronze, silver or gold folder): run the pipeline "
                                "first (`python -m lakehouse_utils pipeline`), or point LAKE_ROOT (or --lake) at a lake")
    spark = get_spark("evidence", settings)
    before = _inventory(spark, paths, settings, not args.no_cassandra)
    if not stages:
        print(json.dumps(before, indent=2) if args.format == "json" else format_table(before))
        return 0
    run_pipeline(spark, paths, stages, settings=settings, target=settings.serving_target,
                 watermark_delay=settings.watermark_delay)
    after = _inventory(spark, paths, settings, not args.no_cassandra)
    comparison, same, verdict = idempotency(before, after)
    print(json.dumps(comparison, indent=2) if args.format == "json" else format_table(comparison))
    print(f"idempotency after re-running {args.rerun}: {'IDENTICAL' if same else 'CHANGED'} ({verdict})")
    return 0 if same else 1
