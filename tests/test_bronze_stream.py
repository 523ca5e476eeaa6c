"""Bronze stream: lossless, exactly-once streaming of usage events into bronze/usage_events."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import short_lived_driver_env
from pyspark.sql import functions as F

from lakehouse_utils import io
from lakehouse_utils.bronze import stream as bronze_stream
from lakehouse_utils.bronze.events_parsing import BRONZE_EVENTS_SCHEMA, RAW_QUARANTINE_SCHEMA, parse_lines, split_files
from lakehouse_utils.bronze.stream_compaction import FULL_FILE_BYTES, files_to_merge, roll_forward
from lakehouse_utils.bronze.stream_dedupe import with_markers
from lakehouse_utils.bronze.stream_files import COMMITS_DIR, COMPACTION_PLAN
from lakehouse_utils.bronze.stream_folder import read_file_log
from lakehouse_utils.bronze.stream_writer import BronzeBatchWriter, StreamTargets
from lakehouse_utils.paths import LakePaths, join, local_path
from lakehouse_utils.report import ReconciliationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "20250101T000000Z-abc123"


def event(event_id: str | None, ts: str = "2025-08-17T01:55:00Z", cost: float = 1.0, **extra) -> str:
    fields = {"event_id": event_id, "timestamp": ts, "org_id": "org_a", "resource_id": "res_a", "service": "compute",
              "region": "us-east", "metric": "requests", "value": 4.0, "unit": "count", "cost_usd_increment": cost,
              "schema_version": 1, **extra}
    return json.dumps(fields)


def make_landing(root: Path, files: dict[str, bytes | str]) -> Path:
    """Event files with strictly increasing modification times in dict order (the arrival order)."""
    events_dir = root / "landing" / "usage_events_stream"
    events_dir.mkdir(parents=True)
    for offset, (name, content) in enumerate(files.items()):
        path = events_dir / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        os.utime(path, (1_700_000_000 + offset, 1_700_000_000 + offset))
    return root / "landing"


def lake_paths(root: Path, landing: Path) -> LakePaths:
    return LakePaths.from_roots(root / "lake", landing)


def parse(spark, lines: list[str]):
    rows = [(line, "file:/x.jsonl", number, datetime(2025, 1, 1)) for number, line in enumerate(lines, 1)]
    schema = "raw_line string, source_file string, line_number long, file_modification_time timestamp"
    return parse_lines(spark.createDataFrame(rows, schema))


def bronze(spark, paths: LakePaths):
    return spark.read.schema(BRONZE_EVENTS_SCHEMA).parquet(paths.bronze("usage_events"))


def bronze_ids(spark, paths: LakePaths) -> list[str]:
    rows = bronze(spark, paths).where(F.col("event_id") != "").select("event_id").collect()
    return sorted(row.event_id for row in rows)


def quarantine(spark, paths: LakePaths):
    return spark.read.schema(RAW_QUARANTINE_SCHEMA).parquet(paths.quarantine("usage_events_raw"))


def files_per_partition(paths: LakePaths) -> dict[str, int]:
    table = Path(paths.bronze("usage_events").removeprefix("file://"))
    return {d.name: len(list(d.glob("*.parquet"))) for d in table.iterdir() if d.is_dir()}


# ---------------------------------------------------------------- parsing (static DataFrames)

def test_parse_lines_classifies_every_kind_of_bad_line(spark):
    lines = ["", "   \t", "\ufeff", '{"event_id": "e1", "timestamp": ', "garbage ### not json", "[1, 2]",
             '"a string"', "42", "null", event("e2")]
    kinds = [row.line_kind for row in parse(spark, lines).collect()]
    assert kinds == ["blank", "blank", "blank", "malformed_json", "malformed_json", "not_a_json_object",
                     "not_a_json_object", "not_a_json_object", "not_a_json_object", "event"]


def test_split_files_numbers_every_line_and_a_final_break_ends_the_last_line(spark):
    """LF, CRLF and CR all end a line; the break at the end of a file opens no line, but a blank line
    before it is a line (counted as blank, so the file's lines reconcile)."""
    files = {"empty": "", "lf": "a\nb\n", "crlf": "a\r\nb", "cr": "a\rb\r", "blank_last": "a\n\n",
             "blank_crlf": "a\r\n\r\n", "only_break": "\n"}
    df = spark.createDataFrame([(text, name, datetime(2025, 8, 1)) for name, text in files.items()],
                               "value string, source_file string, file_modification_time timestamp")
    got: dict[str, list] = {name: [] for name in files}
    for row in split_files(df).collect():
        got[row.source_file].append((row.line_number, row.raw_line))
    assert {name: sorted(lines) for name, lines in got.items()} == {
        "empty": [], "lf": [(1, "a"), (2, "b")], "crlf": [(1, "a"), (2, "b")], "cr": [(1, "a"), (2, "b")],
        "blank_last": [(1, "a"), (2, "")], "blank_crlf": [(1, "a"), (2, "")], "only_break": [(1, "")]}


def test_parse_lines_strips_bom_and_carriage_return(spark):
    row = parse(spark, ["\ufeff" + event("e1") + "\r"]).first()
    assert (row.line_kind, row.event_id, row.cost_usd_increment) == ("event", "e1", 1.0)


def test_parse_lines_keeps_value_text_for_numbers_and_strings(spark):
    rows = parse(spark, [event("n", value=124.0), event("s", value="8.9427"), event("x", value=None),
                         event("t", value="N/A")]).collect()
    assert [row.value_raw for row in rows] == ["124.0", "8.9427", None, "N/A"]


def test_parse_lines_types_numbers_and_ignores_unknown_fields(spark):
    line = event("e", schema_version=2, carbon_kg=0, genai_tokens=12_345_678_901, surprise={"a": 1})
    row = parse(spark, [line]).first()
    assert (row.schema_version, row.carbon_kg, row.genai_tokens, row.type_error_line) == (2, 0.0, 12_345_678_901, None)


def test_parse_lines_keeps_an_object_with_a_mistyped_field_and_its_raw_text(spark):
    line = event("e", cost="oops")
    row = parse(spark, [line]).first()
    assert (row.line_kind, row.event_id, row.cost_usd_increment, row.type_error_line) == ("event", "e", None, line)


@pytest.mark.parametrize("text, expected", [
    ("2025-08-17T01:55:00Z", datetime(2025, 8, 17, 1, 55)),
    ("2025-08-17T01:55:00", datetime(2025, 8, 17, 1, 55)),  # no zone: UTC
    ("2025-08-17T03:55:00+02:00", datetime(2025, 8, 17, 1, 55)),
    ("2025-08-16T22:55:00-03:00", datetime(2025, 8, 17, 1, 55)),
    ("2025-08-17T01:55:00.123456Z", datetime(2025, 8, 17, 1, 55, 0, 123456)),
    ("2025-08-17T01:55Z", datetime(2025, 8, 17, 1, 55)),
    ("not-a-time", None),
    ("2025-13-45T00:00:00Z", None),
])
def test_parse_lines_reads_event_time_in_utc(spark, text, expected):
    row = parse(spark, [event("e", ts=text)]).select(F.unix_micros("event_ts").alias("micros"), "timestamp_raw").first()
    expected_micros = None if expected is None else int(expected.replace(tzinfo=timezone.utc).timestamp() * 1_000_000)
    assert (row.micros, row.timestamp_raw) == (expected_micros, text)


def test_parse_lines_hash_tells_replays_from_conflicts(spark):
    rows = parse(spark, [event("e"), event("e"), event("e", cost=2.0), event("e", value=None)]).collect()
    hashes = [row.content_hash for row in rows]
    assert hashes[0] == hashes[1] and len(set(hashes)) == 3


# ---------------------------------------------------------------- streaming runs on hand-made files

def test_run_quarantines_bad_lines_and_reconciles(spark, tmp_path):
    landing = make_landing(tmp_path, {
        "a.jsonl": b"\xef\xbb\xbf" + f"{event('e1')}\r\n\r\n{event('e2')}\r\n[1,2]\r\n".encode()
        + b'{"event_id": "e3"\r\n',
        "b.jsonl": f"{event('e4')}\n   \ngarbage\n{event(None)}\n{event('')}\n",
    })
    paths = lake_paths(tmp_path, landing)
    counts = bronze_stream.run(spark, paths, RUN_ID).table("usage_events")
    assert (counts.rows_in, counts.rows_out, counts.duplicates, counts.quarantined, counts.ignored) == (10, 5, 0, 3, 2)
    assert counts.reconciles
    rows = quarantine(spark, paths).collect()
    rejected = sorted((r.rule, r.source_file.rsplit("/", 1)[-1], r.line_number) for r in rows)
    assert rejected == [("malformed_json", "a.jsonl", 5), ("malformed_json", "b.jsonl", 3),
                        ("not_a_json_object", "a.jsonl", 4)]


# The second set holds the key separator: a marker is only its key (`p|<id>|<hash>`), and the id is
# read back by the hash's fixed length, so `x|1`, `x` and `x|1|` stay three ids.
@pytest.mark.parametrize("e1, e2, e3", [("e1", "e2", "e3"), ("x|1", "x", "x|1|")], ids=["plain", "separator"])
def test_run_counts_replays_and_quarantines_conflicts_first_arrival_wins(spark, tmp_path, e1, e2, e3):
    landing = make_landing(tmp_path, {
        "1.jsonl": f"{event(e1, cost=1.0)}\n{event(e2)}\n",
        "2.jsonl": f"{event(e1, cost=1.0)}\n{event(e1, cost=9.0)}\n{event(e3)}\n{event(e3, cost=5.0)}\n",
    })
    paths = lake_paths(tmp_path, landing)
    counts = bronze_stream.run(spark, paths, RUN_ID, max_files_per_trigger=1).table("usage_events")
    assert (counts.rows_out, counts.duplicates, counts.quarantined) == (3, 1, 2)
    costs = {r.event_id: r.cost_usd_increment for r in bronze(spark, paths).collect()}
    assert costs == {e1: 1.0, e2: 1.0, e3: 1.0}
    rows = quarantine(spark, paths).collect()
    rejected = sorted((r.rule, json.loads(r.raw_line)["cost_usd_increment"], r.event_id) for r in rows)
    assert rejected == [("conflicting_duplicate", 5.0, e3), ("conflicting_duplicate", 9.0, e1)]


@pytest.mark.slow  # scenario: re-runs stages on its own lake (full suite only, ADR 153.2)
def test_run_remembers_ids_across_runs_and_counts_a_replayed_conflict_once(spark, tmp_path):
    """The dedupe state outlives the run: a later run reads no Bronze, yet knows every id (ADR 045).

    A conflicting copy is quarantined once; an exact replay of that same line later is a duplicate.
    """
    landing = make_landing(tmp_path, {"1.jsonl": f"{event('e1', cost=1.0)}\n{event('e2')}\n"})
    paths = lake_paths(tmp_path, landing)
    bronze_stream.run(spark, paths, RUN_ID)
    folder = landing / "usage_events_stream"
    (folder / "2.jsonl").write_text(f"{event('e1', cost=9.0)}\n{event('e3')}\n")
    second = bronze_stream.run(spark, paths, "20250101T000001Z-def456").table("usage_events")
    (folder / "3.jsonl").write_text(f"{event('e1', cost=9.0)}\n{event('e1', cost=1.0)}\n{event('e2')}\n")
    third = bronze_stream.run(spark, paths, "20250101T000002Z-ghi789").table("usage_events")
    assert (second.rows_out, second.duplicates, second.quarantined) == (1, 0, 1)
    assert (third.rows_in, third.rows_out, third.duplicates, third.quarantined) == (3, 0, 3, 0)
    assert sorted(bronze_ids(spark, paths)) == ["e1", "e2", "e3"]
    [conflict] = quarantine(spark, paths).collect()
    assert (conflict.event_id, conflict.line_number) == ("e1", 1)
    assert "already in Bronze with different content" in conflict.reason
    state = local_path(paths.checkpoint("bronze_usage_events")) / "state" / "0"
    assert sorted(p.name for p in state.iterdir() if p.name.isdigit()) == ["0", "1"]  # 2 state partitions, fixed
    assert list(state.rglob("*.changelog"))  # RocksDB with changelog checkpointing


def test_run_writes_late_rows_flagged_never_drops_them(spark, tmp_path):
    landing = make_landing(tmp_path, {
        "1.jsonl": f"{event('recent', ts='2025-08-30T12:00:00Z')}\n",
        "2.jsonl": f"{event('late', ts='2025-08-30T09:00:00Z')}\n{event('in_delay', ts='2025-08-30T11:00:00Z')}\n",
    })
    paths = lake_paths(tmp_path, landing)
    report = bronze_stream.run(spark, paths, RUN_ID, max_files_per_trigger=1, watermark_delay="2 hours")
    flags = {r.event_id: (r.is_late, r.lateness_seconds) for r in bronze(spark, paths).collect()}
    assert flags == {"recent": (False, 0), "late": (True, 3600), "in_delay": (False, 0)}
    assert report.table("usage_events").details["lateness_histogram"]["late_le_1h"] == 1


def test_run_again_without_new_files_adds_nothing(spark, tmp_path):
    paths = lake_paths(tmp_path, make_landing(tmp_path, {"1.jsonl": f"{event('e1')}\n{event('e2')}\n"}))
    bronze_stream.run(spark, paths, RUN_ID)
    again = bronze_stream.run(spark, paths, "20250101T000001Z-def456").table("usage_events")
    assert (again.rows_in, again.rows_out, bronze(spark, paths).count()) == (0, 0, 2)


def test_a_batch_whose_writer_loses_a_row_is_refused_before_publishing_and_redone_whole(spark, tmp_path,
                                                                                        monkeypatch):
    """The commit records the rows each writer received; a transform that drops one stops the batch unpublished."""
    from lakehouse_utils.bronze import stream_writer

    paths = lake_paths(tmp_path, make_landing(tmp_path, {"1.jsonl": f"{event('e1')}\n{event('e2')}\ngarbage\n"}))
    exact = stream_writer.bronze_rows
    monkeypatch.setattr(stream_writer, "bronze_rows",
                        lambda rows, *args: exact(rows, *args).where(F.col("event_id") != "e2"))
    with pytest.raises(ReconciliationError, match=r"batch 0 was not committed: 2 lines were classified for "
                                                   r"usage_events but its writer received 1 rows"):
        bronze_stream.run(spark, paths, RUN_ID)
    commits = tmp_path / "lake" / "_checkpoints" / bronze_stream.CHECKPOINT / COMMITS_DIR
    assert not list(commits.glob("*.json")) and not (tmp_path / "lake" / "bronze" / "usage_events").exists()
    monkeypatch.undo()
    report = bronze_stream.run(spark, paths, "20250101T000001Z-def456")
    counts = report.table("usage_events")
    assert (counts.rows_in, counts.rows_out, counts.quarantined) == (3, 2, 1) and bronze_ids(spark, paths) == ["e1", "e2"]
    (record,) = bronze_stream.read_commits(spark, paths.checkpoint(bronze_stream.CHECKPOINT))
    assert (record["bronze_rows_written"], record["quarantine_rows_written"]) == (2, 1)


def test_a_line_that_is_not_utf8_is_quarantined_and_files_the_stream_does_not_read_are_named(spark, tmp_path):
    latin1 = event("e2", org_id="org_X").encode().replace(b"org_X", b"org_\xe9")
    landing = make_landing(tmp_path, {"1.jsonl": f"{event('e1', org_id='org_é')}\n".encode() + latin1 + b"\n",
                                      "2.json": f"{event('e3')}\n", "notes.txt": "not events\n",
                                      "_part-5.jsonl": f"{event('e5')}\n", ".part-6.jsonl.tmp": f"{event('e6')}\n"})
    (landing / "usage_events_stream" / "old").mkdir()
    (landing / "usage_events_stream" / "old" / "3.jsonl").write_text(f"{event('e4')}\n")
    paths = lake_paths(tmp_path, landing)
    report = bronze_stream.run(spark, paths, RUN_ID)
    counts = report.table("usage_events")
    assert (counts.rows_in, counts.rows_out, counts.quarantined) == (2, 1, 1) and counts.reconciles
    assert [r.org_id for r in bronze(spark, paths).collect()] == ["org_é"]
    assert [(r.rule, r.line_number) for r in quarantine(spark, paths).collect()] == [("malformed_json", 2)]
    warning, hidden = report.warnings
    assert warning.startswith("3 file(s) in ") and "(2.json, notes.txt, old/3.jsonl)" in warning
    assert hidden.startswith("1 event file(s) in ") and "(_part-5.jsonl)" in hidden  # not the producer's .tmp
    assert "warning: 3 file(s)" in report.format()


def test_an_empty_event_folder_and_files_changed_after_they_were_read_are_named(spark, tmp_path):
    landing = make_landing(tmp_path, {})
    folder = landing / "usage_events_stream"
    paths = lake_paths(tmp_path, landing)
    (warning,) = bronze_stream.run(spark, paths, RUN_ID).warnings
    assert warning.startswith("no *.jsonl file in ") and "nothing to stream" in warning

    (folder / "1.jsonl").write_text(f"{event('e1')}\n")
    (folder / "2.jsonl").write_bytes(b"")  # a producer that created the file before writing it
    report = bronze_stream.run(spark, paths, "20250101T000001Z-abc124")
    assert report.table("usage_events").rows_out == 1 and report.warnings == []  # an empty file is an empty batch

    (folder / "2.jsonl").write_text(f"{event('e2')}\n")
    with (folder / "1.jsonl").open("a") as appended:
        appended.write(f"{event('e3')}\n")
    for name, seconds in (("1.jsonl", 1_800_000_000), ("2.jsonl", 1_800_000_001)):
        os.utime(folder / name, (seconds, seconds))
    report = bronze_stream.run(spark, paths, "20250101T000002Z-abc125")
    (warning,) = report.warnings
    assert report.table("usage_events").rows_in == 0 and bronze_ids(spark, paths) == ["e1"]
    assert warning.startswith("2 file(s) in ") and "changed after the stream read them (1.jsonl, 2.jsonl)" in warning

    shutil.copy(folder / "1.jsonl", folder / "1-again.jsonl")  # the fix the warning gives
    report = bronze_stream.run(spark, paths, "20250101T000003Z-abc126")
    counts = report.table("usage_events")
    assert (counts.rows_in, counts.rows_out, counts.duplicates) == (2, 1, 1) and bronze_ids(spark, paths) == ["e1", "e3"]


def test_the_file_log_is_the_latest_compact_file_and_the_batches_after_it(spark, tmp_path):
    log = tmp_path / "checkpoint" / "sources" / "0"
    log.mkdir(parents=True)

    def entries(*pairs):
        return "v1\n" + "".join(json.dumps({"path": f"file:///l/{name}", "timestamp": ts, "batchId": 0}) + "\n"
                                 for name, ts in pairs)

    (log / "8").write_text(entries(("a.jsonl", 1), ("gone.jsonl", 5)))  # before the compact file: superseded
    (log / "9.compact").write_text(entries(("a.jsonl", 2), ("b.jsonl", 3)))
    (log / "10").write_text(entries(("c.jsonl", 4), ("d%20e.jsonl", 6)))  # Spark URL-encodes the paths it logs
    (log / ".10.crc").write_text("checksum")
    seen = read_file_log(spark, str(tmp_path / "checkpoint"))
    assert seen == {"a.jsonl": 2, "b.jsonl": 3, "c.jsonl": 4, "d e.jsonl": 6}


def test_the_state_store_writes_no_checksum_files_that_a_retried_batch_could_contradict(spark, tmp_path):
    paths = lake_paths(tmp_path, make_landing(tmp_path, {"1.jsonl": f"{event('e1')}\n"}))
    bronze_stream.run(spark, paths, RUN_ID)
    state = tmp_path / "lake" / "_checkpoints" / bronze_stream.CHECKPOINT / "state"
    changelogs = [p.name for p in state.rglob("*.changelog*") if not p.name.startswith(".")]
    assert changelogs and not [name for name in changelogs if not name.endswith(".changelog")], changelogs


def test_run_ingests_a_new_file_with_an_old_modification_time(spark, tmp_path):
    landing = make_landing(tmp_path, {"1.jsonl": f"{event('e1')}\n"})
    paths = lake_paths(tmp_path, landing)
    bronze_stream.run(spark, paths, RUN_ID)
    copied = landing / "usage_events_stream" / "2.jsonl"  # e.g. unzipped with its original, older mtime
    copied.write_text(f"{event('e2')}\n")
    os.utime(copied, (1_700_000_000 - 30 * 86_400, 1_700_000_000 - 30 * 86_400))
    again = bronze_stream.run(spark, paths, "20250101T000001Z-def456").table("usage_events")
    assert (again.rows_out, bronze(spark, paths).count()) == (1, 2)


def test_run_writes_one_file_per_batch_and_keeps_partitions_small_while_it_runs(spark, tmp_path):
    files = {f"{n}.jsonl": f"{event(f'a{n}', ts='2025-08-01T00:00:00Z')}\n{event(f'b{n}', ts='2025-08-02T00:00:00Z')}\n"
             for n in range(6)}
    paths = lake_paths(tmp_path, make_landing(tmp_path, files))
    seen: list[int] = []

    def count_files(new_events, record):  # called inside each batch, after its files are in place
        seen.append(sum(files_per_partition(paths).values()) if Path(local_path(paths.bronze("usage_events"))).exists()
                    else 0)

    report = bronze_stream.run(spark, paths, RUN_ID, max_files_per_trigger=1, on_commit=count_files)
    batches = report.table("usage_events").details["batches"]
    # 6 batches, two event dates each: 6 files without compaction, never more than 4 with it
    assert len(batches) == 6 and max(seen) <= 4
    assert list(files_per_partition(paths)) == [f"ingest_date={datetime.now(timezone.utc).date()}"]
    assert max(files_per_partition(paths).values()) <= 4 and bronze(spark, paths).count() == 12


@pytest.mark.parametrize(("sizes", "merged"), [
    ([10, 5, 3, 2, 1], [2, 1]), ([10, 9, 3, 2, 1], [2, 1]), ([1, 1, 1, 1, 1], [1, 1, 1, 1, 1]),
    ([40, 20, 10, 5], []), ([FULL_FILE_BYTES, 4, 3, 2, 1], []), ([9, 8, 7, 6, 5, 4], [9, 8, 7, 6, 5, 4]),
    ([30, 8, 4, 2, 1, 1], [2, 1, 1]),
])
def test_files_to_merge_merges_the_smallest_tier(sizes, merged):
    files = [io.FileEntry(f"t/f{n}", size) for n, size in enumerate(sizes)]
    chosen = files_to_merge(files)
    assert sorted((size for f in files for size in [f.size] if f.path in chosen), reverse=True) == merged


def test_run_in_processing_time_mode_stops_after_the_timeout(spark, tmp_path):
    paths = lake_paths(tmp_path, make_landing(tmp_path, {"1.jsonl": f"{event('e1')}\n{event('e2')}\n"}))
    report = bronze_stream.run(spark, paths, RUN_ID, trigger="processingTime", interval="1 second", timeout_seconds=3)
    assert (report.table("usage_events").rows_out, bronze(spark, paths).count()) == (2, 2)
    assert not [query for query in spark.streams.active if query.name and query.name.startswith("bronze_stream")]


def test_run_rejects_an_unparsable_watermark_delay(spark, tmp_path):
    paths = lake_paths(tmp_path, make_landing(tmp_path, {"1.jsonl": f"{event('e1')}\n"}))
    with pytest.raises(ValueError, match="invalid watermark delay '2 hourz'"):
        bronze_stream.run(spark, paths, RUN_ID, watermark_delay="2 hourz")


def test_batch_writer_skips_a_committed_batch_and_removes_a_crashed_attempt(spark, tmp_path):
    paths = lake_paths(tmp_path, make_landing(tmp_path, {"1.jsonl": f"{event('e1')}\n"}))
    targets = StreamTargets(paths.bronze("usage_events"), paths.quarantine("usage_events_raw"),
                            paths.checkpoint("bronze_usage_events"))
    io.write_text(spark, join(targets.checkpoint, "metadata"), '{"id":"0123abcd-0000-0000-0000-000000000000"}')
    partition = Path(targets.bronze.removeprefix("file://")) / "ingest_date=2025-08-17"
    stray = partition / "part-0123abcd-b00000003-00000.snappy.parquet"
    partition.mkdir(parents=True)
    stray.write_bytes(b"left by a crashed attempt")
    parsed = parse(spark, [event("e1")])
    batch = with_markers(parsed, parsed)  # a batch as the stream hands it over: lines and first-seen markers
    writer = BronzeBatchWriter(targets, RUN_ID, bronze_stream.parse_delay("2 hours"))
    writer(batch, 3)
    writer(batch, 3)
    assert (writer.skipped, len(writer.records), bronze(spark, paths).count()) == ([3], 1, 1)


def test_roll_forward_finishes_an_interrupted_compaction_swap(spark, tmp_path):
    checkpoint, part = tmp_path / "ckpt", tmp_path / "table" / "event_date=2025-08-01"
    part.mkdir(parents=True)
    (tmp_path / "staged").mkdir()
    (tmp_path / "staged" / "new.parquet").write_text("compacted")
    old = [part / f"old{n}.parquet" for n in range(5)]
    for path in old:
        path.write_text("old")
    plan = {"staging": str(tmp_path / "staged"),
            "entries": [{"staged": str(tmp_path / "staged" / "new.parquet"), "new": str(part / "compact.parquet"),
                         "old": [str(p) for p in old]}]}
    io.write_json(spark, str(checkpoint / COMPACTION_PLAN), plan)
    assert roll_forward(spark, str(checkpoint)) == 1
    assert sorted(p.name for p in part.iterdir()) == ["compact.parquet"]


# ---------------------------------------------------------------- generated data with every fault

def copy_landing(source: Path, target: Path, reverse: bool = False) -> Path:
    """The event files (and the expected-id list) in a new landing, optionally in reversed arrival order."""
    events = sorted((source / "usage_events_stream").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    if reverse:
        events.reverse()
    (target / "usage_events_stream").mkdir(parents=True)
    for offset, path in enumerate(events):
        copy = target / "usage_events_stream" / path.name
        shutil.copyfile(path, copy)
        os.utime(copy, (1_700_000_000 + offset, 1_700_000_000 + offset))
    return target


def expected_ids(landing: Path) -> list[str]:
    return sorted((landing / "_expected_bronze_event_ids.txt").read_text().split())


def assert_matches_manifest(counts, manifest: dict) -> None:
    expected = manifest["events"]
    assert (counts.rows_in, counts.ignored, counts.duplicates, counts.rows_out, counts.quarantined) == (
        expected["lines_total"], expected["blank_lines"], expected["exact_replays"], expected["bronze_rows"],
        expected["malformed_lines"] + expected["conflicting_duplicates"])
    assert counts.reconciles


@pytest.fixture(scope="module")
def faulty_seven_per_trigger(spark, faulty_landing, tmp_path_factory):
    """(paths, counts): the faulty landing streamed 7 files per trigger into a lake of this module, read only.

    Shared by the trigger-size and late-file checks, which each streamed it once before."""
    landing, _ = faulty_landing
    paths = LakePaths.from_roots(tmp_path_factory.mktemp("seven_per_trigger") / "lake", landing)
    return paths, bronze_stream.run(spark, paths, RUN_ID, max_files_per_trigger=7).table("usage_events")


@pytest.mark.parametrize("max_files", [pytest.param(7, id="7-files", marks=pytest.mark.slow),
                                       pytest.param(None, id="all-files")])
def test_generated_events_land_identically_for_any_trigger_size(spark, faulty_landing, faulty_chain, request,
                                                                max_files):
    landing, manifest = faulty_landing
    if max_files is None:  # all files in one micro-batch: the session's faulty chain ran exactly that
        paths, reports, _ = faulty_chain
        counts = reports["bronze_stream"].table("usage_events")
    else:
        paths, counts = request.getfixturevalue("faulty_seven_per_trigger")
    assert bronze_ids(spark, paths) == expected_ids(landing)
    assert_matches_manifest(counts, manifest)


# One file per trigger: a micro-batch per file, so the smaller landing (10 files, every fault) keeps it short.
@pytest.mark.slow
def test_generated_events_land_identically_one_file_per_trigger(spark, small_faulty_landing, tmp_path):
    landing, manifest = small_faulty_landing
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    counts = bronze_stream.run(spark, paths, RUN_ID, max_files_per_trigger=1).table("usage_events")
    assert bronze_ids(spark, paths) == expected_ids(landing)
    assert_matches_manifest(counts, manifest)


def test_generated_events_land_identically_in_reverse_arrival_order(spark, faulty_landing, tmp_path):
    landing, manifest = faulty_landing
    reversed_landing = copy_landing(landing, tmp_path / "reversed", reverse=True)
    paths = LakePaths.from_roots(tmp_path / "lake", reversed_landing)
    counts = bronze_stream.run(spark, paths, RUN_ID, max_files_per_trigger=7).table("usage_events")
    assert bronze_ids(spark, paths) == expected_ids(landing)
    assert_matches_manifest(counts, manifest)


def test_generated_late_file_is_flagged_late(spark, faulty_landing, faulty_seven_per_trigger):
    _, manifest = faulty_landing
    paths, _ = faulty_seven_per_trigger
    late_file = manifest["events"]["late_files"][0]
    late = bronze(spark, paths).where(F.col("source_file").endswith(late_file)).groupBy("is_late").count().collect()
    assert {row.is_late: row["count"] for row in late} == {True: manifest["events"]["late_events"]}


KILLED_CHILD = """
import sys
from lakehouse_utils.bronze import stream as bronze_stream
from lakehouse_utils.paths import LakePaths
from lakehouse_utils.spark import get_spark
bronze_stream.run(get_spark("killed-bronze-stream"), LakePaths.from_roots(sys.argv[1], sys.argv[2]), "run-to-be-killed",
                  max_files_per_trigger=1)
"""


@pytest.mark.slow
def test_generated_events_survive_a_kill_and_restart(spark, small_faulty_landing, tmp_path):
    landing, manifest = small_faulty_landing
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    commits = tmp_path / "lake" / "_checkpoints" / "bronze_usage_events" / COMMITS_DIR
    env = short_lived_driver_env({**os.environ, "SPARK_DRIVER_MEMORY": "1g", "PYTHONPATH": str(PROJECT_ROOT)})
    command = [sys.executable, "-c", KILLED_CHILD, str(tmp_path / "lake"), str(landing)]
    child = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and child.poll() is None and len(list(commits.glob("*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)  # the child's own process group: its Python and its JVM
    child.wait()
    committed_before = len(list(commits.glob("*.json")))
    assert child.returncode == -signal.SIGKILL and 2 <= committed_before < len(manifest["files"])
    bronze_stream.run(spark, paths, RUN_ID, max_files_per_trigger=1)
    assert bronze_ids(spark, paths) == expected_ids(landing)
    assert_matches_manifest(bronze_stream.committed_totals(spark, paths), manifest)


# ---------------------------------------------------------------- the course data

@pytest.mark.parametrize("max_files", [10, None], ids=["10-files", "all-files"])
def test_course_events_all_land_for_any_trigger_size(spark, course_landing, course_chain, tmp_path, max_files):
    if max_files is None:  # all files in one micro-batch: the session's course chain ran exactly that
        paths, reports = course_chain
        counts = reports["bronze_stream"].table("usage_events")
    else:
        paths = LakePaths.from_roots(tmp_path / "lake", course_landing)  # read in place, never copied
        counts = bronze_stream.run(spark, paths, RUN_ID, max_files_per_trigger=max_files).table("usage_events")
    totals = (counts.rows_in, counts.rows_out, counts.duplicates, counts.quarantined, counts.ignored)
    assert totals == (43_200, 43_200, 0, 0, 0)
    assert bronze(spark, paths).select("event_id").distinct().count() == 43_200
