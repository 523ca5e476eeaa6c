"""One pipeline run per lake at a time.

Two runs writing the same zones would interleave partition swaps and
checkpoint commits; instead the second run stops with a clear message. The lock
is a file created with O_EXCL (atomic on local disks and Drive); it records the
holder's host and PID so that a lock left by a dead process can be taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from lakehouse_utils.paths import local_path


class LakeRootError(NotADirectoryError):
    """The lake root is, or lies below, a file."""


class LakeLockedError(RuntimeError):
    """Another live pipeline run holds the lake."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def lake_lock(lake_root: str, purpose: str = "pipeline"):
    """Hold `<lake>/_state/pipeline.lock` for the duration of a run.

    Remote lakes (s3a://...) have no atomic create; there the scheduler that
    launches spark-submit is responsible for not overlapping runs.
    """
    root = local_path(lake_root)
    if root is None:
        yield None
        return
    lock_file = root / "_state" / "pipeline.lock"
    blocking = next((p for p in (root, *root.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise LakeRootError(f"the lake root {lake_root} cannot be a folder: {blocking} is a file. Point LAKE_ROOT "
                            "(or --lake) at a folder; it is created when missing")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "purpose": purpose, "since": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = _read_holder(lock_file)
            if current and current.get("host") == holder["host"] and not _pid_alive(int(current.get("pid", -1))):
                lock_file.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise LakeLockedError(
                f"the lake {lake_root} is in use by another run ({_describe(current)}); "
                f"wait for it to finish, or delete {lock_file} if you are sure no run is active"
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(holder, handle)
        break
    try:
        yield lock_file
    finally:
        if _read_holder(lock_file) == holder:
            lock_file.unlink(missing_ok=True)


def _read_holder(lock_file: Path) -> dict | None:
    try:
        return json.loads(lock_file.read_text())
    except (OSError, ValueError):
        return None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "unknown holder"
    return f"{holder.get('purpose')} pid {holder.get('pid')} on {holder.get('host')}"
