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
    from lakehouse_utils.generator import generate

    out = tmp_path_factory.mktemp("generated") / "landing"
    generate(out, seed=7, scale=1.0)
    return out


@pytest.fixture(scope="session")
def faulty_landing(tmp_path_factory) -> tuple[Path, dict]:
    """Small dataset with every fault injected, and the generator's manifest of them."""
    from lakehouse_utils.generator import generate

    out = tmp_path_factory.mktemp("faulty") / "landing"
    manifest = generate(out, seed=11, scale=0.1, files=24, duplicates=True, malformed=True, late_files=True, bad_rows=True)
    return out, manifest


@pytest.fixture(scope="session")
def cassandra_endpoint() -> tuple[str, int]:
    """A real Cassandra: CASSANDRA_HOST/PORT if set, else the project's local node (started if needed)."""
    from lakehouse_utils import local_cassandra

    return local_cassandra.ensure_running()
