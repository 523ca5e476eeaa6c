"""Shared fixtures: one real SparkSession per test session, fresh lakes, landing data, Cassandra."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COURSE_LANDING = Path(os.environ.get("COURSE_LANDING_DIR", PROJECT_ROOT.parent / "shared" / "course_landing"))


@pytest.fixture(scope="session")
def spark():
    from lakehouse_utils.spark import get_spark

    session = get_spark("tests")
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
    """Scale-1 clean dataset, generated once per test session."""
    from lakehouse_utils.generator.landing import generate

    out = tmp_path_factory.mktemp("generated") / "landing"
    generate(out, seed=7, scale=1.0)
    return out


@pytest.fixture(scope="session")
def faulty_landing(tmp_path_factory) -> tuple[Path, dict]:
    """Small dataset with every fault injected, and the generator's manifest of them."""
    from lakehouse_utils.generator.landing import generate

    out = tmp_path_factory.mktemp("faulty") / "landing"
    manifest = generate(out, seed=11, scale=0.1, files=24, duplicates=True, malformed=True, late_files=True, bad_rows=True)
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
def faulty_chain(spark, faulty_landing, tmp_path_factory):
    """(paths, reports by stage) of the faulty generated landing run once through bronze_batch..gold.

    Shared read-only by the oracle and evidence tests (copy the lake to change it).
    """
    from lakehouse_utils.paths import LakePaths
    from lakehouse_utils.pipeline import run_pipeline

    landing, _ = faulty_landing
    paths = LakePaths.from_roots(tmp_path_factory.mktemp("faulty_chain") / "lake", landing)
    reports = run_pipeline(spark, paths, ["bronze_batch", "bronze_stream", "silver", "gold"])
    return paths, {report.stage: report for report in reports}
