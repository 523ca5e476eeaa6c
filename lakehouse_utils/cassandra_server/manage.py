"""The project's local single-node Apache Cassandra 5.0 (development, tests, demo).

`ensure_running()` is what other modules call: with CASSANDRA_HOST set it checks
that server answers CQL and returns it; otherwise it starts the project's own
node (jars from Maven Central, cached in CASSANDRA_HOME) when not already up.
CLI: `python -m lakehouse_utils cassandra start [--clean] | stop | status`.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import io
import json
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout

from lakehouse_utils.cassandra_server import process
from lakehouse_utils.cassandra_server.node import (
    LOOPBACK,
    CassandraSetupError,
    CassandraUnreachableError,
    JavaVersionError,
    MavenError,
    NodeConfig,
    PortInUseError,
    StartupError,
    ensure_jars,
    find_java17,
    jars_present,
    write_node_files,
)
from lakehouse_utils.config import Settings

__all__ = [
    "CassandraSetupError", "CassandraUnreachableError", "JavaVersionError", "MavenError", "NodeConfig",
    "PortInUseError", "StartupError", "driver_connection_class", "ensure_running", "open_cluster",
    "release_version", "start", "status", "stop",
]

# Cassandra 4.0+ and Astra speak v5; fixing it spares a noisy two-step downgrade from the driver's v6 beta.
PROTOCOL_VERSION = 5
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
POLL_S = 1.0


@functools.lru_cache(maxsize=1)
def driver_connection_class() -> type:
    """A cassandra-driver connection class that works on this Python.

    The driver's default reactor needs asyncore, which Python 3.12 removed: use the
    libev C reactor when the driver was built with it, else the pure-asyncio one.
    """
    from cassandra import DependencyException

    try:
        from cassandra.io.libevreactor import LibevConnection

        return LibevConnection
    except (ImportError, DependencyException):
        from cassandra.io.asyncioreactor import AsyncioConnection

        return AsyncioConnection


def open_cluster(host: str, port: int, *, connect_timeout: float = 10.0, request_timeout: float = 30.0,
                 protocol_version: int = PROTOCOL_VERSION):
    """A driver `Cluster` for a plain (non-Astra) Cassandra 4.0+; the caller shuts it down.

    The one builder for a local or self-hosted node (serving.connection uses it too). A fixed
    protocol version: no DSE-protocol probing (and its warnings) against Apache Cassandra.
    Token-aware routing sends each write to a replica; no schema metadata, which no caller reads.
    """
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    profile = ExecutionProfile(load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                               request_timeout=request_timeout)
    return Cluster(
        [host], port=port, connection_class=driver_connection_class(), connect_timeout=connect_timeout,
        control_connection_timeout=connect_timeout, execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=protocol_version, schema_metadata_enabled=False,
    )


def release_version(host: str, port: int, timeout: float = 10.0) -> str:
    """`release_version` from system.local: proof that the server answers CQL (driver errors propagate)."""
    cluster = open_cluster(host, port, connect_timeout=timeout, request_timeout=timeout)
    try:
        row = cluster.connect().execute("SELECT release_version FROM system.local").one()
        return str(row.release_version)
    finally:
        cluster.shutdown()


def _answers_cql(host: str, port: int, timeout: float = 10.0) -> str | None:
    try:
        return release_version(host, port, timeout)
    except Exception:  # noqa: BLE001 - any driver/socket error means "not answering"
        return None


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def _node_lock(config: NodeConfig) -> Iterator[None]:
    """Serialise start/stop of one node across processes (parallel test sessions, notebooks)."""
    config.lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(config.lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start(config: NodeConfig | None = None, *, clean: bool = False, timeout: float = START_TIMEOUT_S) -> dict:
    """Start the local node unless it runs; return once it answers CQL.

    `clean` stops the node if needed and wipes its data, commitlog and logs (the jars stay).
    """
    config = config or NodeConfig.from_settings()
    began = time.monotonic()
    downloaded = False
    with _node_lock(config):
        pid = process.node_pid(config)
        if pid is not None and clean:
            _stop_locked(config, pid, STOP_TIMEOUT_S)
            pid = None
        already_running = pid is not None
        if already_running:
            process.refuse_changed_ports(config, pid)
            version = _wait_for_cql(config, pid, timeout, stop_on_failure=False)
        else:
            process.clear_pid_files(config)
            java_bin = find_java17()
            process.refuse_busy_ports(config)
            downloaded = ensure_jars(config, java_bin)
            if clean:
                shutil.rmtree(config.node_dir, ignore_errors=True)
            write_node_files(config)
            pid = process.launch(java_bin, config)
            version = _wait_for_cql(config, pid, timeout, stop_on_failure=True)
    seconds = round(time.monotonic() - began, 1)
    where = f"{LOOPBACK}:{config.native_port} (pid {pid})"
    if already_running:
        print(f"Cassandra {version} already running on {where}. Log: {config.system_log}", flush=True)
    else:
        note = ", including the jar download" if downloaded else ""
        print(f"Cassandra {version} is up on {where} after {seconds} s{note}. Log: {config.system_log}", flush=True)
    return {"host": LOOPBACK, "port": config.native_port, "pid": pid, "release_version": version,
            "started": not already_running, "downloaded": downloaded, "seconds": seconds,
            "log": str(config.system_log), "node_dir": str(config.node_dir)}


def _wait_for_cql(config: NodeConfig, pid: int, timeout: float, stop_on_failure: bool) -> str:
    """Poll until the node answers CQL; on death or timeout raise StartupError with the log tail."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        ended = process.exit_description(pid)
        if ended is not None:
            process.clear_pid_files(config)
            raise StartupError(
                f"the Cassandra process (pid {pid}) {ended} during startup; the log explains why "
                f"(e.g. 'Address already in use', a yaml key error, an InaccessibleObjectException).\n"
                f"{process.log_tail(config)}"
            )
        if _port_open(LOOPBACK, config.native_port):
            try:
                return release_version(LOOPBACK, config.native_port, timeout=10.0)
            except Exception as error:  # noqa: BLE001 - still starting: keep polling until the deadline
                last_error = error
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    if stop_on_failure:
        process.terminate(pid, timeout=30)
        process.clear_pid_files(config)
    action = "it was stopped" if stop_on_failure else "it is still running"
    raise StartupError(
        f"Cassandra (pid {pid}) did not answer CQL on {LOOPBACK}:{config.native_port} within {timeout:.0f} s; "
        f"{action}. Last driver error: {last_error!r}. A busy machine may need a longer --timeout.\n"
        f"{process.log_tail(config)}"
    )


def stop(config: NodeConfig | None = None, *, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the local node (only the PID in our PID file, once verified); True when one was stopped."""
    config = config or NodeConfig.from_settings()
    with _node_lock(config):
        pid = process.node_pid(config)
        if pid is None:
            stale = process.read_pid(config)
            process.clear_pid_files(config)
            if stale is not None:
                print(f"pid {stale} in {config.pid_file} is not this node's Cassandra (it exited); "
                      "removed the stale PID file and signalled nothing", flush=True)
            else:
                print(f"Cassandra is not running (no PID file in {config.node_dir})", flush=True)
            return False
        _stop_locked(config, pid, timeout)
    return True


def _stop_locked(config: NodeConfig, pid: int, timeout: float) -> None:
    began = time.monotonic()
    ended_by = process.terminate(pid, timeout)
    process.clear_pid_files(config)
    print(f"stopped Cassandra pid {pid} ({ended_by}, {time.monotonic() - began:.1f} s)", flush=True)


def status(config: NodeConfig | None = None, *, settings: Settings | None = None) -> dict:
    """Whether the server runs and answers CQL; the external one when CASSANDRA_HOST is set."""
    settings = settings or Settings.load()
    if config is None and settings.cassandra_host:
        version = _answers_cql(settings.cassandra_host, settings.cassandra_port)
        return {"external": True, "host": settings.cassandra_host, "port": settings.cassandra_port,
                "running": version is not None, "cql": version is not None, "release_version": version, "pid": None}
    config = config or NodeConfig.from_settings(settings)
    pid = process.node_pid(config)
    port = process.read_state(config).get("native_port", config.native_port) if pid else config.native_port
    version = _answers_cql(LOOPBACK, port) if pid else None
    return {"external": False, "host": LOOPBACK, "port": port, "running": pid is not None, "pid": pid,
            "cql": version is not None, "release_version": version,
            "rss_mb": process.rss_mb(pid) if pid else None, "node_dir": str(config.node_dir),
            "log": str(config.system_log), "jars_ready": jars_present(config.lib_dir)}


# (host, port) already announced by ensure_running in this process: a notebook opens several
# sessions, and its reader needs the node's status once, not at every open.
_announced: set[tuple[str, int]] = set()


def ensure_running(settings: Settings | None = None) -> tuple[str, int]:
    """(host, port) of a Cassandra that answers CQL: CASSANDRA_HOST's, else the local node (started if needed).

    Prints one status line (to stderr) the first time per process, without pid or machine paths.
    """
    settings = settings or Settings.load()
    if settings.cassandra_host:
        host, port = settings.cassandra_host, settings.cassandra_port
        try:
            version = release_version(host, port, timeout=15.0)
        except Exception as error:  # noqa: BLE001 - report any driver/socket failure the same way
            raise CassandraUnreachableError(
                f"CASSANDRA_HOST={host} CASSANDRA_PORT={port} does not answer CQL ({error}). Check that this server "
                "is up and reachable, or unset CASSANDRA_HOST to let the project start its own local node."
            ) from error
        _announce(host, port, f"Cassandra {version} answers on {host}:{port} (CASSANDRA_HOST; not managed here)")
        return host, port
    config = NodeConfig.from_settings(settings)
    # start() prints the CLI's line (pid, log path); callers get the short line below instead, on stderr
    # because they print results (`query --format json`, `evidence --format json`).
    with redirect_stdout(io.StringIO()):
        info = start(config)
    if info["started"]:
        note = ", including the jar download" if info["downloaded"] else ""
        line = (f"Cassandra {info['release_version']} started on {LOOPBACK}:{config.native_port} after "
                f"{info['seconds']:.0f} s{note} (the project's local node)")
    else:
        line = (f"Cassandra {info['release_version']} already running on {LOOPBACK}:{config.native_port} "
                "(the project's local node)")
    _announce(LOOPBACK, config.native_port, line)
    return LOOPBACK, config.native_port


def _announce(host: str, port: int, line: str) -> None:
    if (host, port) not in _announced:
        _announced.add((host, port))
        print(line, file=sys.stderr, flush=True)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    start_parser = actions.add_parser("start", help="start the local node (no-op when it runs)")
    start_parser.add_argument("--clean", action="store_true", help="wipe the node's data and logs first (jars kept)")
    start_parser.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for CQL")
    stop_parser = actions.add_parser("stop", help="stop the local node (SIGTERM, then SIGKILL)")
    stop_parser.add_argument("--timeout", type=float, default=STOP_TIMEOUT_S, help="seconds before SIGKILL")
    status_parser = actions.add_parser("status", help="is it running and answering CQL (exit 3 when not)")
    status_parser.add_argument("--json", action="store_true", help="print the status as JSON")


def run_cli(args: argparse.Namespace) -> int:
    try:
        settings = Settings.load()
        if args.action == "start":
            if settings.cassandra_host:
                host, port = ensure_running(settings)
                print(f"CASSANDRA_HOST is set: {host}:{port} answers CQL; no local node started")
            else:
                start(NodeConfig.from_settings(settings), clean=args.clean, timeout=args.timeout)
            return 0
        if args.action == "stop":
            stop(NodeConfig.from_settings(settings), timeout=args.timeout)
            return 0
        report = status(settings=settings)
        print(json.dumps(report, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
        return 0 if report["cql"] else 3
    except CassandraSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
