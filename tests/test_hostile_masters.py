"""Hostile landing CSVs for bronze_batch (issue 11): the cases tests/test_bronze_batch.py does not cover.

Covered there and not repeated here: wrong header (and every table left untouched), extra
column, reordered columns, quoted commas/quotes/newlines, exact duplicate rows, a key
repeated with different content, 2025-02-30, NaN/yes, empty key, one field too many,
header-only file, a missing file named in the error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import file_stamps
from test_hostile_events import write_masters

from lakehouse_utils.bronze import batch as bronze_batch
from lakehouse_utils.bronze.batch import LandingFileMissingError, LandingSchemaError
from lakehouse_utils.contracts import master_schema
from lakehouse_utils.paths import MASTER_FILES, LakePaths

USERS_HEADER = ",".join(master_schema("users").column_names)
USER_1 = "user_1,org_a,a@example.com,admin,True,2025-05-02,2025-08-01"
USER_2 = "user_2,org_a,b@example.com,viewer,False,2025-05-03,"


def landing_with(root: Path, source: str, content: bytes) -> LakePaths:
    """The hand-made masters, one of them replaced by `content` (bytes: BOMs and CRs stay as given)."""
    landing = root / "landing"
    write_masters(landing)
    (landing / MASTER_FILES[source]).write_bytes(content)
    return LakePaths.from_roots(root / "lake", landing)


def run_one(spark, paths: LakePaths, source: str, run_id: str = "20250101T000000Z-000001"):
    return bronze_batch.run(spark, paths, run_id, sources=[source]).table(source)


def counts_tuple(counts) -> tuple[int, int, int, int]:
    return counts.rows_in, counts.rows_out, counts.duplicates, counts.quarantined


def quarantine_rows(spark, paths: LakePaths, source: str) -> list[dict]:
    rows = spark.read.parquet(paths.quarantine(source)).collect()
    return sorted((r.asDict() for r in rows), key=lambda r: r["line_number"])


def test_missing_file_is_named_and_no_table_is_touched(spark, tmp_path):
    paths = landing_with(tmp_path, "users", (USERS_HEADER + "\n" + USER_1 + "\n").encode())
    bronze_batch.run(spark, paths, "20250101T000000Z-000001")
    before = file_stamps(tmp_path / "lake")
    landing = tmp_path / "landing"
    (landing / "users.csv").write_text(USERS_HEADER + "\n" + USER_2 + "\n", encoding="utf-8")  # would change Bronze
    (landing / "resources.csv").unlink()
    with pytest.raises(LandingFileMissingError) as caught:
        bronze_batch.run(spark, paths, "20250101T000000Z-000002")
    assert str(caught.value).startswith(f"landing master file(s) not found: {paths.landing_master('resources')}. ")
    assert "--landing (or LANDING_DIR)" in str(caught.value)
    assert file_stamps(tmp_path / "lake") == before
    assert len(before) >= 14  # 7 Bronze + 7 quarantine tables, at least one data file each


def test_empty_file_is_rejected_before_any_write(spark, tmp_path):
    paths = landing_with(tmp_path, "users", b"")
    with pytest.raises(LandingSchemaError, match=r"users\.csv: the file is empty \(no header line\)"):
        run_one(spark, paths, "users")
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("header, problem", [
    (USERS_HEADER.replace(",", ";"), "missing column(s) ['active', 'created_at', 'email', 'last_login', 'org_id', "
                                     "'role', 'user_id']; unexpected column(s) "
                                     "['user_id;org_id;email;role;active;created_at;last_login']"),
    (USERS_HEADER + ",email", "unexpected column(s) ['email']"),
    (USERS_HEADER.replace("user_id", "User_ID"), "missing column(s) ['user_id']; unexpected column(s) ['User_ID']"),
], ids=["semicolon-delimited", "repeated-column", "different-case"])
def test_malformed_header_is_rejected_naming_the_problem(spark, tmp_path, header, problem):
    paths = landing_with(tmp_path, "users", (header + "\n" + USER_1 + "\n").encode())
    with pytest.raises(LandingSchemaError) as caught:
        run_one(spark, paths, "users")
    assert f"users.csv: {problem}" in str(caught.value)


def test_bom_and_crlf_leave_no_trace_in_the_values(spark, tmp_path):
    content = b"\xef\xbb\xbf" + "\r\n".join([USERS_HEADER, USER_1, USER_2]).encode() + b"\r\n"
    paths = landing_with(tmp_path, "users", content)
    counts = run_one(spark, paths, "users")
    rows = {r["user_id"]: r for r in spark.read.parquet(paths.bronze("users")).collect()}
    assert counts_tuple(counts) == (2, 2, 0, 0)
    assert (str(rows["user_1"]["last_login"]), rows["user_2"]["last_login"], rows["user_2"]["role"]) == (
        "2025-08-01", None, "viewer")


def test_unbalanced_quote_swallows_the_rest_of_the_file_into_one_quarantined_record(spark, tmp_path):
    broken = 'user_2,org_a,"b@example.com,viewer,False,2025-05-03,'
    user_3 = "user_3,org_a,c@example.com,admin,True,2025-05-04,"
    paths = landing_with(tmp_path, "users", "\n".join([USERS_HEADER, USER_1, broken, user_3, ""]).encode())
    counts = run_one(spark, paths, "users")
    (row,) = quarantine_rows(spark, paths, "users")
    assert counts_tuple(counts) == (2, 1, 0, 1)  # user_3 is inside the open quote: kept as text, not lost
    assert (row["line_number"], row["record_number"], row["raw_line"]) == (3, 2, f"{broken}\n{user_3}")
    assert "unbalanced quotes" in row["reason"]


def test_line_numbers_stay_exact_after_blank_lines(spark, tmp_path):
    bad_date = "user_3,org_a,c@example.com,admin,True,2025-02-30,"
    lines = [USERS_HEADER, USER_1, "", "   ", bad_date, "", USER_2, "", ""]  # physical lines 1..9
    paths = landing_with(tmp_path, "users", "\n".join(lines).encode())
    counts = run_one(spark, paths, "users")
    found = [(r["line_number"], r["record_number"], r["raw_line"]) for r in quarantine_rows(spark, paths, "users")]
    assert counts_tuple(counts) == (4, 2, 0, 2)  # empty lines carry no record; a blank-filled line is one
    assert found == [(4, 2, "   "), (5, 3, bad_date)]


def test_line_numbers_stay_exact_after_a_quoted_blank_line(spark, tmp_path):
    comment = '"first paragraph\n\nsecond paragraph"'
    lines = ["org_id,survey_date,nps_score,comment", f"org_a,2025-08-01,50.0,{comment}", "org_a,2025-08-02,oops,x"]
    paths = landing_with(tmp_path, "nps_surveys", "\n".join(lines).encode())
    run_one(spark, paths, "nps_surveys")
    (row,) = quarantine_rows(spark, paths, "nps_surveys")
    assert (row["line_number"], row["record_number"]) == (5, 2)


def test_an_unparsable_later_copy_does_not_displace_a_good_key(spark, tmp_path):
    good = "tkt_1,org_a,billing,high,2025-08-01,,5.0,False"
    bad = "tkt_1,org_a,billing,critical,2025-08-32,,5.0,False"
    header = ",".join(master_schema("support_tickets").column_names)
    paths = landing_with(tmp_path, "support_tickets", "\n".join([header, good, bad, ""]).encode())
    counts = run_one(spark, paths, "support_tickets")
    (kept,) = spark.read.parquet(paths.bronze("support_tickets")).collect()
    (row,) = quarantine_rows(spark, paths, "support_tickets")
    assert counts_tuple(counts) == (2, 1, 0, 1)
    assert (kept["severity"], row["rule"], row["line_number"]) == ("high", "unparsable_row", 3)

