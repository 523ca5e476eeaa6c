"""The landing-data generator against the course contract, and its fault manifest against the files.

Pure Python (csv/json/pandas): every expectation is recomputed here by re-reading the
files, independently of the generator's own bookkeeping. No Spark needed.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from lakehouse_utils.__main__ import main as cli_main
from lakehouse_utils.generator.landing import IDS_NAME, MANIFEST_NAME, generate

HEADERS = {
    "customers_orgs": "org_id,org_name,industry,hq_region,plan_tier,is_enterprise,signup_date,sales_rep,"
                      "lifecycle_stage,marketing_source,nps_score",
    "users": "user_id,org_id,email,role,active,created_at,last_login",
    "resources": "resource_id,org_id,service,region,created_at,state,tags_json",
    "support_tickets": "ticket_id,org_id,category,severity,created_at,resolved_at,csat,sla_breached",
    "marketing_touches": "touch_id,org_id,campaign,channel,timestamp,clicked,converted",
    "nps_surveys": "org_id,survey_date,nps_score,comment",
    "billing_monthly": "invoice_id,org_id,month,subtotal,credits,taxes,currency,exchange_rate_to_usd",
}
KEYS = {"customers_orgs": (0,), "users": (0,), "resources": (0,), "support_tickets": (0,),
        "marketing_touches": (0,), "nps_surveys": (0, 1), "billing_monthly": (0,)}
TYPED = {  # column -> kind, for the "does this row parse" check
    "signup_date": "date", "created_at": "date", "last_login": "date", "resolved_at": "date", "timestamp": "date",
    "survey_date": "date", "month": "date", "is_enterprise": "bool", "active": "bool", "sla_breached": "bool",
    "clicked": "bool", "converted": "bool", "nps_score": "num", "csat": "num", "subtotal": "num", "credits": "num",
    "taxes": "num", "exchange_rate_to_usd": "num", "tags_json": "json_array",
}
EVENT_KEYS_V1 = ["event_id", "timestamp", "org_id", "resource_id", "service", "region", "metric", "value", "unit",
                 "cost_usd_increment", "schema_version"]
METRIC_UNIT = {"requests": "count", "cpu_hours": "hours", "storage_gb_hours": "gb_hours"}
SCALE1_ROWS = {"customers_orgs": 80, "users": 800, "resources": 400, "support_tickets": 1000,
               "marketing_touches": 1500, "nps_surveys": 92, "billing_monthly": 240}
FAULTY = dict(seed=11, scale=0.1, files=24, duplicates=True, malformed=True, late_files=True, bad_rows=True)


# ---------- helpers that re-read the files ----------

def read_master(root: Path, source: str) -> pd.DataFrame:
    return pd.read_csv(root / f"{source}.csv", dtype=str, keep_default_na=False)


def read_events(root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((root / "usage_events_stream").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            rows.append({**json.loads(line), "_file": path.name, "_value_type": type(json.loads(line)["value"]).__name__})
    return pd.DataFrame(rows)


def field_parses(kind: str, text: str) -> bool:
    if text == "":
        return True
    try:
        if kind == "date":
            return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text)) and date.fromisoformat(text) is not None
        if kind == "bool":
            return text in ("True", "False")
        if kind == "num":
            float(text)
            return True
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def row_parses(header: list[str], fields: list[str]) -> bool:
    return len(fields) == len(header) and all(
        field_parses(TYPED[c], v) for c, v in zip(header, fields, strict=True) if c in TYPED)


@pytest.fixture(scope="module")
def scale1(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gen") / "landing"
    return out, generate(out, seed=7, scale=1.0)


@pytest.fixture(scope="module")
def scale1_events(scale1) -> pd.DataFrame:
    return read_events(scale1[0])


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("faulty") / "landing"
    return out, generate(out, **FAULTY)


# ---------- clean scale-1 dataset vs the contract ----------

def test_headers_and_column_order_match_the_course(scale1):
    root, _ = scale1
    for source, header in HEADERS.items():
        assert (root / f"{source}.csv").read_text(encoding="utf-8").split("\n", 1)[0] == header


def test_master_row_counts_at_scale_1(scale1):
    root, manifest = scale1
    for source, expected in SCALE1_ROWS.items():
        assert len(read_master(root, source)) == expected == manifest["masters"][source]["expected_bronze_rows"]
    surveys = read_master(root, "nps_surveys")
    assert surveys["org_id"].nunique() == 60 and not surveys.duplicated(["org_id", "survey_date"]).any()


def test_master_formats(scale1):
    root, _ = scale1
    for source in HEADERS:
        frame = read_master(root, source)
        for column in frame.columns:
            kind = TYPED.get(column)
            if kind:
                assert all(field_parses(kind, value) for value in frame[column]), (source, column)
    integral_numbers = read_master(root, "customers_orgs")["nps_score"].replace("", "0.0")
    assert integral_numbers.str.fullmatch(r"-?\d+\.0").all()


def test_org_domains_and_nps_quirks(scale1):
    orgs = read_master(scale1[0], "customers_orgs")
    assert orgs["industry"].nunique() == 10 and orgs["hq_region"].nunique() == 7
    assert set(orgs["plan_tier"]) == {"free", "standard", "pro", "enterprise"}
    assert set(orgs["lifecycle_stage"]) == {"lead", "prospect", "active", "at_risk", "churned"}
    nps = pd.to_numeric(orgs["nps_score"].replace("", None))
    assert nps.isna().sum() == 11 and (nps == 101).sum() == 1 and (nps < 0).sum() >= 5


def test_ticket_user_resource_domains(scale1):
    root, _ = scale1
    tickets = read_master(root, "support_tickets")
    assert tickets["severity"].value_counts().to_dict() == {"low": 412, "medium": 328, "high": 204, "critical": 56}
    assert tickets["category"].nunique() == 6 and (tickets["resolved_at"] == "").sum() == 240
    csat = pd.to_numeric(tickets["csat"].replace("", None))
    assert csat.min() == 0 and csat.max() == 7 and (csat == 7).sum() == 1 and (csat == 0).sum() >= 5
    assert read_master(root, "users")["role"].nunique() == 6
    tags = read_master(root, "resources")["tags_json"]
    assert 0.15 < (tags == "").mean() < 0.25
    assert all(re.fullmatch(r"\w+:\w+", tag) for text in tags if text for tag in json.loads(text))


def test_billing_quirks(scale1):
    bills = read_master(scale1[0], "billing_monthly")
    numbers = bills[["subtotal", "taxes", "exchange_rate_to_usd"]].astype(float)
    assert bills["currency"].value_counts().to_dict() == {"USD": 160, "ARS": 51, "EUR": 29}
    assert sorted(bills["month"].unique()) == ["2025-06-01", "2025-07-01", "2025-08-01"]
    usd_rates = numbers["exchange_rate_to_usd"][bills["currency"] == "USD"]
    assert usd_rates.between(0.9, 1.12).all() and usd_rates.std() > 0.01
    assert numbers["exchange_rate_to_usd"][bills["currency"] == "ARS"].between(0.0013, 0.0017).all()
    assert (numbers["subtotal"] < 0).sum() > 0
    assert ((numbers["taxes"] - numbers["subtotal"].abs() * 0.21).abs() <= 0.006).all()
    assert 0.5 < (bills["credits"] == "").mean() < 0.64


def test_event_lines_use_the_course_json_layout(scale1):
    lines = [line for path in sorted((scale1[0] / "usage_events_stream").iterdir())
             for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 43200
    for line in lines:
        event = json.loads(line)
        assert json.dumps(event) == line  # '"key": value, ' spacing, no reordering
        assert list(event)[:11] == EVENT_KEYS_V1
        assert re.fullmatch(r"evt_[0-9a-z]{12}", event["event_id"])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00Z", event["timestamp"])


def test_event_counts_per_day_and_file(scale1_events):
    events = scale1_events
    assert len(events) == 43200 and events["event_id"].is_unique
    assert events.groupby("_file").size().eq(360).all() and events["_file"].nunique() == 120
    per_day = events.groupby(events["timestamp"].str[:10]).size()
    assert len(per_day) == 60 and per_day.eq(720).all() and per_day.index.min() == "2025-07-03"


def test_every_file_spans_the_date_range(scale1_events):
    stamps = pd.to_datetime(scale1_events["timestamp"])
    spans = stamps.groupby(scale1_events["_file"]).agg(lambda s: s.max() - s.min())
    assert (spans >= (stamps.max() - stamps.min()) * 0.9).all()


def test_schema_version_cutover(scale1_events):
    events = scale1_events
    v1 = events["schema_version"] == 1
    assert v1.sum() == 10800 and events.loc[v1, "timestamp"].max() < "2025-07-18"
    assert events.loc[~v1, "timestamp"].min() >= "2025-07-18"
    assert events.loc[v1, "carbon_kg"].isna().all() and events.loc[~v1, "carbon_kg"].notna().all()
    has_tokens = events["genai_tokens"].notna()
    assert (has_tokens == (~v1 & (events["service"] == "genai"))).all()


def test_value_unit_and_cost_profile(scale1_events):
    events = scale1_events
    shares = events["_value_type"].value_counts(normalize=True)
    assert 0.93 < shares["float"] < 0.965 and 0.02 < shares["str"] < 0.04 and 0.012 < shares["NoneType"] < 0.03
    assert pd.to_numeric(events["value"]).min() >= 0
    assert 0.04 < events["unit"].isna().mean() < 0.056
    present = events["unit"].notna()
    assert (events.loc[present, "unit"] == events.loc[present, "metric"].map(METRIC_UNIT)).all()
    cost = events["cost_usd_increment"]
    p99 = cost.quantile(0.99)
    assert cost.notna().all() and 15.5 < p99 < 18
    assert 0.003 < (cost < -0.01).mean() < 0.007 and ((cost < 0) & (cost >= -0.01)).sum() >= 1
    assert 0.0006 < (cost > 3 * p99).mean() < 0.002


def test_referential_integrity(scale1, scale1_events):
    resources = read_master(scale1[0], "resources").set_index("resource_id")
    events = scale1_events.join(resources[["org_id", "service", "region"]], on="resource_id", rsuffix="_res")
    assert events["org_id_res"].notna().all()
    for column in ("org_id", "service", "region"):
        assert (events[column] == events[f"{column}_res"]).all()
    org_ids = set(read_master(scale1[0], "customers_orgs")["org_id"])
    for source in ("users", "resources", "support_tickets", "marketing_touches", "nps_surveys", "billing_monthly"):
        assert set(read_master(scale1[0], source)["org_id"]) <= org_ids


def test_expected_bronze_ids_file_lists_every_event(scale1, scale1_events):
    root, manifest = scale1
    listed = (root / IDS_NAME).read_text(encoding="utf-8").split()
    assert listed == sorted(scale1_events["event_id"]) and manifest["events"]["expected_bronze_event_ids"] == 43200
    assert manifest["events"]["silver_quarantine_by_rule"]["cost_not_below_floor"] == (
        scale1_events["cost_usd_increment"] < -0.01).sum()


# ---------- determinism, output folder, CLI ----------

def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    generate(tmp_path / "a", seed=5, scale=0.05, duplicates=True, malformed=True)
    generate(tmp_path / "b", seed=5, scale=0.05, duplicates=True, malformed=True)
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")


def test_different_seed_gives_different_data(tmp_path):
    generate(tmp_path / "a", seed=5, scale=0.05)
    generate(tmp_path / "b", seed=6, scale=0.05)
    a, b = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert a.keys() == b.keys()
    assert a["usage_events_stream/events_part_0000.jsonl"] != b["usage_events_stream/events_part_0000.jsonl"]
    assert a["customers_orgs.csv"] != b["customers_orgs.csv"]


def test_refuses_a_non_empty_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="_generator_manifest.json"):
        generate(tmp_path, scale=0.05)
    assert (tmp_path / "notes.txt").read_text() == "keep me" and not (tmp_path / "users.csv").exists()


def test_overwrites_its_own_previous_output_without_stale_files(tmp_path):
    generate(tmp_path, scale=0.05, files=6)
    manifest = generate(tmp_path, scale=0.05, files=4)
    on_disk = sorted(p.name for p in (tmp_path / "usage_events_stream").iterdir())
    assert on_disk == sorted(manifest["files"]) and len(on_disk) == 4
    assert json.loads((tmp_path / MANIFEST_NAME).read_text()) == manifest


def test_bad_arguments_fail_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="at least 4 event files"):
        generate(tmp_path / "x", scale=0.05, files=2, bad_rows=True)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        generate(tmp_path / "x", scale=0.05, start_date="03/07/2025")
    assert not (tmp_path / "x").exists()


def test_fractional_scale_keeps_a_handful_of_masters(tmp_path):
    manifest = generate(tmp_path, scale=0.01)
    assert manifest["masters"]["customers_orgs"]["data_rows"] >= 5
    assert manifest["events_per_day"] == 7 and manifest["events"]["bronze_rows"] == 7 * 60


def test_cli_generates_and_reports_errors(tmp_path, capsys):
    assert cli_main(["generate", "--out", str(tmp_path / "cli"), "--scale", "0.05", "--seed", "3"]) == 0
    assert (tmp_path / "cli" / MANIFEST_NAME).exists()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.csv").write_text("a\n")
    assert cli_main(["generate", "--out", str(tmp_path / "foreign"), "--scale", "0.05"]) == 2
    assert "refusing to write" in capsys.readouterr().err


# ---------- fault injection: the manifest against an independent re-read ----------

def replay_stream(root: Path, arrival: list[str]) -> tuple[dict, list[dict]]:
    """Bronze semantics by hand: first arrival of an event_id wins; null/empty ids are kept as rows."""
    counts = dict(lines_total=0, blank=0, malformed_json=0, not_a_json_object=0, exact=0, conflict=0)
    first: dict[str, str] = {}  # event_id -> the line that arrived first
    bronze: list[dict] = []
    for name in arrival:
        text = (root / "usage_events_stream" / name).read_bytes().decode("utf-8").removeprefix("\ufeff")
        assert text.endswith("\n")
        for line in text[:-1].split("\n"):
            line = line.removesuffix("\r")
            counts["lines_total"] += 1
            if not line.strip():
                counts["blank"] += 1
                continue
            try:
                event = json.loads(line)
            except ValueError:
                counts["malformed_json"] += 1
                continue
            if not isinstance(event, dict):
                counts["not_a_json_object"] += 1
                continue
            event_id = event.get("event_id")
            if event_id in first:
                counts["exact" if first[event_id] == line else "conflict"] += 1  # replays are byte-identical
                continue
            if event_id not in (None, ""):
                first[event_id] = line
            bronze.append(event)
    return counts, bronze


def silver_failures(event: dict, org_ids: set[str], resource_ids: set[str]) -> list[str]:
    try:
        datetime.strptime(event.get("timestamp") or "", "%Y-%m-%dT%H:%M:%SZ")
        ts_ok = True
    except ValueError:
        ts_ok = False
    cost = event.get("cost_usd_increment")
    rules = {
        "event_id_not_null": not event.get("event_id"), "event_ts_parses": not ts_ok,
        "org_exists": event.get("org_id") not in org_ids, "resource_exists": event.get("resource_id") not in resource_ids,
        "cost_not_below_floor": cost is None or cost < -0.01,
        "metric_in_domain": event.get("metric") not in METRIC_UNIT,
        "schema_version_in_domain": event.get("schema_version") not in (1, 2),
    }
    return [rule for rule, failed in rules.items() if failed]


@pytest.fixture(scope="module")
def faulty_replayed(faulty):
    root, manifest = faulty
    return replay_stream(root, manifest["files"])


def test_manifest_line_counts_match_the_files(faulty, faulty_replayed):
    manifest, (counts, bronze) = faulty[1]["events"], faulty_replayed
    assert counts["lines_total"] == manifest["lines_total"] and counts["blank"] == manifest["blank_lines"] > 0
    assert counts["malformed_json"] == manifest["malformed_by_reason"]["malformed_json"] > 0
    assert counts["not_a_json_object"] == manifest["malformed_by_reason"]["not_a_json_object"] > 0
    assert counts["exact"] == manifest["exact_replays"] > manifest["single_exact_replays"] > 0
    assert counts["conflict"] == manifest["conflicting_duplicates"] > 0
    assert len(bronze) == manifest["bronze_rows"] == (manifest["lines_total"] - manifest["blank_lines"]
        - manifest["malformed_lines"] - manifest["exact_replays"] - manifest["conflicting_duplicates"])


def test_expected_bronze_ids_file(faulty, faulty_replayed):
    root, manifest = faulty
    listed = (root / IDS_NAME).read_text(encoding="utf-8").split()
    assert listed == sorted(e["event_id"] for e in faulty_replayed[1] if e.get("event_id"))
    assert len(listed) == manifest["events"]["expected_bronze_event_ids"]
    assert sum(e.get("event_id") is None for e in faulty_replayed[1]) == manifest["events"]["bronze_null_event_ids"] > 1


def test_manifest_silver_figures_match_the_rules(faulty, faulty_replayed):
    root, manifest = faulty
    org_ids = {r[0] for r in csv.reader(open(root / "customers_orgs.csv")) if row_parses(HEADERS["customers_orgs"].split(","), r)}
    resource_ids = {r[0] for r in csv.reader(open(root / "resources.csv")) if row_parses(HEADERS["resources"].split(","), r)}
    by_rule: dict[str, int] = {}
    quarantined = not_numeric = imputed = 0
    for event in faulty_replayed[1]:
        failed = silver_failures(event, org_ids, resource_ids)
        assert len(failed) <= 1  # every injected bad row carries exactly one fault
        for rule in failed:
            by_rule[rule] = by_rule.get(rule, 0) + 1
        quarantined += bool(failed)
        value = pd.to_numeric(pd.Series([event.get("value")], dtype=object), errors="coerce")[0]
        not_numeric += not failed and event.get("value") is not None and pd.isna(value)
        imputed += not failed and event.get("unit") is None and not pd.isna(value)
    expected = manifest["events"]
    assert {k: v for k, v in expected["silver_quarantine_by_rule"].items() if v} == by_rule
    assert len(by_rule) == 7  # every quarantine rule except event_id_unique is exercised
    assert expected["silver_quarantined_rows"] == quarantined
    assert expected["silver_rows"] == len(faulty_replayed[1]) - quarantined
    assert expected["value_not_numeric"] == not_numeric > 0 and expected["unit_imputed"] == imputed > 0


def test_arrival_order_is_the_modification_time_order(faulty):
    root, manifest = faulty
    mtimes = [(root / "usage_events_stream" / name).stat().st_mtime_ns for name in manifest["files"]]
    assert all(a < b for a, b in zip(mtimes, mtimes[1:], strict=False))
    assert sorted(p.name for p in (root / "usage_events_stream").iterdir()) == sorted(manifest["files"])
    replays = [r["name"] for r in manifest["events"]["replayed_files"]]
    assert manifest["files"][-len(replays) - len(manifest["events"]["late_files"]):] == replays + manifest["events"]["late_files"]


def test_replayed_files_are_exact_copies_of_base_lines(faulty):
    root, manifest = faulty
    for replay in manifest["events"]["replayed_files"]:
        copy = (root / "usage_events_stream" / replay["name"]).read_text().splitlines()
        original = (root / "usage_events_stream" / replay["copy_of"]).read_text().splitlines()
        assert copy and set(copy) <= set(original)


def test_late_files_hold_new_first_week_events(faulty):
    root, manifest = faulty
    late = [json.loads(line) for name in manifest["events"]["late_files"]
            for line in (root / "usage_events_stream" / name).read_text().splitlines()]
    assert len(late) == manifest["events"]["late_events"] > 0
    assert all(e["timestamp"] < "2025-07-10" for e in late)
    others = {json.loads(line).get("event_id") for name in manifest["files"] if "late" not in name
              for line in (root / "usage_events_stream" / name).read_text(encoding="utf-8-sig").splitlines()
              if line.startswith("{") and line.rstrip("\r").endswith("}")}
    assert not {e["event_id"] for e in late} & others


def test_bom_and_crlf_files_are_otherwise_valid(faulty):
    root, manifest = faulty
    bom = (root / "usage_events_stream" / manifest["events"]["bom_files"][0]).read_bytes()
    crlf = (root / "usage_events_stream" / manifest["events"]["crlf_files"][0]).read_bytes()
    assert bom.startswith(b"\xef\xbb\xbf") and b"\r" not in bom
    assert crlf.count(b"\r\n") == crlf.count(b"\n") > 0
    for line in bom[3:].decode().splitlines() + crlf.decode().splitlines():
        assert isinstance(json.loads(line), dict)


def test_master_faults_match_the_manifest(faulty):
    root, manifest = faulty
    for source, header_text in HEADERS.items():
        header = header_text.split(",")
        rows = list(csv.reader(open(root / f"{source}.csv", encoding="utf-8", newline="")))[1:]
        good = [row for row in rows if row_parses(header, row)]
        latest: dict[tuple, list[str]] = {}
        exact = superseded = 0
        for row in good:
            key = tuple(row[i] for i in KEYS[source])
            if key in latest:
                exact += latest[key] == row
                superseded += latest[key] != row
            latest[key] = row  # the later occurrence is the correction that wins
        stats = manifest["masters"][source]
        assert (len(rows), exact, superseded, len(rows) - len(good), len(latest)) == (
            stats["data_rows"], stats["exact_duplicate_rows"], stats["superseded_key_rows"], stats["unparsable_rows"],
            stats["expected_bronze_rows"])
        assert stats["unparsable_rows"] >= 2 and stats["superseded_key_rows"] >= 1
        for record in stats["superseded"]:
            key = tuple(record["key"][header[i]] for i in KEYS[source])
            assert dict(zip(header, latest[key], strict=False)) == record["winner"] != record["loser"]


def test_faults_leave_the_clean_events_untouched(tmp_path):
    generate(tmp_path / "clean", seed=4, scale=0.05, files=6)
    generate(tmp_path / "dirty", seed=4, scale=0.05, files=6, duplicates=True, bad_rows=True)
    for index in range(6):
        name = f"usage_events_stream/events_part_{index:04d}.jsonl"
        clean = (tmp_path / "clean" / name).read_text().splitlines()
        dirty = iter((tmp_path / "dirty" / name).read_text().splitlines())
        assert all(line in dirty for line in clean)  # clean lines appear in the same order


def test_each_option_adds_only_its_own_faults(tmp_path):
    manifest = generate(tmp_path, seed=4, scale=0.05, files=6, late_files=True)["events"]
    assert manifest["late_events"] > 0 and manifest["lines_total"] == manifest["bronze_rows"]
    assert manifest["exact_replays"] == manifest["malformed_lines"] == manifest["blank_lines"] == 0
    assert manifest["bad_rows_by_kind"] == {} and manifest["replayed_files"] == []
