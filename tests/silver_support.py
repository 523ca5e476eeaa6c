"""Hand-made Bronze-shaped inputs for the Silver tests (columns of docs/table_contracts.md)."""

from __future__ import annotations

from datetime import date, datetime, timezone

from pyspark.sql import DataFrame, SparkSession

from lakehouse_utils.contracts import BRONZE_EVENTS_READ, TECHNICAL_COLUMNS, master_schema
from lakehouse_utils.paths import LakePaths

BRONZE_RUN = "20250901T000000Z-b0b0b0"
INGEST_TS = datetime(2025, 9, 1, tzinfo=timezone.utc)

# The Bronze event columns Silver reads (the contract without type_error_line).
BRONZE_EVENT_SCHEMA = BRONZE_EVENTS_READ


def parse_ts(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def event(event_id: str | None = "evt_000000000001", timestamp: str | None = "2025-07-20T10:00:00Z", **fields) -> dict:
    """A valid v2 compute event on org_a/res_a1, with any field overridden."""
    row = {
        "event_id": event_id, "timestamp_raw": timestamp, "org_id": "org_a", "resource_id": "res_a1",
        "service": "compute", "region": "us-east", "metric": "requests", "unit": "count", "value_raw": "100.0",
        "cost_usd_increment": 1.0, "schema_version": 2, "carbon_kg": 0.02, "genai_tokens": None,
        "content_hash": f"hash-{event_id}", "is_late": False, "lateness_seconds": 0, "ingest_ts": INGEST_TS,
        "source_file": "file:///landing/usage_events_stream/events_part_0000.jsonl", "run_id": BRONZE_RUN,
        "batch_id": 0,
    }
    row.update(fields)
    event_ts = parse_ts(row["timestamp_raw"]) if "event_ts" not in fields else fields["event_ts"]
    row["event_ts"] = event_ts
    row["event_date"] = event_ts.date() if event_ts else None
    row["ingest_date"] = row["ingest_ts"].date()
    return row


def events_df(spark: SparkSession, rows: list[dict]) -> DataFrame:
    names = BRONZE_EVENT_SCHEMA.fieldNames()
    return spark.createDataFrame([tuple(r[n] for n in names) for r in rows], BRONZE_EVENT_SCHEMA)


def orgs_df(spark: SparkSession, org_ids=("org_a", "org_b")) -> DataFrame:
    """Silver-shaped orgs with the enrichment columns."""
    rows = [(o, f"Org {o}", "Retail", "us-east", "pro", "active") for o in org_ids]
    return spark.createDataFrame(rows, "org_id string, org_name string, industry string, hq_region string, "
                                       "plan_tier string, lifecycle_stage string")


def resources_df(spark: SparkSession, resource_ids=("res_a1", "res_b1")) -> DataFrame:
    rows = [(r, "running", {"env": "prod"}) for r in resource_ids]
    return spark.createDataFrame(rows, "resource_id string, state string, tags_map map<string,string>")


# Minimal CSV-master snapshots (Bronze typed columns), enough for the stage to run end to end.
MASTER_ROWS: dict[str, list[tuple]] = {
    "customers_orgs": [
        ("org_a", "Org A", "Retail", "us-east", "pro", True, date(2025, 5, 1), "rep_a", "active", "ads", 30.0),
        ("org_b", "Org B", "Media", "eu-west", "free", False, date(2025, 5, 2), "rep_b", "lead", "event", 101.0),
    ],
    "users": [("user_1", "org_a", "u1@example.com", "admin", True, date(2025, 6, 1), None),
              ("user_2", "org_a", "u2@example.com", "analyst", False, date(2025, 6, 1), None)],
    "resources": [("res_a1", "org_a", "compute", "us-east", date(2025, 6, 1), "running", '["env:prod"]'),
                  ("res_b1", "org_b", "genai", "eu-west", date(2025, 6, 1), "stopped", None)],
    "support_tickets": [("tkt_1", "org_a", "billing", "Critical", date(2025, 7, 1), None, 4.0, False)],
    "marketing_touches": [("mkt_1", "org_a", "welcome", "email", date(2025, 7, 1), True, False)],
    "nps_surveys": [("org_a", date(2025, 7, 1), 40.0, "Great support")],
    "billing_monthly": [("inv_1", "org_a", date(2025, 7, 1), 100.0, None, 21.0, "USD", 0.97)],
}


def write_bronze_masters(spark: SparkSession, paths: LakePaths, run_id: str = BRONZE_RUN,
                         rows: dict[str, list[tuple]] | None = None) -> None:
    for table, table_rows in (rows or MASTER_ROWS).items():
        schema = master_schema(table).struct()
        for name, dtype in TECHNICAL_COLUMNS:
            schema = schema.add(name, dtype)
        technical = (INGEST_TS, f"file:///landing/{table}.csv", run_id)
        df = spark.createDataFrame([(*row, *technical) for row in table_rows], schema)
        df.coalesce(1).write.mode("overwrite").parquet(paths.bronze(table))


def append_bronze_events(spark: SparkSession, paths: LakePaths, rows: list[dict]) -> None:
    """Append events the way the stream does: partitioned by the day they were ingested (ADR 048)."""
    writer = events_df(spark, rows).coalesce(1).write.mode("append").partitionBy("ingest_date")
    writer.parquet(paths.bronze("usage_events"))
