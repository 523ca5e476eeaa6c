"""The node's process: launch, PID file, identity check, ports, stop, log tail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import psutil

from lakehouse_utils.cassandra_server.node import (
    LOOPBACK,
    MAIN_CLASS,
    TAIL_LINES,
    CassandraSetupError,
    NodeConfig,
    PortInUseError,
)

# Popen objects of nodes started by this Python process, so that their exit is
# reaped (no zombie that still looks alive) and Python does not warn on cleanup.
_CHILDREN: dict[int, subprocess.Popen] = {}


def read_pid(config: NodeConfig) -> int | None:
    try:
        return int(config.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def is_node_process(pid: int, config: NodeConfig) -> bool:
    """True when `pid` is a live java CassandraDaemon launched with this node's argfile."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    is_java = bool(cmdline) and Path(cmdline[0]).name == "java"
    return is_java and MAIN_CLASS in cmdline and f"@{config.argfile}" in cmdline


def node_pid(config: NodeConfig) -> int | None:
    """PID of this node's running server, or None (a stale PID file does not count)."""
    pid = read_pid(config)
    return pid if pid is not None and is_node_process(pid, config) else None


def read_state(config: NodeConfig) -> dict:
    try:
        return json.loads(config.state_file.read_text())
    except (OSError, ValueError):
        return {}


def busy_ports(config: NodeConfig) -> list[tuple[int, str]]:
    """The node's ports that cannot be bound on loopback now, with their role and setting."""
    wanted = [(config.native_port, "CQL native transport, CASSANDRA_PORT"),
              (config.storage_port, "storage/gossip, CASSANDRA_STORAGE_PORT")]
    if config.jmx_port:
        wanted.append((config.jmx_port, "JMX, CASSANDRA_JMX_PORT (0 turns JMX off)"))
    return [(port, role) for port, role in wanted if not _can_bind(port)]


def _can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR like the JVM: TIME_WAIT leftovers of a just-stopped node are no conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str | None:
    """'pid N (name)' of the process listening on `port`, when the OS lets us see it."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except (psutil.Error, OSError):
        return None
    return None


def refuse_busy_ports(config: NodeConfig) -> None:
    """Raise PortInUseError naming each port some other program holds, and how to choose others."""
    busy = busy_ports(config)
    if not busy:
        return
    described = []
    for port, role in busy:
        holder = port_holder(port)
        described.append(f"port {port} ({role})" + (f" held by {holder}" if holder else ""))
    raise PortInUseError(
        f"cannot start the local Cassandra: {'; '.join(described)} is already in use on {LOOPBACK} by a program "
        f"that is not this project's node (none runs from {config.node_dir}). Stop that program, or choose free "
        "ports in the environment or .env, e.g. CASSANDRA_PORT=9043 CASSANDRA_STORAGE_PORT=7001 CASSANDRA_JMX_PORT=7200; "
        "or, if it is a Cassandra you want to use, set CASSANDRA_HOST (and CASSANDRA_PORT) to use it instead."
    )


def refuse_changed_ports(config: NodeConfig, pid: int) -> None:
    """The running node's ports are fixed: changing CASSANDRA_PORT needs a stop first."""
    state = read_state(config)
    if state and state.get("native_port") != config.native_port:
        raise CassandraSetupError(
            f"the local node (pid {pid}, {config.node_dir}) already runs with CQL port {state.get('native_port')}, "
            f"not {config.native_port}; run `python -m lakehouse_utils cassandra stop` before changing ports"
        )


def launch(java_bin: str, config: NodeConfig) -> int:
    """Start the server detached from this process; write the PID and state files."""
    if config.system_log.exists():
        config.system_log.replace(config.log_dir / "system.log.1")  # keep one previous run
    with open(config.stdout_log, "wb") as out:
        child = subprocess.Popen(
            [java_bin, f"@{config.argfile}", MAIN_CLASS],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=config.node_dir, start_new_session=True, close_fds=True,
        )
    _CHILDREN[child.pid] = child
    _write_atomic(config.pid_file, f"{child.pid}\n")
    state = {"pid": child.pid, "native_port": config.native_port, "storage_port": config.storage_port,
             "jmx_port": config.jmx_port, "java": java_bin, "launched_at": time.time()}
    _write_atomic(config.state_file, json.dumps(state, indent=2))
    return child.pid


def exit_description(pid: int) -> str | None:
    """How the process ended ('exited with code 3', ...), or None while it runs."""
    child = _CHILDREN.get(pid)
    if child is not None:
        code = child.poll()
        if code is None:
            return None
        return f"exited with code {code}" if code >= 0 else f"was killed by signal {-code}"
    try:
        alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    return None if alive else "exited (started by another process, so its exit code is unknown here)"


def terminate(pid: int, timeout: float) -> str:
    """SIGTERM (Cassandra drains on it), then SIGKILL after `timeout`; returns the signal that ended it."""
    child = _CHILDREN.pop(pid, None)
    try:
        waiter = child if child is not None else psutil.Process(pid)
        waiter.terminate()
        try:
            waiter.wait(timeout=timeout)
            return "SIGTERM"
        except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
            waiter.kill()
            waiter.wait(timeout=30)
            return "SIGKILL"
    except psutil.NoSuchProcess:
        return "already gone"


def clear_pid_files(config: NodeConfig) -> None:
    config.pid_file.unlink(missing_ok=True)
    config.state_file.unlink(missing_ok=True)


def rss_mb(pid: int) -> float | None:
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


def log_tail(config: NodeConfig, lines: int = TAIL_LINES) -> str:
    """The last lines of system.log and stdout.log, labelled, for error messages."""
    parts = []
    for path in (config.system_log, config.stdout_log):
        text = _tail(path, lines)
        if text:
            parts.append(f"--- last {lines} lines of {path} ---\n{text}")
    return "\n".join(parts) or f"(no log output in {config.log_dir})"


def _tail(path: Path, lines: int, max_bytes: int = 64_000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - max_bytes))
            data = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(data.strip().splitlines()[-lines:])


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(path)
