"""Hostile event feed (issue 11): every kind of bad line through bronze_stream, Silver and Gold.

One hand-made landing (eight small files, 156 lines) holds every case; the session
fixture `hostile_run` (conftest) runs bronze_batch, bronze_stream (two micro-batches),
silver and gold on it once, and each test checks one behaviour with exact counts. The expected
numbers are derived by hand in the comments next to the lines, not read from a run.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from lakehouse_utils.bronze import stream as bronze_stream
from lakehouse_utils.contracts import master_schema
from lakehouse_utils.paths import MASTER_FILES, LakePaths
from lakehouse_utils.pipeline import run_pipeline

CHAIN = ["bronze_batch", "bronze_stream", "silver", "gold"]
FILES_PER_TRIGGER = 4
MTIME_BASE = 1_700_000_000

# ------------------------------------------------------------------ hand-made masters

MASTER_LINES = {
    "customers_orgs": ["org_a,Acme,Retail,us-east,pro,True,2025-05-01,rep_a,active,web,10.0",
                       "org_b,Bolt,Media,eu-west,free,False,2025-05-02,rep_b,lead,ads,20.0"],
    "users": ["user_a,org_a,a@example.com,admin,True,2025-05-02,2025-08-01"],
    "resources": ['res_a,org_a,compute,us-east,2025-05-03,running,"[""env:prod""]"',
                  "res_b,org_b,genai,eu-west,2025-05-03,running,",
                  "res_c,org_a,storage,us-east,2025-05-03,stopped,"],
    "support_tickets": ["tkt_a,org_a,billing,high,2025-08-01,2025-08-02,5.0,False"],
    "marketing_touches": ["mkt_a,org_a,webinar,email,2025-08-01,True,False"],
    "nps_surveys": ["org_a,2025-08-01,50.0,Great"],
    "billing_monthly": ["inv_a,org_a,2025-08-01,100.0,,21.0,USD,1.0"],
}


def write_masters(landing: Path) -> None:
    landing.mkdir(parents=True, exist_ok=True)
    for source, lines in MASTER_LINES.items():
        header = ",".join(master_schema(source).column_names)
        (landing / MASTER_FILES[source]).write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")


# ------------------------------------------------------------------ hand-made events

def ev(event_id: str | None, ts: str = "2025-08-01T10:00:00Z", org: str = "org_a", res: str = "res_a",
       service: str = "compute", metric: str = "requests", value: object = 4.0, unit: str | None = "count",
       cost: float = 1.0, version: int = 2, carbon: float | None = 0.01, tokens: int | None = None,
       omit: tuple[str, ...] = (), **extra) -> dict:
    """One event as the producer sends it (v2 carries carbon_kg; genai_tokens only when given)."""
    event = {"event_id": event_id, "timestamp": ts, "org_id": org, "resource_id": res, "service": service,
             "region": "eu-west" if org == "org_b" else "us-east", "metric": metric, "value": value, "unit": unit,
             "cost_usd_increment": cost, "schema_version": version}
    if version == 2:
        event["carbon_kg"] = carbon
    if tokens is not None:
        event["genai_tokens"] = tokens
    event.update(extra)
    return {k: v for k, v in event.items() if k not in omit}


def line(event: dict) -> str:
    return json.dumps(event)


# File 01 (BOM at the top, CRLF line endings): 9 lines -> 8 new, 1 blank (ignored).
BASE = [
    ev("e01", cost=1.5),
    ev("e02", ts="2025-08-01T11:00:00Z", value=2.0, cost=2.0),
    ev("e03", value="N/A"),                                # kept, flagged, value null
    ev("e04", value=""),                                   # kept, flagged, value null
    ev("e05", value="1e3"),                                # value 1000.0
    ev("e06", value=" 12.5 "),                             # value 12.5
    ev("e07", tokens=5, surprise={"nested": [1, 2]}, note="unknown fields"),  # tokens dropped: not genai
    ev("e08", value=3.0, version=1, omit=("unit",)),       # v1: no carbon, no tokens, no unit -> imputed
]
# File 02 (LF): 13 lines -> 13 new in Bronze; Silver keeps e09 e10 e11 e15 e17 and quarantines 8.
TIMES = [
    ev("e09", ts="2025-08-01T12:00:00", version=1, carbon=None, value=1.0, cost=0.25),  # no zone: UTC
    ev("e10", ts="2025-08-02T01:30:00+02:00", cost=0.75),    # = 2025-08-01T23:30Z: a day earlier in UTC
    ev("e11", ts="2025-08-02T08:15:30.250Z", cost=1.25),     # fractional seconds
    ev("e12", ts="yesterday"),                               # event_ts_parses
    ev(None),                                                # event_id_not_null (null)
    ev(""),                                                  # event_id_not_null (empty)
    ev("e13", org="org_zzz"),                                # org_exists
    ev("e14", res="res_zzz"),                                # resource_exists
    ev("e15", ts="2025-08-02T09:00:00Z", cost=5000.0),       # huge spike: kept, flagged
    ev("e16", cost=-5.0),                                    # cost_not_below_floor
    ev("e17", ts="2025-08-02T10:00:00Z", cost=-0.005),       # a credit within the -0.01 floor: kept
    ev("e21", metric="bytes"),                               # metric_in_domain
    ev("e22", version=3),                                    # schema_version_in_domain
]
BULK_SHAPES = [("org_a", "res_a", "compute", "requests", "count"),
               ("org_b", "res_b", "genai", "requests", "count"),
               ("org_a", "res_c", "storage", "storage_gb_hours", "gb_hours")]


def bulk_event(n: int) -> dict:
    org, res, service, metric, unit = BULK_SHAPES[n % 3]
    return ev(f"b{n:03d}", ts=f"2025-08-0{1 + n // 3 % 3}T{n % 24:02d}:{n % 60:02d}:00Z", org=org, res=res,
              service=service, metric=metric, unit=unit, value=float(n % 7 + 1), cost=0.5 + (n % 5) * 0.25,
              carbon=round(0.001 * n, 3), tokens=100 * n if service == "genai" else None)


# File 03: 100 valid events over three days, three series; they also make p99 meaningful.
BULK = [bulk_event(n) for n in range(100)]
E18 = ev("e18", ts="2025-08-03T06:00:00Z", org="org_b", res="res_b", service="genai", tokens=777, cost=1.75)
# File 04: 6 lines -> 2 malformed_json, 1 not_a_json_object, 2 blank, 1 new.
BROKEN_LINES = ['{"event_id": "e90", "timestamp": "2025-08-01T', "garbage ### not json",
                '[{"event_id": "e91", "cost_usd_increment": 1.0}]', "", "   \t", line(E18)]
E19, E20 = ev("e19", ts="2025-08-03T07:00:00Z", cost=0.5), ev("e20", ts="2025-08-03T08:00:00Z", value=6.0)
# File 06: 6 lines -> e01 replayed (duplicate), e02 changed (conflict with Bronze), e19 new + exact
# repeat (duplicate), e20 new + changed repeat (conflict inside the batch).
REPLAY_LINES = [line(BASE[0]), line(ev("e02", ts="2025-08-01T11:00:00Z", value=2.0, cost=9.99)),
                line(E19), line(E19), line(E20), line(ev("e20", ts="2025-08-03T08:00:00Z", value=60.0))]


def base_bytes() -> bytes:
    lines = [line(e) for e in BASE[:6]] + [""] + [line(e) for e in BASE[6:]]
    return b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n"


def landing_files() -> dict[str, bytes]:
    """Event files in arrival order; the last two are earlier files re-sent under new names."""
    times = ("\n".join(line(e) for e in TIMES) + "\n").encode("utf-8")
    return {
        "01_base.jsonl": base_bytes(),
        "02_times.jsonl": times,
        "03_bulk.jsonl": ("\n".join(line(e) for e in BULK) + "\n").encode("utf-8"),
        "04_broken.jsonl": ("\n".join(BROKEN_LINES) + "\n").encode("utf-8"),
        "05_empty.jsonl": b"",
        "06_replays.jsonl": ("\n".join(REPLAY_LINES) + "\n").encode("utf-8"),
        "98_resent_base.jsonl": base_bytes(),   # 9 lines: 8 duplicates, 1 blank
        "99_resent_times.jsonl": times,         # 13 lines: 11 duplicates, 2 id-less rows new again
    }


def write_events(landing: Path, files: dict[str, bytes], first_mtime: int = MTIME_BASE) -> None:
    """Files with strictly increasing modification times in dict order (the arrival order)."""
    events_dir = landing / "usage_events_stream"
    events_dir.mkdir(parents=True, exist_ok=True)
    for offset, (name, content) in enumerate(files.items()):
        path = events_dir / name
        path.write_bytes(content)
        os.utime(path, (first_mtime + offset, first_mtime + offset))


def make_hostile_landing(root: Path) -> Path:
    landing = root / "landing"
    write_masters(landing)
    write_events(landing, landing_files())
    return landing


# Silver keeps 116 events: 8 + 5 + 100 + e18 + e19 + e20.
VALID_IDS = ({e["event_id"] for e in BASE} | {"e09", "e10", "e11", "e15", "e17"}
             | {e["event_id"] for e in BULK} | {"e18", "e19", "e20"})
SILVER_QUARANTINE = {"event_id_not_null": 4, "event_ts_parses": 1, "org_exists": 1, "resource_exists": 1,
                     "cost_not_below_floor": 1, "metric_in_domain": 1, "schema_version_in_domain": 1,
                     "event_id_unique": 0}


@pytest.fixture
def hostile(hostile_run):
    """The chain run once per session over the hostile landing (conftest `hostile_run`), in two micro-batches.

    Four files per trigger: files 01-04 form batch 0; the replays (06) and the re-sent files
    (98, 99) arrive in batch 1, so they are judged against what Bronze already holds.
    """
    return hostile_run


def counts_tuple(counts) -> tuple[int, int, int, int, int]:
    return counts.rows_in, counts.rows_out, counts.duplicates, counts.quarantined, counts.ignored


def file_name(uri: str | None) -> str | None:
    return None if uri is None else uri.rsplit("/", 1)[-1]


def bronze_df(spark, paths: LakePaths):
    return spark.read.parquet(paths.bronze("usage_events"))


def silver_rows(spark, paths: LakePaths) -> dict:
    return {r["event_id"]: r for r in spark.read.parquet(paths.silver("usage_events")).collect()}


# ------------------------------------------------------------------ Bronze

def test_bronze_counts_every_line_exactly_once(hostile):
    _, reports = hostile
    counts = reports["bronze_stream"].table("usage_events")
    # lines 9+13+100+6+0+6+9+13; new 8+13+100+1+2+2; dups 2+8+11; quarantined 3+2; blank 1+2+1
    assert counts_tuple(counts) == (156, 126, 21, 5, 4)
    assert counts.reconciles
    assert (counts.details["malformed_json"], counts.details["not_a_json_object"],
            counts.details["conflicting_duplicates"]) == (2, 1, 2)


def test_bronze_raw_quarantine_names_rule_file_and_line(spark, hostile):
    paths, _ = hostile
    rows = spark.read.parquet(paths.quarantine("usage_events_raw")).collect()
    found = sorted((file_name(r["source_file"]), r["line_number"], r["rule"], r["event_id"]) for r in rows)
    assert found == [
        ("04_broken.jsonl", 1, "malformed_json", None),
        ("04_broken.jsonl", 2, "malformed_json", None),
        ("04_broken.jsonl", 3, "not_a_json_object", None),
        ("06_replays.jsonl", 2, "conflicting_duplicate", "e02"),
        ("06_replays.jsonl", 6, "conflicting_duplicate", "e20"),
    ]
    reasons = {(file_name(r["source_file"]), r["line_number"]): r["reason"] for r in rows}
    assert "already in Bronze" in reasons[("06_replays.jsonl", 2)]
    assert "arrived first in file:" in reasons[("06_replays.jsonl", 6)]
    within_batch = "06_replays.jsonl with different content; the first arrival is kept"
    assert reasons[("06_replays.jsonl", 6)].endswith(within_batch)
    raw = {(file_name(r["source_file"]), r["line_number"]): r["raw_line"] for r in rows}
    assert raw[("04_broken.jsonl", 1)] == BROKEN_LINES[0]


def test_resent_files_add_only_their_id_less_rows(spark, hostile):
    paths, _ = hostile
    per_file = dict(bronze_df(spark, paths).groupBy(F.element_at(F.split("source_file", "/"), -1)).count().collect())
    assert per_file == {"01_base.jsonl": 8, "02_times.jsonl": 13, "03_bulk.jsonl": 100, "04_broken.jsonl": 1,
                        "06_replays.jsonl": 2, "99_resent_times.jsonl": 2}


def test_every_event_id_is_in_bronze_once(spark, hostile):
    paths, _ = hostile
    keyed = bronze_df(spark, paths).where(F.coalesce(F.col("event_id"), F.lit("")) != "")
    assert (keyed.count(), keyed.select("event_id").distinct().count()) == (122, 122)


def test_first_arrival_wins_over_a_conflicting_copy(spark, hostile):
    paths, _ = hostile
    rows = {r["event_id"]: r for r in bronze_df(spark, paths).where(F.col("event_id").isin("e02", "e20")).collect()}
    assert (rows["e02"]["cost_usd_increment"], rows["e20"]["value_raw"]) == (2.0, "6.0")


def test_bom_and_crlf_leave_no_trace_in_the_fields(spark, hostile):
    paths, _ = hostile
    row = bronze_df(spark, paths).where(F.col("event_id") == "e01").first()
    assert (row["event_id"], row["unit"], row["schema_version"], row["carbon_kg"]) == ("e01", "count", 2, 0.01)
    assert file_name(row["source_file"]) == "01_base.jsonl"


def test_unparsable_timestamp_is_kept_in_bronze_with_its_text(spark, hostile):
    paths, _ = hostile
    row = bronze_df(spark, paths).where(F.col("event_id") == "e12").first()
    assert (row["event_ts"], row["timestamp_raw"], row["event_date"]) == (None, "yesterday", None)


def test_empty_file_adds_nothing_and_breaks_nothing(spark, hostile):
    paths, reports = hostile
    batches = reports["bronze_stream"].table("usage_events").details["batches"]
    assert [b["lines"] for b in batches] == [9 + 13 + 100 + 6, 0 + 6 + 9 + 13]
    assert bronze_df(spark, paths).where(F.col("source_file").endswith("05_empty.jsonl")).count() == 0


# ------------------------------------------------------------------ Silver

def test_silver_counts_reconcile_with_every_rule(hostile):
    _, reports = hostile
    counts = reports["silver"].table("usage_events")
    assert counts_tuple(counts) == (126, 116, 0, 10, 0)
    rules = counts.details["rules"]
    assert rules["quarantine"] == SILVER_QUARANTINE
    flags = (rules["flag"]["value_numeric"], rules["flag"]["cost_spike"], rules["impute"]["unit_present_when_value"])
    assert flags == (2, 1, 1)


def test_silver_holds_exactly_the_valid_events(spark, hostile):
    paths, _ = hostile
    assert set(silver_rows(spark, paths)) == VALID_IDS


def test_silver_quarantine_says_why_for_each_row(spark, hostile):
    paths, _ = hostile
    rows = spark.read.parquet(paths.quarantine("usage_events")).collect()
    by_rule = sorted(((r["rule"], r["event_id"], r["timestamp_raw"]) for r in rows), key=repr)
    assert by_rule == sorted([
        ("event_id_not_null", None, "2025-08-01T10:00:00Z"), ("event_id_not_null", None, "2025-08-01T10:00:00Z"),
        ("event_id_not_null", "", "2025-08-01T10:00:00Z"), ("event_id_not_null", "", "2025-08-01T10:00:00Z"),
        ("event_ts_parses", "e12", "yesterday"), ("org_exists", "e13", "2025-08-01T10:00:00Z"),
        ("resource_exists", "e14", "2025-08-01T10:00:00Z"), ("cost_not_below_floor", "e16", "2025-08-01T10:00:00Z"),
        ("metric_in_domain", "e21", "2025-08-01T10:00:00Z"),
        ("schema_version_in_domain", "e22", "2025-08-01T10:00:00Z"),
    ], key=repr)
    assert all(r["reason"] and r["source_run_id"] and r["source_file"] for r in rows)


def test_timestamps_are_utc_instants(spark, hostile):
    paths, _ = hostile
    rows = silver_rows(spark, paths)
    got = {i: (rows[i]["event_ts"].replace(tzinfo=timezone.utc), rows[i]["usage_date"]) for i in ("e09", "e10", "e11")}
    assert got == {
        "e09": (datetime(2025, 8, 1, 12, 0, tzinfo=timezone.utc), date(2025, 8, 1)),
        "e10": (datetime(2025, 8, 1, 23, 30, tzinfo=timezone.utc), date(2025, 8, 1)),
        "e11": (datetime(2025, 8, 2, 8, 15, 30, 250000, tzinfo=timezone.utc), date(2025, 8, 2)),
    }


def test_value_text_is_cast_with_a_fallback(spark, hostile):
    paths, _ = hostile
    rows = silver_rows(spark, paths)
    got = {i: (rows[i]["value"], rows[i]["is_value_not_numeric"]) for i in ("e01", "e03", "e04", "e05", "e06")}
    assert got == {"e01": (4.0, False), "e03": (None, True), "e04": (None, True), "e05": (1000.0, False),
                   "e06": (12.5, False)}


def test_missing_and_unknown_fields(spark, hostile):
    paths, _ = hostile
    rows = silver_rows(spark, paths)
    e07, e08, e09 = rows["e07"], rows["e08"], rows["e09"]
    assert (e08["unit"], e08["is_unit_imputed"], e08["carbon_kg"], e08["schema_version"]) == ("count", True, None, 1)
    assert (e07["genai_tokens"], e07["is_unit_imputed"]) == (None, False)  # tokens of a compute event dropped
    assert e09["carbon_kg"] is None  # a v1 event has no carbon figure, even if sent


def test_huge_cost_is_flagged_not_dropped(spark, hostile):
    paths, reports = hostile
    spikes = [i for i, r in silver_rows(spark, paths).items() if r["is_cost_spike"]]
    threshold = reports["silver"].extra["spike"]["threshold"]
    assert spikes == ["e15"] and 1.5 <= threshold <= 6.0


# ------------------------------------------------------------------ Gold vs an independent recomputation

NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def numeric(value: object) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip() if isinstance(value, str) else ""
    return float(text) if NUMBER.match(text) else None


def expected_daily_usage() -> pd.DataFrame:
    """org_daily_usage_by_service recomputed in pandas from the hand-made first arrivals of the valid events."""
    first: dict[str, dict] = {}
    for event in [*BASE, *TIMES, *BULK, E18, E19, E20]:
        first.setdefault(event["event_id"], event)
    events = pd.DataFrame([first[i] for i in sorted(VALID_IDS)])
    events["usage_date"] = [pd.to_datetime(t, utc=True, format="ISO8601").date() for t in events["timestamp"]]
    events["num"] = [numeric(v) for v in events["value"]]
    for metric in ("requests", "cpu_hours", "storage_gb_hours"):
        events[metric] = events["num"].where(events["metric"] == metric)
    events["tokens"] = events["genai_tokens"].where(events["service"] == "genai")
    events["carbon"] = events["carbon_kg"].where(events["schema_version"] == 2)
    grouped = events.groupby(["org_id", "usage_date", "service"])
    return pd.DataFrame({
        "daily_cost_usd": grouped["cost_usd_increment"].sum(),
        "requests": grouped["requests"].sum(), "cpu_hours": grouped["cpu_hours"].sum(),
        "storage_gb_hours": grouped["storage_gb_hours"].sum(),
        "genai_tokens": grouped["tokens"].sum().astype("int64"),
        "carbon_kg": grouped["carbon"].sum(min_count=1),
        "event_count": grouped.size(),
    }).reset_index()


def test_gold_daily_usage_equals_an_independent_recomputation(spark, hostile):
    paths, _ = hostile
    columns = ["org_id", "usage_date", "service", "daily_cost_usd", "requests", "cpu_hours", "storage_gb_hours",
               "genai_tokens", "carbon_kg", "event_count"]
    gold = spark.read.parquet(paths.gold("org_daily_usage_by_service")).select(*columns).toPandas()
    key = ["org_id", "usage_date", "service"]
    gold = gold.sort_values(key).reset_index(drop=True)
    expected = expected_daily_usage().sort_values(key).reset_index(drop=True)
    assert len(gold) == len(expected) == 9  # org_a compute 3 days + org_a storage 3 + org_b genai 3
    assert gold[key].values.tolist() == expected[key].values.tolist()
    assert gold["event_count"].tolist() == expected["event_count"].tolist()
    assert gold["genai_tokens"].tolist() == expected["genai_tokens"].tolist()
    for column in ("daily_cost_usd", "requests", "cpu_hours", "storage_gb_hours", "carbon_kg"):
        assert gold[column].tolist() == pytest.approx(expected[column].tolist(), abs=1e-6, nan_ok=True), column


# ------------------------------------------------------------------ files that change after they were read

def one_file_landing(root: Path, name: str, text: str) -> LakePaths:
    landing = root / "landing"
    write_events(landing, {name: text.encode("utf-8")})
    return LakePaths.from_roots(root / "lake", landing)


def test_lines_appended_to_a_processed_file_are_never_read(spark, tmp_path):
    half_written = line(ev("w2", ts="2025-08-01T11:00:00Z"))[:25]  # the producer was mid-line
    paths = one_file_landing(tmp_path, "growing.jsonl", line(ev("w1")) + "\n" + half_written)
    first = bronze_stream.run(spark, paths, "20250101T000000Z-aaaaa1").table("usage_events")
    growing = tmp_path / "landing" / "usage_events_stream" / "growing.jsonl"
    with growing.open("a", encoding="utf-8") as handle:  # the producer finishes the line and adds one more
        handle.write(line(ev("w2", ts="2025-08-01T11:00:00Z"))[25:] + "\n" + line(ev("w3")) + "\n")
    os.utime(growing, (MTIME_BASE + 60, MTIME_BASE + 60))
    second = bronze_stream.run(spark, paths, "20250101T000000Z-aaaaa2").table("usage_events")
    assert counts_tuple(first) == (2, 1, 0, 1, 0)  # w1 kept, the half line quarantined as malformed
    assert counts_tuple(second) == (0, 0, 0, 0, 0)  # same path: the file source never reads it again
    assert [r["event_id"] for r in bronze_df(spark, paths).collect()] == ["w1"]
    (rejected,) = spark.read.parquet(paths.quarantine("usage_events_raw")).collect()
    assert (rejected["rule"], rejected["raw_line"]) == ("malformed_json", half_written)


def test_a_file_written_under_a_temp_name_and_renamed_is_read_whole(spark, tmp_path):
    paths = one_file_landing(tmp_path, "ready.jsonl", line(ev("r1")) + "\n")
    events_dir = tmp_path / "landing" / "usage_events_stream"
    temp = events_dir / "batch2.jsonl.tmp"  # not *.jsonl: invisible to the stream while being written
    temp.write_text(line(ev("r2")) + "\n", encoding="utf-8")
    first = bronze_stream.run(spark, paths, "20250101T000000Z-bbbbb1").table("usage_events")
    with temp.open("a", encoding="utf-8") as handle:
        handle.write(line(ev("r3")) + "\n")
    os.replace(temp, events_dir / "batch2.jsonl")  # atomic within one filesystem
    second = bronze_stream.run(spark, paths, "20250101T000000Z-bbbbb2").table("usage_events")
    assert (counts_tuple(first), counts_tuple(second)) == ((1, 1, 0, 0, 0), (2, 2, 0, 0, 0))
    assert sorted(r["event_id"] for r in bronze_df(spark, paths).collect()) == ["r1", "r2", "r3"]


def test_a_late_file_with_an_old_modification_time_is_still_read(spark, tmp_path):
    now = int(time.time())
    landing = tmp_path / "landing"
    write_events(landing, {"today.jsonl": (line(ev("t1")) + "\n").encode()}, first_mtime=now)
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    bronze_stream.run(spark, paths, "20250101T000000Z-ccccc1")
    write_events(landing, {"restored.jsonl": (line(ev("t2")) + "\n").encode()}, first_mtime=now - 30 * 86_400)
    second = bronze_stream.run(spark, paths, "20250101T000000Z-ccccc2").table("usage_events")
    assert counts_tuple(second) == (1, 1, 0, 0, 0)


# ------------------------------------------------------------------ non-finite numbers (JSON NaN / Infinity)

# Spark's JSON reader accepts the non-standard literals NaN and Infinity (allowNonNumericNumbers).
NON_FINITE = [ev("n1", cost=float("nan")), ev("n2", cost=float("inf")), ev("n3", carbon=float("nan"))]


@pytest.fixture(scope="module")
def non_finite(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("non_finite")
    landing = root / "landing"
    write_masters(landing)
    write_events(landing, {"nan.jsonl": ("\n".join(line(e) for e in [*BULK[:30], *NON_FINITE]) + "\n").encode()})
    paths = LakePaths.from_roots(root / "lake", landing)
    return paths, {r.stage: r for r in run_pipeline(spark, paths, CHAIN)}


@pytest.mark.slow
def test_non_finite_numbers_reach_bronze_losslessly(spark, non_finite):
    paths, reports = non_finite
    rows = {r["event_id"]: r for r in bronze_df(spark, paths).where(F.col("event_id").startswith("n")).collect()}
    assert counts_tuple(reports["bronze_stream"].table("usage_events")) == (33, 33, 0, 0, 0)
    assert math.isnan(rows["n1"]["cost_usd_increment"]) and math.isinf(rows["n2"]["cost_usd_increment"])


@pytest.mark.slow
def test_non_finite_cost_is_quarantined_in_silver(spark, non_finite):
    paths, reports = non_finite
    quarantined = {r["event_id"] for r in spark.read.parquet(paths.quarantine("usage_events")).collect()}
    assert {"n1", "n2"} <= quarantined and not {"n1", "n2"} & set(silver_rows(spark, paths))
    assert counts_tuple(reports["silver"].table("usage_events"))[:2] == (33, 31)
    quarantined_rules = {r["event_id"]: r["rule"] for r in spark.read.parquet(paths.quarantine("usage_events"))
                         .where(F.col("event_id").isin("n1", "n2")).collect()}
    assert quarantined_rules == {"n1": "cost_not_below_floor", "n2": "cost_not_below_floor"}


@pytest.mark.slow
def test_non_finite_carbon_is_nulled_and_flagged(spark, non_finite):
    paths, reports = non_finite
    n3 = silver_rows(spark, paths)["n3"]
    assert (n3["carbon_kg"], n3["is_carbon_not_finite"]) == (None, True)
    assert reports["silver"].table("usage_events").details["rules"]["impute"]["carbon_kg_finite"] == 1


@pytest.mark.slow
def test_gold_figures_stay_finite(spark, non_finite):
    paths, _ = non_finite
    gold = spark.read.parquet(paths.gold("org_daily_usage_by_service")).collect()
    figures = [r[c] for r in gold for c in ("daily_cost_usd", "carbon_kg") if r[c] is not None]
    assert figures and all(math.isfinite(value) for value in figures)
