"""Shared fixtures: one real SparkSession per test session, fresh lakes, landing data, Cassandra."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from lakehouse_utils.config import COURSE_LANDING

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A scratch Cassandra node boots in ~20 s idle; a loaded 2-core machine needs far longer.
SCRATCH_BOOT_TIMEOUT_S = 600.0
# pyspark.testing imports pyspark.pandas, which warns once per session unless this is set before it.
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")
# CI refuses every skip but the course data's (TESTS_REFUSE_SKIPS=1 in .ci/run); the slowest subprocess tests
# run beside the suite at low priority (background_jobs).
pytest_plugins = ("skip_policy", "background_jobs")


def pytest_collection_modifyitems(config, items):
    """Tests that read the course dataset are marked `course`: make test-fast leaves them out."""
    for item in items:
        if "course_landing" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.course)


@pytest.fixture(scope="session")
def spark():
    from lakehouse_utils.spark import get_spark

    # One JVM runs the stages' plans again and again for the whole session: C2's code pays off there, as in a
    # stream of many micro-batches (the fast lane: 229.6 s with C2, 270.9 and 270.7 s with C1; ADR 090.25).
    session = get_spark("tests", small_data=False)
    yield session
    session.stop()


@pytest.fixture
def lake(tmp_path) -> Path:
    root = tmp_path / "lake"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def course_landing() -> Path:
    if not (COURSE_LANDING / "customers_orgs.csv").exists():
        pytest.skip(f"course dataset not found at {COURSE_LANDING} (set COURSE_LANDING_DIR); core suite uses generated data")
    return COURSE_LANDING


@pytest.fixture(scope="session")
def generated_landing(tmp_path_factory) -> Path:
    """A clean generated dataset (a quarter of the course volume), generated once per test session: the
    oracle checks that use it hold at any volume; the course-volume figures are checked on the course data."""
    from lakehouse_utils.generator.landing import generate

    out = tmp_path_factory.mktemp("generated") / "landing"
    generate(out, seed=7, scale=0.25)
    return out


@pytest.fixture(scope="session")
def faulty_landing(tmp_path_factory) -> tuple[Path, dict]:
    """Small dataset with every fault injected, and the generator's manifest of them."""
    from lakehouse_utils.generator.landing import generate

    out = tmp_path_factory.mktemp("faulty") / "landing"
    manifest = generate(out, seed=11, scale=0.1, files=24, duplicates=True, malformed=True, late_files=True, bad_rows=True)
    return out, manifest


CHAIN = ("bronze_batch", "bronze_stream", "silver", "gold")


def short_lived_driver_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child whose Spark driver runs one small chain and is killed or exits (ADR 090.21): the C1
    compiler only. C2 pays off in a JVM that runs for minutes; here it competes with the child's tasks and with
    this session's JVM for the two cores. What the child computes does not depend on the compiler."""
    from lakehouse_utils.jvm_archive import C1_ONLY, EXTRA_OPTIONS_VARIABLE

    return {**env, EXTRA_OPTIONS_VARIABLE: f"{env.get(EXTRA_OPTIONS_VARIABLE, '')} {C1_ONLY}".strip()}


def file_stamps(root: Path, zones: tuple[str, ...] = ("",)) -> dict[str, tuple[int, int]]:
    """Every file under `root` (or under its `zones`) with its size and modification time (ns): a write changes one."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for zone in zones for p in (root / zone).rglob("*") if p.is_file()}


def copy_of_lake(paths, folder: Path):
    """LakePaths of a copy of `paths`' lake under `folder` (same landing): for a test that writes to a shared chain."""
    import shutil

    from lakehouse_utils.paths import LakePaths, local_path

    shutil.copytree(local_path(paths.lake_root), folder / "lake")
    return LakePaths.from_roots(folder / "lake", local_path(paths.landing_root))


def _run_chain(spark, landing: Path, lake: Path) -> tuple:
    from lakehouse_utils.paths import LakePaths
    from lakehouse_utils.pipeline import new_run_id, run_stage

    paths = LakePaths.from_roots(lake, landing)
    return paths, {stage: run_stage(spark, paths, stage, new_run_id()) for stage in CHAIN}


@pytest.fixture(scope="session")
def faulty_chain(spark, faulty_landing, tmp_path_factory):
    """(paths, reports by stage, manifest): the faulty generated landing run once through bronze_batch..gold.

    Shared by the Bronze, Silver, Gold and contract tests, which only read it (never write to it)."""
    landing, manifest = faulty_landing
    paths, reports = _run_chain(spark, landing, tmp_path_factory.mktemp("faulty_chain") / "lake")
    return paths, reports, manifest


@pytest.fixture(scope="session")
def generated_chain(spark, generated_landing, tmp_path_factory):
    """(paths, reports by stage): the clean generated landing run once through bronze_batch..gold; read-only."""
    return _run_chain(spark, generated_landing, tmp_path_factory.mktemp("generated_chain") / "lake")


@pytest.fixture(scope="session")
def course_chain(spark, course_landing, tmp_path_factory):
    """(paths, reports by stage): the course dataset run once through bronze_batch..gold; read-only (copy it to
    write). Shared by the course-data checks of every zone, which each ran the chain again before (ADR 153.2)."""
    return _run_chain(spark, course_landing, tmp_path_factory.mktemp("course_chain") / "lake")


@pytest.fixture(scope="session")
def small_faulty_landing(tmp_path_factory) -> tuple[Path, dict]:
    """Every fault, in 10 event files instead of 24+: for the tests that run one file per micro-batch."""
    from lakehouse_utils.generator.landing import generate

    out = tmp_path_factory.mktemp("small_faulty") / "landing"
    manifest = generate(out, seed=11, scale=0.05, files=8, duplicates=True, malformed=True, late_files=True, bad_rows=True)
    return out, manifest


@pytest.fixture(scope="session")
def hostile_run(spark, tmp_path_factory):
    """(paths, reports by stage) of the hand-made hostile landing (tests/test_hostile_events.py) run once
    through bronze_batch..gold; shared by the hostile and failure tests, which only read it or copy it."""
    from test_hostile_events import CHAIN, FILES_PER_TRIGGER, make_hostile_landing

    from lakehouse_utils.paths import LakePaths
    from lakehouse_utils.pipeline import run_pipeline

    root = tmp_path_factory.mktemp("hostile")
    paths = LakePaths.from_roots(root / "lake", make_hostile_landing(root))
    reports = run_pipeline(spark, paths, CHAIN, max_files_per_trigger=FILES_PER_TRIGGER)
    return paths, {report.stage: report for report in reports}


@pytest.fixture(scope="session")
def cassandra_endpoint() -> tuple[str, int]:
    """A real Cassandra: CASSANDRA_HOST/PORT if set, else the project's local node (started if needed)."""
    from lakehouse_utils.cassandra_server import manage as local_cassandra

    return local_cassandra.ensure_running()


@pytest.fixture(scope="session")
def small_served(spark, tmp_path_factory, cassandra_endpoint):
    """(paths, keyspace, serving report): the small hand-made Gold marts (tests/serving_gold.py) loaded once
    by the serving stage into a keyspace of their own; shared by the serving and query tests, which only
    read it (or re-run serving on it with no Gold change, which loads nothing)."""
    from serving_gold import SERVED_KEYSPACE, build_gold, write_gold

    from lakehouse_utils.config import Settings
    from lakehouse_utils.paths import LakePaths
    from lakehouse_utils.serving import stage as serving
    from lakehouse_utils.serving.connection import CassandraTarget, open_session

    host, port = cassandra_endpoint
    paths = LakePaths.from_roots(tmp_path_factory.mktemp("small_served") / "lake", "/nonexistent-landing")
    write_gold(spark, paths, build_gold(spark))
    settings = Settings.load(cassandra_host=host, cassandra_port=str(port), cassandra_keyspace=SERVED_KEYSPACE)
    report = serving.run(spark, paths, "run-small-served", settings=settings, full_refresh=True)
    yield paths, SERVED_KEYSPACE, report
    with open_session(CassandraTarget("local", SERVED_KEYSPACE, host=host, port=port), use_keyspace=False) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {SERVED_KEYSPACE}", timeout=120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def scratch_cassandra(tmp_path_factory):
    """A Cassandra node of its own (home, data, ports) under tmp, to stop, restart and wipe at will; the jars
    are linked from the project's cache, so the shared node is never touched. One per session: each test
    takes it running through `second_node` and may leave it stopped (a boot and a stop cost ~10 s each time)."""
    from lakehouse_utils.cassandra_server import manage as local_cassandra
    from lakehouse_utils.cassandra_server.node import NodeConfig, jars_present
    from lakehouse_utils.config import Settings

    shared = NodeConfig.from_settings(Settings.load())
    if not jars_present(shared.lib_dir):
        pytest.skip(f"no Cassandra jars in {shared.lib_dir}: run `python -m lakehouse_utils cassandra start` once")
    home = tmp_path_factory.mktemp("cassandra_home")
    (home / "lib").symlink_to(shared.lib_dir, target_is_directory=True)
    config = NodeConfig(home=home, native_port=free_port(), storage_port=free_port(), jmx_port=0)
    yield config
    local_cassandra.stop(config)


@pytest.fixture
def second_node(scratch_cassandra):
    """The session's scratch node, running: a test before may have stopped it. Tests use keyspaces of their own."""
    from lakehouse_utils.cassandra_server import manage as local_cassandra

    local_cassandra.start(scratch_cassandra, timeout=SCRATCH_BOOT_TIMEOUT_S)
    return scratch_cassandra
