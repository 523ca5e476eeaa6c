"""Live speed layer (issue 21): real Spark, real files, real Cassandra (keyspace cloud_analytics_livetest*).

Speed == batch cell for cell; a replayed file and a late file for an old day; kill -9 and
restart; Cassandra stopped and restarted mid-live: nothing lost, nothing doubled.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import short_lived_driver_env
from test_gold import pandas_daily_usage
from test_packaging import drop_keyspace

from lakehouse_utils.bronze import stream as bronze_stream
from lakehouse_utils.cassandra_server import manage as lc
from lakehouse_utils.config import Settings
from lakehouse_utils.generator.landing import generate
from lakehouse_utils.live import stage as live
from lakehouse_utils.live.compare import cassandra_measures, differences, gold_measures
from lakehouse_utils.live.metrics import DAILY_TABLE, GENAI_TABLE
from lakehouse_utils.paths import LakePaths, local_path
from lakehouse_utils.pipeline import run_pipeline
from lakehouse_utils.serving.connection import CassandraTarget, open_session

PROJECT_ROOT = Path(__file__).resolve().parent.parent
KEYSPACE = "cloud_analytics_livetest"
WAIT_S = 900.0  # the shared 2-core machine can take a minute per micro-batch


def small_landing(root: Path, held_back: int) -> tuple[Path, list[Path]]:
    """A 4-file generated landing; the last `held_back` event files are moved aside, to be dropped later."""
    landing = root / "landing"
    generate(landing, seed=5, scale=0.05, files=4)
    hold = root / "held"
    hold.mkdir()
    files = sorted((landing / "usage_events_stream").glob("*.jsonl"))
    for path in files[len(files) - held_back:]:
        shutil.move(path, hold / path.name)
    return landing, sorted(hold.glob("*.jsonl"))


def utc_date(text: str):
    return pd.to_datetime(text, utc=True, format="ISO8601").date()


def drop(landing: Path, name: str, text: str) -> None:
    """Write under a hidden temp name, then rename: the stream never sees a half-written file."""
    folder = landing / "usage_events_stream"
    temp = folder / f".{name}.tmp"
    temp.write_text(text, encoding="utf-8")
    temp.rename(folder / name)


def fresh_target(port: int = 9042, keyspace: str = KEYSPACE) -> CassandraTarget:
    target = CassandraTarget("local", keyspace, host=os.environ.get("CASSANDRA_HOST", "127.0.0.1"), port=port)
    drop_keyspace(target.host, target.port, keyspace)
    return target


@pytest.fixture
def shared_node_target():
    """`fresh_target` on the shared node, whose keyspace is dropped again after the test: a developer's own node
    (CASSANDRA_HOST) keeps no keyspace of this module, as the other modules' keyspaces are dropped after them."""
    made: list[CassandraTarget] = []

    def make(keyspace: str = KEYSPACE) -> CassandraTarget:
        target = fresh_target(keyspace=keyspace)
        made.append(target)
        return target

    yield make
    for target in made:
        drop_keyspace(target.host, target.port, target.keyspace)


def measures(target: CassandraTarget, table: str = DAILY_TABLE) -> dict:
    with open_session(target) as session:
        return cassandra_measures(session, table)


class LiveThread:
    """`live.run` in a background thread of this process; `wait_batches` blocks until n batches were upserted."""

    def __init__(self, spark, paths: LakePaths, target: CassandraTarget) -> None:
        self.stop, self.messages, self.result, self.error = threading.Event(), [], None, None
        self.thread = threading.Thread(target=self._run, args=(spark, paths, target), daemon=True)
        self.thread.start()

    def _run(self, spark, paths, target) -> None:
        try:
            self.result = live.run(spark, paths, "20300101T000000Z-live01", target, interval="1 second",
                                   stop=self.stop, say=self.messages.append)
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            self.error = error

    def batches(self) -> list[str]:
        return [m for m in self.messages if m.startswith("live batch ")]

    def wait(self, condition, what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition() and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(0.2)
        assert condition(), f"timed out waiting for {what}; error={self.error!r}; messages={self.messages[-5:]}"

    def wait_batches(self, count: int) -> None:
        self.wait(lambda: len(self.batches()) >= count, f"{count} live batches")

    def finish(self):
        self.stop.set()
        self.thread.join(WAIT_S)
        assert self.error is None, self.error
        return self.result


def assert_equals_pandas(target: CassandraTarget, landing: Path) -> None:
    """Cassandra's daily table against an independent pandas computation from the landing files."""
    expected = pandas_daily_usage(landing)
    actual = measures(target)
    keys = {(org, day, service) for org, _, day, service in actual}
    assert keys == set(expected.index) and len(actual) == len(expected)
    for (org, _month, day, service), values in actual.items():
        row = expected.loc[(org, day, service)]
        assert values[0] == pytest.approx(row["daily_cost_usd"], abs=1e-6), (org, day, service)
        assert values[6] == row["event_count"], (org, day, service)  # cost, 3 metrics, tokens, carbon, count


@pytest.mark.slow
def test_live_equals_batch_and_a_replay_changes_nothing_and_a_late_file_updates_its_old_day(spark, tmp_path,
                                                                                          shared_node_target):
    landing, held = small_landing(tmp_path, held_back=2)
    (landing / "usage_events_stream" / "notes.json").write_text("{}\n")  # not an event file: said, not read
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    target = shared_node_target()
    runner = LiveThread(spark, paths, target)
    runner.wait_batches(1)  # the two files already there
    first = measures(target)
    assert first and not runner.error
    unread = [m for m in runner.messages if m.startswith("warning: 1 file(s) in ") and "(notes.json)" in m]
    assert len(unread) == 1 and runner.messages.index(unread[0]) < runner.messages.index(runner.batches()[0])

    consumed = sorted((landing / "usage_events_stream").glob("*.jsonl"))[0]
    drop(landing, "events_resent.jsonl", consumed.read_text(encoding="utf-8"))  # a re-delivered file
    runner.wait_batches(2)
    assert measures(target) == first, "a replayed file changed Cassandra"
    assert " 0 new events, 540 duplicate(s), 0 rows upserted" in runner.batches()[1]

    lines = held[0].read_text(encoding="utf-8").splitlines()
    old_day = min(key[2] for key in first)  # the first usage date already served
    late = [line for line in lines if utc_date(json.loads(line)["timestamp"]) == old_day]
    assert late, "the held-back file has no event on the first day"
    drop(landing, "events_late_old_day.jsonl", "\n".join(late) + "\n")
    runner.wait_batches(3)
    after_late = measures(target)
    changed = {key for key in after_late if after_late[key] != first.get(key)}
    assert changed and {key[2] for key in changed} == {old_day}, "only the old day's rows may change"
    added = sum(after_late[k][6] for k in changed) - sum(first.get(k, (0,) * 7)[6] for k in changed)
    assert added == len(late)

    drop(landing, held[0].name, "\n".join(line for line in lines if line not in set(late)) + "\n")
    drop(landing, held[1].name, held[1].read_text(encoding="utf-8"))
    runner.wait(lambda: all_consumed(spark, paths, landing), "every file")
    result = runner.finish()
    assert result.totals()["files"] == 6 and len(result.warnings) == 1  # said once, when `live` started
    speed = {table: measures(target, table) for table in (DAILY_TABLE, GENAI_TABLE)}
    assert_equals_pandas(target, landing)

    settings = Settings.load(cassandra_host=target.host, cassandra_port=str(target.port), cassandra_keyspace=KEYSPACE)
    reports = {r.stage: r for r in run_pipeline(spark, paths, None, settings=settings, target="local")}
    assert reports["bronze_stream"].table("usage_events").rows_in == 0  # the live query was the stream
    for table in (DAILY_TABLE, GENAI_TABLE):
        assert differences(gold_measures(spark, paths, table), speed[table]) == [], table
        assert differences(speed[table], measures(target, table)) == [], f"the batch load changed {table}"

    # Another lake claims the keyspace (its serving took it over): this lake's `live` is refused
    # before it reads a file or writes Bronze.
    from lakehouse_utils.serving.claim import Claim, KeyspaceClaimedError, write_claim

    with open_session(target) as session:
        write_claim(session, Claim("0" * 32, "file:///elsewhere/lake", "run-other", None))
    commits = bronze_commit_count(tmp_path / "lake")
    drop(landing, "events_after_the_claim.jsonl", consumed.read_text(encoding="utf-8"))
    with pytest.raises(KeyspaceClaimedError, match=r"serves another lake \(file:///elsewhere/lake"):
        live.run(spark, paths, "20300101T000000Z-live02", target, duration=5)
    assert bronze_commit_count(tmp_path / "lake") == commits

    # The keyspace dropped between two runs: the next `live` finds it unclaimed and sends every batch again.
    drop_keyspace(target.host, target.port, target.keyspace)
    again = live.run(spark, paths, "20300101T000000Z-live03", target, duration=1, say=lambda _: None)
    assert again.catch_up["batches"] == commits
    for table in (DAILY_TABLE, GENAI_TABLE):
        assert differences(speed[table], measures(target, table)) == [], f"{table} after the keyspace was dropped"


def all_consumed(spark, paths: LakePaths, landing: Path) -> bool:
    """Bronze holds every line of the landing files and every Bronze batch reached Cassandra."""
    lines = sum(len(f.read_text(encoding="utf-8").splitlines())
                for f in (landing / "usage_events_stream").glob("*.jsonl"))
    records = bronze_stream.read_commits(spark, paths.checkpoint(bronze_stream.CHECKPOINT))
    lake = local_path(paths.lake_root)
    return sum(r["lines"] for r in records) >= lines and live_marker_count(lake) >= len(records)


KILLED_LIVE = [sys.executable, "-m", "lakehouse_utils", "live", "--max-files-per-trigger", "1",
               "--trigger-interval", "1 second"]


def bronze_commit_count(lake: Path) -> int:
    return len(list((lake / "_checkpoints" / bronze_stream.CHECKPOINT / "bronze_commits").glob("*.json")))


def live_marker_count(lake: Path) -> int:
    return len(list((lake / "_state" / "live").glob("*/commits/*.json")))


@pytest.mark.slow
def test_kill_9_mid_live_then_restart_loses_and_doubles_nothing(spark, tmp_path, shared_node_target):
    landing, _ = small_landing(tmp_path, held_back=0)
    lake = tmp_path / "lake"
    target = shared_node_target(f"{KEYSPACE}_kill")
    env = short_lived_driver_env({**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "CASSANDRA_KEYSPACE": target.keyspace,
                                  "CASSANDRA_HOST": target.host})
    child = subprocess.Popen([*KILLED_LIVE, "--landing", str(landing), "--lake", str(lake)], cwd=PROJECT_ROOT,
                             env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + WAIT_S
    # Inside batch 1: committed to Bronze, its live upsert not acknowledged yet (or just being written).
    while time.monotonic() < deadline and child.poll() is None and bronze_commit_count(lake) < 2:
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert bronze_commit_count(lake) == 2 and live_marker_count(lake) < 4

    paths = LakePaths.from_roots(lake, landing)
    runner = LiveThread(spark, paths, target)
    runner.wait(lambda: all_consumed(spark, paths, landing), "the restart to consume every file")
    runner.finish()
    assert any(m.startswith("live catch-up") for m in runner.messages) or live_marker_count(lake) >= 2
    totals = bronze_stream.committed_totals(spark, paths)
    assert totals.rows_in == totals.rows_out + totals.duplicates + totals.quarantined + totals.ignored
    assert_equals_pandas(target, landing)


@pytest.mark.slow
def test_cassandra_stopped_mid_live_waits_commits_nothing_and_catches_up(spark, tmp_path, second_node):
    from conftest import SCRATCH_BOOT_TIMEOUT_S

    landing, held = small_landing(tmp_path, held_back=1)
    paths = LakePaths.from_roots(tmp_path / "lake", landing)
    target = fresh_target(port=second_node.native_port)
    runner = LiveThread(spark, paths, target)
    runner.wait_batches(1)
    lc.stop(second_node)
    drop(landing, held[0].name, held[0].read_text(encoding="utf-8"))
    runner.wait(lambda: any("Cassandra unavailable" in m for m in runner.messages), "the retry message")
    spark_commits = tmp_path / "lake" / "_checkpoints" / bronze_stream.CHECKPOINT / "commits"
    assert not (spark_commits / "1").exists() and live_marker_count(tmp_path / "lake") == 1  # nothing committed
    waits = [m for m in runner.messages if "Cassandra unavailable" in m]
    assert "nothing is committed until its upserts succeed" in waits[0]
    # The batch's session was open when the node went: the wait still names the target and the fix.
    assert all(f"cannot reach Cassandra at {target.host}:{target.port}" in m for m in waits), waits
    lc.start(second_node, timeout=SCRATCH_BOOT_TIMEOUT_S)
    runner.wait_batches(2)
    runner.finish()
    assert (spark_commits / "1").exists()
    assert_equals_pandas(target, landing)


def test_live_events_stay_in_a_fixed_number_of_partitions_however_many_batches_they_add(spark):
    from lakehouse_utils.bronze.events_parsing import BRONZE_EVENTS_SCHEMA
    from lakehouse_utils.gold.marts import ORG_ATTRIBUTES
    from lakehouse_utils.live.state import LiveEvents

    orgs = spark.createDataFrame([], ", ".join(f"{name} string" for name in ("org_id", *ORG_ATTRIBUTES)))
    events = LiveEvents(spark, {"customers_orgs": orgs, "resources": spark.createDataFrame([], "resource_id string")})
    events.rebuild("file:///nonexistent-bronze", set())
    for _ in range(3):  # each batch's rows come in several partitions, as a micro-batch's do
        events.add(spark.createDataFrame([], BRONZE_EVENTS_SCHEMA).repartition(4))
    assert events.frame.rdd.getNumPartitions() <= spark.sparkContext.defaultParallelism


def test_live_insert_names_every_served_column_except_the_batch_only_anomaly_columns():
    from lakehouse_utils.live.metrics import upsert_cql
    from lakehouse_utils.serving.model import serving_table

    for table in (DAILY_TABLE, GENAI_TABLE):
        names = upsert_cql(table).split("(", 1)[1].split(")", 1)[0].split(", ")
        expected = [n for n in serving_table(table).column_names if n not in ("is_anomaly", "anomaly_methods")]
        assert names == expected
    assert "is_anomaly" in serving_table(DAILY_TABLE).column_names  # the batch layer still serves it


def test_freshness_counts_the_files_of_each_progress_line():
    from lakehouse_utils.benchmark.freshness import files_consumed

    lines = ["live: 0 valid events", "live batch 0: 3 file(s), 9 lines, ...", "live batch 1: 1 file(s), 2 lines"]
    assert files_consumed(lines) == 4


def test_a_day_live_serves_after_the_batch_layer_widens_the_queries_default_window(shared_node_target):
    """`query q1` without dates shows the latest 7 days of serving_metadata: a new day `live` upserts is in them."""
    from datetime import date

    from lakehouse_utils.live.upsert import LiveUpserter
    from lakehouse_utils.serving.queries import metadata
    from lakehouse_utils.serving.stage import apply_schema

    target = shared_node_target()
    apply_schema(target)
    with open_session(target) as session:
        session.execute("INSERT INTO serving_metadata (table_name, min_date, max_date, top_org_id) VALUES "
                        "(%s, %s, %s, %s)", (DAILY_TABLE, date(2025, 8, 1), date(2025, 8, 31), "org_a"))

    def daily(day: date) -> tuple:
        return ("org_a", f"{day:%Y-%m}", day, "compute", 1.5, 2.0, 0.0, 0.0, 0, 0.0, 1, "A", "tech", "pro", "eu")

    upserter = LiveUpserter(target, threading.Event(), say=lambda _: None)
    try:
        upserter.upsert({DAILY_TABLE: [daily(date(2025, 9, 2)), daily(date(2025, 8, 15))],
                         GENAI_TABLE: [("org_a", "2025-09", date(2025, 9, 2), 10, 0.5, 1)]})
    finally:
        upserter.close()
    with open_session(target) as session:
        widened = metadata(session, DAILY_TABLE)
        assert (widened["min_date"], widened["max_date"], widened["top_org_id"]) == (
            date(2025, 8, 1), date(2025, 9, 2), "org_a")
        # A table the serving stage never loaded has no row to widen (its leading org would be unknown).
        assert session.execute("SELECT * FROM serving_metadata WHERE table_name = %s", (GENAI_TABLE,)).one() is None


def test_a_keyspace_dropped_while_live_runs_stops_it_with_the_fix_instead_of_waiting_for_ever(shared_node_target):
    from datetime import date

    from lakehouse_utils.live.upsert import LiveKeyspaceGone, LiveUpserter
    from lakehouse_utils.serving.stage import apply_schema

    target = shared_node_target()
    apply_schema(target)
    row = ("org_a", "2025-09", date(2025, 9, 2), 10, 0.5, 1)
    upserter = LiveUpserter(target, threading.Event(), say=lambda _: None)
    try:
        assert upserter.upsert({GENAI_TABLE: [row]}, batch_id=1) == 1
        with open_session(target) as session:
            session.execute(f"DROP TABLE {GENAI_TABLE}")  # a table only: the driver's own "unconfigured table"
        with pytest.raises(LiveKeyspaceGone, match=r"\(or one of its tables\) was dropped while `live` ran; batch 2"):
            upserter.upsert({GENAI_TABLE: [row]}, batch_id=2)
        drop_keyspace(target.host, target.port, target.keyspace)
        with pytest.raises(LiveKeyspaceGone, match=r"was dropped while `live` ran; batch 3 is not committed\. Run `live` "
                                                   "again: it creates what is missing and, finding it empty, sends "
                                                   "every Bronze batch again"):
            upserter.upsert({GENAI_TABLE: [row]}, batch_id=3)
    finally:
        upserter.close()
    assert upserter.retries == 0


def test_ctrl_c_asks_live_to_stop_between_batches_and_a_second_one_interrupts():
    previous = signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    try:
        pressed = live.stop_on_ctrl_c(stop)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert pressed.is_set() and stop.is_set()  # no KeyboardInterrupt: the running batch may finish
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    finally:
        signal.signal(signal.SIGINT, previous)
