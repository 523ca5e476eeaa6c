"""bronze_batch: landing CSV masters to typed, deduplicated Bronze snapshots with a quarantine.

Hand-made CSVs cover one behaviour each; the generator's faulty dataset is checked
against its manifest; the course data must land whole with nothing quarantined.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from functools import reduce
from pathlib import Path

import pytest
from conftest import file_stamps
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from lakehouse_utils import io
from lakehouse_utils.bronze import batch as bronze_batch
from lakehouse_utils.bronze.batch import LandingFileMissingError, LandingSchemaError
from lakehouse_utils.contracts import MASTER_SCHEMAS, MASTER_SOURCES, bronze_struct, header_problems, master_schema
from lakehouse_utils.generator.landing import MANIFEST_NAME
from lakehouse_utils.paths import MASTER_FILES, LakePaths

# One valid data line per master, in the contract's column order.
VALID_ROWS = {
    "customers_orgs": ["org_a,Acme,Retail,us-east,pro,True,2025-05-01,rep_a,active,web,10.0"],
    "users": ["user_a,org_a,a@example.com,admin,True,2025-05-02,2025-08-01"],
    "resources": ['res_a,org_a,compute,us-east,2025-05-03,running,"[""env:prod""]"'],
    "support_tickets": ["tkt_a,org_a,billing,high,2025-07-01,2025-07-02,5.0,False"],
    "marketing_touches": ["mkt_a,org_a,webinar,email,2025-07-05,True,False"],
    "nps_surveys": ["org_a,2025-07-10,50.0,Great"],
    "billing_monthly": ["inv_a,org_a,2025-06-01,100.0,,21.0,USD,1.0", "inv_b,org_a,2025-07-01,-50.5,2.0,10.6,EUR,1.1"],
}
# Tickets exercising every row-level rule; the comment says which line of the file each is.
TICKET_LINES = [
    "tkt_1,org_a,billing,high,2025-07-01,,5.0,False",  # 2: good
    "tkt_2,org_a,billing,low,2025-02-30,,,False",  # 3: impossible date
    "tkt_3,org_a,outage,low,2025-07-02,,4.0,TRUE",  # 4: first version of tkt_3
    "tkt_4,org_a,outage,low,2025-07-03,,,false",  # 5: good, exact copy follows
    "tkt_4,org_a,outage,low,2025-07-03,,,false",  # 6: exact duplicate
    "tkt_3,org_a,outage,critical,2025-07-02,,4.0,True",  # 7: correction of tkt_3, wins
    "tkt_5,org_a,billing,low,2025-07-04,,NaN,yes",  # 8: not a number, not a boolean
    ",org_a,billing,low,2025-07-04,,1.0,False",  # 9: no key
    "tkt_6,org_a,billing,low,2025-08-05,,1.0,False,extra",  # 10: one field too many
    "tkt_7,org_a,billing,low, 2025-08-06 ,,2.5e0,False",  # 11: blanks around a date, scientific number
]
NPS_LINES = [
    'org_a,2025-07-10,50.0,"Slow, but ""fine"""',  # 2: quoted comma and quotes
    'org_a,2025-07-11,,"first line\nsecond line"',  # 3-4: quoted newline
    "org_a,2025-07-12,-3.0,",  # 5: good, empty comment
    "org_b,2025-07-10,abc,bad score",  # 6: line number counts the embedded newline
]


def write_master(landing: Path, source: str, lines: list[str], header: list[str] | None = None) -> None:
    columns = header if header is not None else master_schema(source).column_names
    text = "\n".join([",".join(columns), *lines]) + "\n"
    (landing / MASTER_FILES[source]).write_text(text, encoding="utf-8")


def make_landing(root: Path, **lines: list[str]) -> Path:
    """All seven masters with one valid row each, unless given other lines."""
    landing = root / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    for source in MASTER_SOURCES:
        write_master(landing, source, lines.get(source, VALID_ROWS[source]))
    return landing


def as_python(text: str, dtype: T.DataType) -> object:
    """What a landing text becomes in Bronze, for comparing manifest values with Bronze rows."""
    if isinstance(dtype, T.DoubleType):
        return float(text)
    if isinstance(dtype, T.BooleanType):
        return text.lower() == "true"
    return date.fromisoformat(text) if isinstance(dtype, T.DateType) else text


def read_rows(spark, uri: str, drop: tuple[str, ...] = ()) -> tuple[list[str], list]:
    """The table's columns and rows (without `drop`), collected now: later writes cannot change them."""
    df = spark.read.parquet(uri)
    kept = [c for c in df.columns if c not in drop]
    return kept, df.select(kept).collect()


def assert_same_rows(actual: tuple[list[str], list], expected: tuple[list[str], list]) -> None:
    """Same columns, and the same rows in any order with values exactly equal (no float tolerance)."""
    assert actual[0] == expected[0]
    assertDataFrameEqual(actual[1], expected[1], rtol=0, atol=0)


@pytest.fixture(scope="module")
def mixed_run(spark, tmp_path_factory):
    """One run over tickets and NPS files that hold every row-level case."""
    root = tmp_path_factory.mktemp("mixed")
    landing = make_landing(root, support_tickets=TICKET_LINES, nps_surveys=NPS_LINES)
    paths = LakePaths.from_roots(root / "lake", landing)
    report = bronze_batch.run(spark, paths, "20250101T000000Z-aaaaaa", sources=["support_tickets", "nps_surveys"])
    tickets = {r["ticket_id"]: r for r in spark.read.parquet(paths.bronze("support_tickets")).collect()}
    quarantine = {r["line_number"]: r for r in spark.read.parquet(paths.quarantine("support_tickets")).collect()}
    return paths, report, tickets, quarantine


@pytest.fixture(scope="module")
def faulty_run(faulty_chain):
    """The Bronze batch of the shared faulty chain (conftest), read only."""
    paths, reports, manifest = faulty_chain
    return paths, reports["bronze_batch"], manifest["masters"]


# --- contract (no Spark job) -------------------------------------------------------------

def test_schemas_cover_every_landing_master():
    assert set(MASTER_SOURCES) == set(MASTER_FILES)
    assert all(set(s.key) <= set(s.column_names) for s in MASTER_SCHEMAS.values())


def test_header_problems_accepts_reordered_columns():
    assert header_problems(["a", "b", "c"], ["c", "a", "b"]) == []


def test_header_problems_names_missing_and_extra_columns():
    assert header_problems(["a", "b"], ["a", "x"]) == ["missing column(s) ['b']", "unexpected column(s) ['x']"]


# --- row-level behaviour (one run, many checks) -------------------------------------------

def test_run_reconciles_every_table(mixed_run):
    _, report, _, _ = mixed_run
    counts = report.table("support_tickets")
    assert (counts.rows_in, counts.rows_out, counts.duplicates, counts.quarantined) == (10, 4, 1, 5)
    assert report.reconciles


def test_impossible_date_is_quarantined_with_column_and_value(mixed_run):
    _, _, tickets, quarantine = mixed_run
    assert "tkt_2" not in tickets
    assert quarantine[3]["rule"] == "unparsable_row"
    assert quarantine[3]["reason"] == "column created_at: '2025-02-30' is not a valid date (YYYY-MM-DD)"
    assert quarantine[3]["raw_line"] == TICKET_LINES[1]


def test_later_line_of_a_key_wins_and_earlier_is_quarantined(mixed_run):
    _, _, tickets, quarantine = mixed_run
    assert tickets["tkt_3"]["severity"] == "critical"
    assert quarantine[4]["rule"] == "duplicate_key_superseded"
    assert quarantine[4]["severity"] == "low"
    assert "line 7" in quarantine[4]["reason"]


def test_exact_duplicate_is_counted_not_quarantined(mixed_run):
    _, report, tickets, quarantine = mixed_run
    assert report.table("support_tickets").duplicates == 1
    assert tickets["tkt_4"]["sla_breached"] is False
    assert 5 not in quarantine and 6 not in quarantine


def test_nan_and_yes_are_unparsable(mixed_run):
    _, _, _, quarantine = mixed_run
    assert quarantine[8]["reason"] == ("column csat: 'NaN' is not a valid number; "
                                       "column sla_breached: 'yes' is not a valid boolean (True/False)")


def test_empty_key_is_quarantined(mixed_run):
    _, _, _, quarantine = mixed_run
    assert quarantine[9]["reason"] == "key column ticket_id is empty"


def test_extra_field_is_malformed_and_keeps_raw_text(mixed_run):
    _, _, _, quarantine = mixed_run
    assert quarantine[10]["reason"].startswith("malformed CSV record")
    assert quarantine[10]["raw_line"] == TICKET_LINES[8]


def test_types_are_cast_explicitly(mixed_run):
    _, _, tickets, _ = mixed_run
    row = tickets["tkt_7"]
    typed = (str(row["created_at"]), row["csat"], row["sla_breached"], row["resolved_at"])
    assert typed == ("2025-08-06", 2.5, False, None)


def test_quoted_comma_quote_and_newline_survive(spark, mixed_run):
    paths = mixed_run[0]
    comments = {str(r["survey_date"]): r["comment"] for r in spark.read.parquet(paths.bronze("nps_surveys")).collect()}
    assert comments["2025-07-10"] == 'Slow, but "fine"'
    assert comments["2025-07-11"] == "first line\nsecond line"


def test_line_number_counts_embedded_newlines(spark, mixed_run):
    paths = mixed_run[0]
    (row,) = spark.read.parquet(paths.quarantine("nps_surveys")).collect()
    assert (row["line_number"], row["record_number"], row["nps_score"]) == (6, 4, "abc")


def test_bronze_has_contract_schema_and_technical_columns(spark, mixed_run):
    paths, report, _, _ = mixed_run
    df = spark.read.parquet(paths.bronze("support_tickets"))
    assert df.schema == bronze_struct("support_tickets")
    row = df.select("source_file", "run_id").distinct().collect()
    assert [tuple(r) for r in row] == [(paths.landing_master("support_tickets"), report.run_id)]


# --- structure of the landing --------------------------------------------------------------

def test_reordered_columns_are_mapped_by_name(spark, tmp_path):
    landing = make_landing(tmp_path)
    columns = master_schema("users").column_names
    write_master(landing, "users", ["2025-08-01,admin,user_a,org_a,a@example.com,True,2025-05-02"],
                 header=[columns[6], columns[3], *columns[0:3], columns[4], columns[5]])
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    report = bronze_batch.run(spark, paths, "r1", sources=["users"])
    (row,) = spark.read.parquet(paths.bronze("users")).collect()
    assert (row["user_id"], row["role"], str(row["last_login"])) == ("user_a", "admin", "2025-08-01")
    assert report.table("users").details["columns_reordered"] is True


def test_extra_column_is_rejected_naming_it(spark, tmp_path):
    landing = make_landing(tmp_path)
    write_master(landing, "nps_surveys", ["org_a,2025-07-10,50.0,Great,x"],
                 header=[*master_schema("nps_surveys").column_names, "channel"])
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    with pytest.raises(LandingSchemaError, match=r"nps_surveys\.csv: unexpected column\(s\) \['channel'\]"):
        bronze_batch.run(spark, paths, "r1")


def test_missing_file_is_named(spark, tmp_path):
    landing = make_landing(tmp_path)
    (landing / "resources.csv").unlink()
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    with pytest.raises(LandingFileMissingError, match=r"not found: file://\S*/landing/resources\.csv"):
        bronze_batch.run(spark, paths, "r1")


def test_wrong_header_leaves_every_bronze_table_untouched(spark, tmp_path):
    landing = make_landing(tmp_path)
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    bronze_batch.run(spark, paths, "first", sources=["customers_orgs", "billing_monthly"])
    before = read_rows(spark, paths.bronze("customers_orgs"))
    write_master(landing, "customers_orgs", ["org_b,Beta,Retail,us-east,pro,True,2025-05-01,rep_a,active,web,1.0"])
    write_master(landing, "billing_monthly", VALID_ROWS["billing_monthly"],
                 header=["invoice", *master_schema("billing_monthly").column_names[1:]])
    with pytest.raises(LandingSchemaError) as error:
        bronze_batch.run(spark, paths, "second", sources=["customers_orgs", "billing_monthly"])
    assert "billing_monthly.csv: missing column(s) ['invoice_id']; unexpected column(s) ['invoice']" in str(error.value)
    assert "expected columns: ['invoice_id', 'org_id'" in str(error.value)
    assert_same_rows(read_rows(spark, paths.bronze("customers_orgs")), before)


def test_a_record_that_is_not_utf8_is_quarantined_not_landed_with_replaced_characters(spark, tmp_path):
    landing = make_landing(tmp_path)
    good = "org_b,Nimbus Dígital,Retail,us-east,pro,True,2025-05-01,rep_a,active,web,10.0"
    latin1 = "org_c,Nimbus Dígital,Retail,us-east,pro,True,2025-05-01,rep_a,active,web,10.0"
    header = ",".join(master_schema("customers_orgs").column_names)
    (landing / "customers_orgs.csv").write_bytes(f"{header}\n{good}\n".encode() + f"{latin1}\n".encode("latin-1"))
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    report = bronze_batch.run(spark, paths, "20250101T000000Z-aaaaaa", sources=["customers_orgs"])
    counts = report.table("customers_orgs")
    assert (counts.rows_in, counts.rows_out, counts.quarantined) == (2, 1, 1) and counts.reconciles
    assert [r["org_name"] for r in spark.read.parquet(paths.bronze("customers_orgs")).collect()] == ["Nimbus Dígital"]
    (rejected,) = spark.read.parquet(paths.quarantine("customers_orgs")).collect()
    assert (rejected["line_number"], rejected["rule"]) == (3, "unparsable_row")
    assert rejected["reason"].startswith("record is not valid UTF-8") and "save the file as UTF-8" in rejected["reason"]


def test_header_only_file_gives_an_empty_readable_table(spark, tmp_path):
    landing = make_landing(tmp_path)
    header = ",".join(master_schema("billing_monthly").column_names)
    (landing / "billing_monthly.csv").write_text("\ufeff" + header + "\r\n", encoding="utf-8")
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    report = bronze_batch.run(spark, paths, "r1", sources=["billing_monthly"])
    df = spark.read.parquet(paths.bronze("billing_monthly"))
    assert (report.table("billing_monthly").rows_in, df.count(), df.schema) == (0, 0, bronze_struct("billing_monthly"))


# --- snapshots: idempotency and change -----------------------------------------------------

@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_rerun_on_the_same_landing_rewrites_nothing_and_full_refresh_gives_identical_content(spark, tmp_path):
    landing = make_landing(tmp_path, support_tickets=TICKET_LINES)
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    technical = ("ingest_ts", "run_id", "quarantined_at")
    first = bronze_batch.run(spark, paths, "r1", sources=["support_tickets"])
    rows = [read_rows(spark, paths.bronze("support_tickets"), technical),
            read_rows(spark, paths.quarantine("support_tickets"), technical)]
    written = file_stamps(tmp_path / "lake", ("bronze", "quarantine"))
    second = bronze_batch.run(spark, paths, "r2", sources=["support_tickets"])
    counts = second.table("support_tickets")
    assert (counts.rows_in, counts.rows_out, counts.details["write_mode"], counts.details["bronze_run_id"]) == \
        (0, 0, "unchanged", "r1")
    assert file_stamps(tmp_path / "lake", ("bronze", "quarantine")) == written, "a re-run rewrote Bronze files"
    assert first.table("support_tickets").details["write_mode"] == "replaced"
    # full_refresh rewrites the snapshot, with the same content and counts
    third = bronze_batch.run(spark, paths, "r3", sources=["support_tickets"], full_refresh=True)
    assert first.as_rows() == third.as_rows()
    assert_same_rows(read_rows(spark, paths.bronze("support_tickets"), technical), rows[0])
    assert_same_rows(read_rows(spark, paths.quarantine("support_tickets"), technical), rows[1])
    assert {row["run_id"] for row in spark.read.parquet(paths.bronze("support_tickets")).collect()} == {"r3"}


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_a_snapshot_is_rewritten_when_its_table_its_landing_location_or_the_code_changed(spark, tmp_path):
    landing = make_landing(tmp_path, support_tickets=TICKET_LINES)
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    bronze_batch.run(spark, paths, "r1", sources=["support_tickets", "users"])

    def mode(run_id: str, paths=paths) -> dict:
        report = bronze_batch.run(spark, paths, run_id, sources=["support_tickets", "users"])
        return {t.table: t.details["write_mode"] for t in report.tables}

    quarantine = tmp_path / "lake" / "quarantine" / "support_tickets"
    shutil.rmtree(quarantine)  # a table deleted by hand: its snapshot is rewritten, the other kept
    assert mode("r2") == {"support_tickets": "replaced", "users": "unchanged"}
    assert quarantine.is_dir()
    state = io.read_json(spark, bronze_batch.state_uri(paths))
    state["masters"]["users"]["code_version"] = "0" * 16  # as if written by another version of the package
    io.write_json(spark, bronze_batch.state_uri(paths), state)
    assert mode("r3") == {"support_tickets": "unchanged", "users": "replaced"}
    moved = tmp_path / "moved"
    shutil.copytree(landing, moved)  # same bytes elsewhere: source_file would differ
    assert mode("r4", LakePaths.from_roots(tmp_path / "lake", moved)) == {"support_tickets": "replaced",
                                                                         "users": "replaced"}


def test_changed_landing_is_reflected_without_stale_partitions(spark, tmp_path):
    bad_row = "inv_c,org_a,2025-06-01,x,,1,USD,1"
    landing = make_landing(tmp_path, billing_monthly=[*VALID_ROWS["billing_monthly"], bad_row])
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    bronze_batch.run(spark, paths, "r1", sources=["billing_monthly"])
    write_master(landing, "billing_monthly", ["inv_b,org_a,2025-07-01,-60.0,2.0,10.6,EUR,1.1"])
    report = bronze_batch.run(spark, paths, "r2", sources=["billing_monthly"])
    rows = spark.read.parquet(paths.bronze("billing_monthly")).select("invoice_id", "subtotal", "month").collect()
    assert [(r["invoice_id"], r["subtotal"], str(r["month"])) for r in rows] == [("inv_b", -60.0, "2025-07-01")]
    inventory = report.table("billing_monthly").details["partition_inventory"]
    assert [p["partition"] for p in inventory] == ["month=2025-07-01"]
    assert spark.read.parquet(paths.quarantine("billing_monthly")).count() == 0


def test_pipeline_runs_the_stage_by_name(spark, tmp_path):
    from lakehouse_utils.pipeline import run_stage

    paths = LakePaths.from_roots(tmp_path / "lake", make_landing(tmp_path))
    report = run_stage(spark, paths, "bronze_batch", sources=["nps_surveys"], unknown_option=1)
    assert [c.table for c in report.tables] == ["nps_surveys"] and report.seconds > 0


# --- generated data with injected faults, checked against the generator's manifest ---------

@pytest.mark.parametrize("source", MASTER_SOURCES)
def test_faulty_counts_match_manifest(faulty_run, source):
    _, report, masters = faulty_run
    expected, counts = masters[source], report.table(source)
    assert (counts.rows_in, counts.rows_out, counts.duplicates, counts.quarantined) == (
        expected["data_rows"], expected["expected_bronze_rows"], expected["exact_duplicate_rows"],
        expected["superseded_key_rows"] + expected["unparsable_rows"])


def test_faulty_bronze_tables_hold_the_expected_rows_and_schema(spark, faulty_run):
    paths, _, masters = faulty_run
    for source in MASTER_SOURCES:
        df = spark.read.parquet(paths.bronze(source))
        expected = (source, masters[source]["expected_bronze_rows"], bronze_struct(source))
        assert (source, df.count(), df.schema) == expected


def test_faulty_superseded_rows_lose_to_the_later_line(spark, faulty_run):
    paths, _, masters = faulty_run
    for source in MASTER_SOURCES:
        (case,) = masters[source]["superseded"]
        schema = master_schema(source)
        is_key = reduce(lambda a, b: a & b, [F.col(k).cast("string") == v for k, v in case["key"].items()])
        (kept,) = spark.read.parquet(paths.bronze(source)).filter(is_key).collect()
        is_superseded = F.col("rule") == "duplicate_key_superseded"
        (lost,) = spark.read.parquet(paths.quarantine(source)).filter(is_superseded).collect()
        changed = [c for c in schema.column_names if case["winner"][c] != case["loser"][c]]
        assert [kept[c] for c in changed] == [as_python(case["winner"][c], schema.dtype(c)) for c in changed], source
        # An empty landing field is null in Bronze and its quarantine alike.
        assert {c: lost[c] for c in schema.column_names} == {c: v or None for c, v in case["loser"].items()}, source


def test_faulty_quarantine_rules_count(spark, faulty_run):
    paths, _, masters = faulty_run
    for source in MASTER_SOURCES:
        rules = dict(spark.read.parquet(paths.quarantine(source)).groupBy("rule").count().collect())
        assert rules == {"unparsable_row": masters[source]["unparsable_rows"],
                         "duplicate_key_superseded": masters[source]["superseded_key_rows"]}, source


def test_clean_generated_landing_has_nothing_quarantined(spark, generated_landing, tmp_path):
    manifest = json.loads((generated_landing / MANIFEST_NAME).read_text())["masters"]
    paths = LakePaths.from_roots(tmp_path / "lake", generated_landing)
    report = bronze_batch.run(spark, paths, "r1")
    assert {c.table: (c.rows_out, c.quarantined) for c in report.tables} == {
        s: (manifest[s]["data_rows"], 0) for s in MASTER_SOURCES}


# --- the course dataset ---------------------------------------------------------------------

def test_course_data_lands_whole(spark, course_chain):
    paths, reports = course_chain
    report = reports["bronze_batch"]
    expected = {"customers_orgs": 80, "users": 800, "resources": 400, "support_tickets": 1000,
                "marketing_touches": 1500, "nps_surveys": 92, "billing_monthly": 240}
    assert {s: spark.read.parquet(paths.bronze(s)).count() for s in MASTER_SOURCES} == expected
    assert {c.table: (c.duplicates, c.quarantined) for c in report.tables} == {s: (0, 0) for s in MASTER_SOURCES}
