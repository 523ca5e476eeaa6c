"""The local Cassandra manager, against a real server (started from nothing when absent)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import free_port

from lakehouse_utils.__main__ import main as cli_main
from lakehouse_utils.cassandra_server import manage as lc
from lakehouse_utils.cassandra_server import process
from lakehouse_utils.cassandra_server.node import NodeConfig, find_java17
from lakehouse_utils.config import Settings

BOOT_TIMEOUT_S = 300.0
KEYSPACE_OPTIONS = "{'class': 'SimpleStrategy', 'replication_factor': 1}"


def _scratch_config(tmp_path: Path, home: Path | None = None) -> NodeConfig:
    """A node config on free ports that no running node uses."""
    return NodeConfig(home=home or tmp_path / "cassandra", node_dir=tmp_path / "node",
                      native_port=free_port(), storage_port=free_port(), jmx_port=0)


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _cql(port: int, *statements: str) -> list:
    """Run statements on 127.0.0.1:port; the rows of the last one."""
    cluster = lc.open_cluster("127.0.0.1", port)
    try:
        session = cluster.connect()
        rows = [list(session.execute(statement)) for statement in statements]
        return rows[-1]
    finally:
        cluster.shutdown()


@pytest.fixture
def local_node(cassandra_endpoint) -> NodeConfig:
    settings = Settings.load()
    if settings.cassandra_host:
        pytest.skip("CASSANDRA_HOST is set: the project's local node is not the server in use")
    return NodeConfig.from_settings(settings)


def test_node_answers_a_cql_round_trip(cassandra_endpoint):
    host, port = cassandra_endpoint
    keyspace = f"test_local_{uuid.uuid4().hex[:8]}"
    cluster = lc.open_cluster(host, port)
    try:
        session = cluster.connect()
        session.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {KEYSPACE_OPTIONS}")
        session.execute(f"CREATE TABLE {keyspace}.kv (k text PRIMARY KEY, v int)")
        session.execute(f"INSERT INTO {keyspace}.kv (k, v) VALUES (%s, %s)", ("answer", 42))
        rows = list(session.execute(f"SELECT k, v FROM {keyspace}.kv WHERE k = %s", ("answer",)))
        session.execute(f"DROP KEYSPACE {keyspace}")
    finally:
        cluster.shutdown()
    assert [(row.k, row.v) for row in rows] == [("answer", 42)]


def test_driver_falls_back_to_asyncio_without_libev(cassandra_endpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "cassandra.io.libevreactor", None)  # as if the C extension were missing
    lc.driver_connection_class.cache_clear()
    try:
        assert lc.driver_connection_class().__name__ == "AsyncioConnection"
        assert lc.release_version(*cassandra_endpoint)
    finally:
        lc.driver_connection_class.cache_clear()


def test_start_twice_is_a_no_op(local_node):
    first = lc.start(local_node)
    second = lc.start(local_node)
    assert (first["started"], second["started"]) == (False, False)
    assert first["pid"] == second["pid"] == process.read_pid(local_node)


def test_status_reports_running_with_pid(local_node):
    report = lc.status(local_node)
    assert (report["running"], report["cql"]) == (True, True)
    assert report["pid"] == process.read_pid(local_node)
    assert report["release_version"].startswith("5.0.")
    assert report["rss_mb"] > 0


def test_cli_status_exits_zero_and_names_the_pid(local_node, capsys):
    assert cli_main(["cassandra", "status"]) == 0
    assert f"pid: {process.read_pid(local_node)}" in capsys.readouterr().out


def test_status_of_a_node_that_never_ran(tmp_path):
    report = lc.status(_scratch_config(tmp_path))
    assert (report["running"], report["pid"], report["cql"]) == (False, None, False)


def test_cassandra_host_is_used_when_set(local_node):
    settings = Settings.load(CASSANDRA_HOST="127.0.0.1", CASSANDRA_PORT=str(local_node.native_port))
    assert lc.ensure_running(settings) == ("127.0.0.1", local_node.native_port)


def test_unreachable_cassandra_host_is_reported():
    port = free_port()
    settings = Settings.load(CASSANDRA_HOST="127.0.0.1", CASSANDRA_PORT=str(port))
    with pytest.raises(lc.CassandraUnreachableError, match=rf"CASSANDRA_HOST=127.0.0.1 CASSANDRA_PORT={port}"):
        lc.ensure_running(settings)


def test_busy_port_error_names_the_port(tmp_path):
    config = _scratch_config(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", config.native_port))
        squatter.listen()
        with pytest.raises(lc.PortInUseError, match=rf"port {config.native_port} \(CQL native transport") as caught:
            lc.start(config, timeout=5)
    assert "CASSANDRA_PORT=" in str(caught.value) and "CASSANDRA_HOST" in str(caught.value)
    assert not config.lib_dir.exists()  # refused before any download


def test_java_11_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    fake_home = tmp_path / "jdk-11"
    _executable(fake_home / "bin" / "java", "#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    monkeypatch.setenv("JAVA_HOME", str(fake_home))
    with pytest.raises(lc.JavaVersionError) as caught:
        lc.start(_scratch_config(tmp_path), timeout=5)
    message = str(caught.value)
    assert "is Java 11" in message and "needs Java 17" in message and f"JAVA_HOME={fake_home}" in message
    assert isinstance(caught.value, lc.CassandraSetupError)


def test_java_home_without_java_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(lc.JavaVersionError, match="has no bin/java"):
        lc.start(_scratch_config(tmp_path), timeout=5)


def test_missing_maven_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(Path(find_java17()).resolve().parent.parent))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(lc.MavenError, match=r"Maven \(mvn\) is needed.*apt-get install -y maven"):
        lc.start(_scratch_config(tmp_path), timeout=5)


def test_failed_download_shows_the_maven_output(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    _executable(bin_dir / "mvn", "#!/bin/sh\necho '[ERROR] Could not transfer cassandra-all: network unreachable'\nexit 1\n")
    monkeypatch.setenv("JAVA_HOME", str(Path(find_java17()).resolve().parent.parent))
    monkeypatch.setenv("PATH", str(bin_dir))
    config = _scratch_config(tmp_path)
    with pytest.raises(lc.MavenError, match="exit code 1") as caught:
        lc.start(config, timeout=5)
    assert "network unreachable" in str(caught.value)
    assert list(config.home.glob("lib*")) == []  # no half-filled jar folder left behind


def test_process_dying_at_startup_reports_the_log_tail(local_node, tmp_path, monkeypatch):
    # A "java 17" that passes the version check and then crashes like a broken JVM launch.
    crash = "#!/bin/sh\n[ \"$1\" = -version ] && { echo 'openjdk version \"17.0.9\"' >&2; exit 0; }\n"
    _executable(tmp_path / "jdk" / "bin" / "java", crash + "echo 'Error: simulated crash at boot' >&2\nexit 3\n")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    config = _scratch_config(tmp_path, home=local_node.home)
    with pytest.raises(lc.StartupError, match="exited with code 3") as caught:
        lc.start(config, timeout=30)
    assert "simulated crash at boot" in str(caught.value)
    assert not config.pid_file.exists()


def test_stop_never_signals_a_pid_that_is_not_the_node(tmp_path):
    config = _scratch_config(tmp_path)
    config.node_dir.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        config.pid_file.write_text(f"{sleeper.pid}\n")
        assert lc.stop(config, timeout=5) is False
        assert sleeper.poll() is None  # still alive: it was not signalled
        assert not config.pid_file.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def _shutdown_announce_wait_s(system_log) -> float:
    """Seconds between the node's last "Announcing shutdown" log line and the next one (its sleep, if any)."""
    from datetime import datetime

    lines = system_log.read_text(encoding="utf-8", errors="replace").splitlines()
    start = max(i for i, line in enumerate(lines) if "Announcing shutdown" in line)
    stamps = [datetime.strptime(" ".join(line.split()[2:4]), "%Y-%m-%d %H:%M:%S,%f") for line in lines[start:start + 8]
              if "Announcing shutdown" in line or "Waiting for messaging service to quiesce" in line]
    assert len(stamps) == 2, lines[start:start + 8]
    return (stamps[1] - stamps[0]).total_seconds()


@pytest.mark.slow
def test_a_stop_start_cycle_keeps_data_and_a_clean_start_wipes_it(second_node):
    first = lc.status(second_node)  # running (conftest `second_node`)
    assert first["running"] and first["pid"]
    _cql(second_node.native_port,
         f"CREATE KEYSPACE kept WITH replication = {KEYSPACE_OPTIONS}",
         "CREATE TABLE kept.kv (k text PRIMARY KEY, v int)",
         "INSERT INTO kept.kv (k, v) VALUES ('answer', 42)")
    assert lc.stop(second_node) is True
    assert lc.status(second_node)["running"] is False
    # A single node has nobody to announce its shutdown to: the stop does not wait for listeners (2 s by default).
    assert _shutdown_announce_wait_s(second_node.system_log) < 1.0
    second = lc.start(second_node, timeout=BOOT_TIMEOUT_S)
    rows = _cql(second_node.native_port, "SELECT v FROM kept.kv WHERE k = 'answer'")
    assert second["started"] and second["pid"] != first["pid"]
    assert [row.v for row in rows] == [42]
    lc.start(second_node, clean=True, timeout=BOOT_TIMEOUT_S)
    rows = _cql(second_node.native_port, "SELECT keyspace_name FROM system_schema.keyspaces")
    assert "kept" not in {row.keyspace_name for row in rows}


def test_ensure_running_keeps_stdout_clean_for_machine_readable_callers(cassandra_endpoint, monkeypatch, capsys):
    """`query`/`evidence --format json` print JSON on stdout after ensure_running(): its status goes to stderr."""
    if os.environ.get("CASSANDRA_HOST"):
        pytest.skip("CASSANDRA_HOST selects an external server: no local node is managed in this run")
    monkeypatch.setattr(lc, "_announced", set())  # as in a fresh process (a notebook's kernel)
    capsys.readouterr()
    assert lc.ensure_running() == cassandra_endpoint
    captured = capsys.readouterr()
    assert captured.out == "" and "already running" in captured.err
    # What a notebook shows a reader: one line, without pid or machine paths, and only once per process.
    assert len(captured.err.strip().splitlines()) == 1
    assert "pid" not in captured.err and "/" not in captured.err.replace(":", " ")
    assert lc.ensure_running() == cassandra_endpoint
    assert capsys.readouterr().err == ""
