"""Live demo helpers (notebook 06_live, the freshness benchmark): a landing to drop files into, and a live process.

Files are delivered the way ADR 081 asks producers to: written under a hidden temporary
name, then renamed into the folder, so the stream never reads half a file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from lakehouse_utils.config import PROJECT_ROOT
from lakehouse_utils.paths import EVENTS_DIR, MASTER_FILES


def prepare_landing(source: Path, work: Path, initial_files: int = 0) -> tuple[Path, list[Path]]:
    """A fresh `work/landing` with the masters of `source` (linked) and its first `initial_files` event files.

    Returns the landing and the event files still to drop, in name order. Nothing of
    `source` is modified (course data stays read-only).
    """
    landing = work / "landing"
    shutil.rmtree(work, ignore_errors=True)
    (landing / EVENTS_DIR).mkdir(parents=True)
    for name in MASTER_FILES.values():
        (landing / name).symlink_to((source / name).resolve())
    files = sorted((source / EVENTS_DIR).glob("*.jsonl"))
    for path in files[:initial_files]:
        drop_file(path, landing / EVENTS_DIR)
    return landing, files[initial_files:]


def drop_file(source: Path, folder: Path) -> Path:
    """Copy `source` into `folder` atomically: hidden temp name first (the file source ignores it), then rename."""
    temp = folder / f".{source.name}.tmp"
    shutil.copyfile(source, temp)
    target = folder / source.name
    os.replace(temp, target)
    return target


def start_live(landing: Path, lake: Path, duration_s: float, log: Path, keyspace: str | None = None,
               trigger_interval: str = "2 seconds") -> subprocess.Popen:
    """`python -m lakehouse_utils live` in the background, its progress lines going to `log`.

    The child gets the settings this kernel resolved: in Colab a process started from a cell cannot read the
    notebook's secrets, so a `CASSANDRA_HOST` or `WATERMARK_DELAY` secret would otherwise not reach it.
    """
    from lakehouse_utils.config import load_variables

    resolved = {name: value for name, value in load_variables().items() if value}
    env = {**resolved, **os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    if keyspace:
        env["CASSANDRA_KEYSPACE"] = keyspace
    command = [sys.executable, "-m", "lakehouse_utils", "live", "--landing", str(landing), "--lake", str(lake),
               "--duration", str(duration_s), "--trigger-interval", trigger_interval]
    with open(log, "w", encoding="utf-8") as handle:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def progress_lines(log: Path) -> list[str]:
    """The live process's own lines: progress, and Cassandra outages (Spark's JVM warnings and the
    node's start-up status, which the notebook already showed, left out)."""
    if not log.exists():
        return []
    return [line for line in log.read_text(encoding="utf-8").splitlines() if line.startswith(("live", "Cassandra unavailable"))]


def reset_keyspace(target) -> None:
    """Drop the demo's keyspace, so that "Q1 before" shows only what this run's `live` wrote.

    The demo lake is rebuilt on every run; a keyspace left by an earlier run would already
    hold the figures of the files about to be dropped. Refuses the keyspaces the batch layer serves.
    """
    from lakehouse_utils.config import DEFAULTS, configured_value
    from lakehouse_utils.serving.connection import open_session

    if target.kind == "astra":
        raise ValueError("06_live drops and re-creates its demo keyspace, which AstraDB allows only in its console: "
                         "run this notebook with SERVING_TARGET=local (the live command itself works with astra)")
    if target.keyspace in (DEFAULTS["CASSANDRA_KEYSPACE"], configured_value("CASSANDRA_KEYSPACE")):
        raise ValueError(f"refusing to drop {target.keyspace!r}, the keyspace the batch layer serves; "
                         "give the demo a keyspace of its own (LIVE_KEYSPACE)")
    with open_session(target, use_keyspace=False) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {target.keyspace}", timeout=120)
