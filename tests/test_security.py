"""Security hygiene (issue 11): the Astra token never leaks; names are allow-listed before CQL.

A fake token (`AstraCS:fake...`) is fed through the environment to the real CLIs (query and
pipeline --stage serving) with bogus secure-connect bundles; every captured output, the
files the run left in the lake, the debug logs and the whole exception chain (including
suppressed contexts) are searched for it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import traceback
import zipfile
from datetime import date
from pathlib import Path

import pytest

from lakehouse_utils.config import Settings
from lakehouse_utils.paths import InvalidNameError, LakePaths
from lakehouse_utils.serving import stage as serving
from lakehouse_utils.serving.connection import CassandraTarget, CassandraUnavailableError, Secret, open_session
from lakehouse_utils.serving.model import SERVING_TABLES
from lakehouse_utils.serving.queries import q1, q3

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Built at run time so no token-shaped literal sits in git; it is fake all the same.
FAKE_TOKEN = "AstraCS" + ":" + "fakeHostileToken:5ecret0123456789abcdef-must-never-be-printed"
TOKEN_PARTS = (FAKE_TOKEN, "fakeHostileToken", "5ecret0123456789abcdef")
MALICIOUS_KEYSPACES = ["cloud_analytics; DROP KEYSPACE system", 'ks" --', "x' OR '1'='1", "system_auth.roles",
                       "Cloud_Analytics", "k" * 65, ""]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bogus_bundle(tmp_path: Path, kind: str) -> Path:
    """A secure-connect bundle path that cannot work: absent, not a zip, or a zip pointing at a closed port."""
    bundle = tmp_path / f"secure-connect-{kind}.zip"
    if kind == "garbage":
        bundle.write_bytes(b"this is not a zip archive")
    elif kind == "closed-port":
        with zipfile.ZipFile(bundle, "w") as archive:
            archive.writestr("config.json", f'{{"host": "127.0.0.1", "port": {closed_port()}, "keyspace": "x"}}')
    return bundle


def leaks(*texts: str) -> list[str]:
    return [text[:200] for text in texts if any(part in text for part in TOKEN_PARTS)]


def cli(args: list[str], tmp_path: Path, timeout: float, **env: str) -> subprocess.CompletedProcess:
    """`python -m lakehouse_utils ...` in a child process with a fake-Astra environment."""
    environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "SPARK_DRIVER_MEMORY": "1g",
                   "SERVING_TARGET": "astra", "ASTRA_DB_APPLICATION_TOKEN": FAKE_TOKEN, **env}
    return subprocess.run([sys.executable, "-m", "lakehouse_utils", *args], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def exception_chain_text(error: BaseException) -> str:
    """Every exception reachable through __cause__ and __context__ (even a suppressed one), with tracebacks."""
    seen, texts, current = set(), [], [error]
    while current:
        item = current.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        texts += [str(item), repr(item), *map(str, item.args), "".join(traceback.format_exception(item))]
        current += [item.__cause__, item.__context__]
    return "\n".join(texts)


@pytest.mark.parametrize("bundle_kind, message", [
    ("absent", "secure connect bundle not found"),
    ("garbage", "Unable to open the zip file"),
    ("closed-port", "cannot reach Cassandra at AstraDB bundle"),
])
def test_query_cli_never_prints_the_token(tmp_path, bundle_kind, message):
    bundle = bogus_bundle(tmp_path, bundle_kind)
    done = cli(["query", "q1", "--org", "org_a", "--format", "json"], tmp_path, timeout=300,
               ASTRA_DB_SECURE_BUNDLE_PATH=str(bundle))
    assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr
    assert leaks(done.stdout, done.stderr) == []


def test_pipeline_serving_cli_leaves_the_token_nowhere(tmp_path):
    lake, landing = tmp_path / "lake", tmp_path / "landing"
    landing.mkdir()
    # SPARK_HOME without Spark: the unreachable target must be found before the CLI starts a JVM
    done = cli(["pipeline", "--stage", "serving", "--target", "astra", "--lake", str(lake), "--landing", str(landing)],
               tmp_path, timeout=900, ASTRA_DB_SECURE_BUNDLE_PATH=str(bogus_bundle(tmp_path, "closed-port")),
               SPARK_HOME=str(tmp_path / "no-spark-here"))
    assert done.returncode == 2 and done.stderr.count("error: cannot reach Cassandra at AstraDB bundle") == 1
    assert "Traceback" not in done.stderr  # the package's own error, said once, without Python's stack
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".zip"]
    assert leaks(done.stdout, done.stderr, *written) == []


def lake_with_empty_gold(root: Path) -> LakePaths:
    """A lake whose Gold marts exist (empty): the serving stage checks them before it connects."""
    for table in SERVING_TABLES:
        (root / "lake" / "gold" / table.mart).mkdir(parents=True, exist_ok=True)
    return LakePaths.from_roots(root / "lake", root / "landing")


def test_serving_error_chain_and_debug_logs_hold_no_token(spark, tmp_path, caplog):
    settings = Settings.load(serving_target="astra", astra_db_application_token=FAKE_TOKEN,
                             astra_db_secure_bundle_path=str(bogus_bundle(tmp_path, "closed-port")))
    paths = lake_with_empty_gold(tmp_path)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(CassandraUnavailableError) as caught:
            serving.run(spark, paths, "20300101T000000Z-5ec000", target="astra", settings=settings)
    target = CassandraTarget("astra", "cloud_analytics", bundle_path="b.zip", token=Secret(FAKE_TOKEN))
    shown = [repr(settings), str(target), repr(target), f"{target.token}", repr(target.token)]
    assert caught.value.__context__ is not None  # the driver's own error is still attached (suppressed)
    assert leaks(exception_chain_text(caught.value), caplog.text, *shown) == []


@pytest.mark.parametrize("keyspace", MALICIOUS_KEYSPACES)
def test_malicious_keyspace_is_refused_before_any_cql(keyspace):
    with pytest.raises(InvalidNameError, match="invalid keyspace name .*expected lower-case letters, digits and _"):
        CassandraTarget("local", keyspace, host="127.0.0.1", port=closed_port())


def test_malicious_keyspace_from_the_environment_never_reaches_a_connection(tmp_path):
    done = cli(["query", "q1", "--org", "org_a"], tmp_path, timeout=300, SERVING_TARGET="local",
               CASSANDRA_HOST="127.0.0.1", CASSANDRA_PORT=str(closed_port()),
               CASSANDRA_KEYSPACE="cloud_analytics; DROP KEYSPACE system")
    assert done.returncode == 2 and "Traceback" not in done.stderr  # one `error:` line, no Python stack
    assert done.stderr.startswith("error: invalid keyspace name 'cloud_analytics; DROP KEYSPACE system': expected "
                                  "lower-case letters, digits and _")
    assert "cannot reach Cassandra" not in done.stderr  # refused before any connection was tried


def test_malicious_keyspace_argument_is_refused_by_the_serving_stage(spark, tmp_path):
    settings = Settings.load(serving_target="local", cassandra_host="127.0.0.1", cassandra_port=str(closed_port()))
    paths = lake_with_empty_gold(tmp_path)
    with pytest.raises(ValueError, match="expected lower-case letters"):
        serving.run(spark, paths, "20300101T000000Z-5ec001", settings=settings, keyspace="x; DROP KEYSPACE system")


@pytest.mark.parametrize("name", ["../../etc", "usage_events/../../x", "users; rm -rf /", "Users", ""])
def test_lake_table_names_are_allow_listed(name):
    paths = LakePaths.from_roots("/lake", "/landing")
    with pytest.raises(InvalidNameError, match="invalid table name"):
        paths.bronze(name)


@pytest.fixture
def served_keyspace(cassandra_endpoint):
    """The serving tables in a throwaway keyspace of the shared node (read-only use, dropped after)."""
    host, port = cassandra_endpoint
    target = CassandraTarget("local", "hostile_security", host=host, port=port)
    serving.apply_schema(target)
    yield target
    with open_session(target, use_keyspace=False) as session:
        session.execute("DROP KEYSPACE IF EXISTS hostile_security", timeout=120)


def test_query_values_are_bound_never_spliced_into_cql(served_keyspace):
    with open_session(served_keyspace) as session:
        usage = q1(session, "org_a' OR '1'='1", date_from=date(2025, 8, 1), date_to=date(2025, 8, 2))
        tickets = q3(session, date_to=date(2025, 8, 2), days=3, severity="critical' ALLOW FILTERING; DROP TABLE x --")
        tables = {row.table_name for row in session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'hostile_security'")}
    assert (usage, tickets) == ([], [])
    assert {path.stem for path in serving.cql_files()} <= tables


# An Astra token is `AstraCS:` then 24+ token characters; docs show the prefix with `...` only.
REAL_LOOKING_TOKEN = r"AstraCS:[A-Za-z0-9]{8,}:[A-Za-z0-9]{16,}"
SECRET_ASSIGNMENT = r"^[ \t]*(ASTRA_DB_APPLICATION_TOKEN|ASTRA_DB_SECURE_BUNDLE_PATH)[ \t]*=[ \t]*[^\s#]"


def test_no_secret_in_tracked_files_or_committed_notebook_outputs():
    """Every file git tracks (committed notebooks with their outputs included) is free of token-like values."""
    import re

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: nothing is tracked to scan")
    offenders = []
    for name in filter(None, listed.stdout.decode().split("\0")):
        path = PROJECT_ROOT / name
        if not path.is_file() or path.suffix in (".png", ".zip", ".jar"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(REAL_LOOKING_TOKEN, text) or (name.endswith((".env", ".env.example"))
                                                   and re.search(SECRET_ASSIGNMENT, text, re.MULTILINE)):
            offenders.append(name)
    assert not offenders, f"token-like values or filled-in secrets in tracked files: {offenders}"
    assert not (PROJECT_ROOT / ".env").exists() or ".env" not in listed.stdout.decode().split("\0")
