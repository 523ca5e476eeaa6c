"""Slow checks that are mostly child processes, started at the session's first test and checked at their turn.

The cluster demo and the installed copy's benchmark each run a chain in JVMs of their own and keep the
two cores ~89 % busy; the rest of the suite leaves 10–20 % of them idle (ADR 153, session 21). Started
beside it, their processes use that idle time instead of running alone later. What they check does not
change: the test waits for the result and asserts on it as before (ADR 153, session 23).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

# A child that handles SIGINT (the cluster demo stops its master and worker then) gets this long before SIGKILL.
STOP_GRACE_S = 30.0


class BackgroundCheck:
    """`work(check)` in a thread of its own; `check.run(...)` starts its child processes, `result()` waits for it."""

    def __init__(self, name: str, work: Callable[[BackgroundCheck], Any]) -> None:
        self.name = name
        self._children: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(work,), name=f"background {name}", daemon=True)
        self._thread.start()

    def _main(self, work: Callable[[BackgroundCheck], Any]) -> None:
        try:
            self._result = work(self)
        except BaseException as error:  # noqa: BLE001 - handed to the test, which re-raises it
            self._error = error

    def run(self, args: list[str], *, timeout: float, **options) -> subprocess.CompletedProcess:
        """`subprocess.run(args, capture_output=True, text=True, timeout=...)` in a process group of its own,
        which `stop()` ends if the session ends first."""
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True, **options)
        with self._lock:
            self._children.append(child)
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._end(child)
            child.communicate()  # the pipes, read to the end (this thread is their only reader)
            raise
        return subprocess.CompletedProcess(args, child.returncode, stdout, stderr)

    def result(self, timeout: float = 3600.0) -> Any:
        """What `work` returned, once it has; its exception if it raised one."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.name} was still running after {timeout:.0f} s more")
        if self._error is not None:
            raise self._error
        return self._result

    def stop(self) -> None:
        """End every child still running (the session ended before the check was read)."""
        with self._lock:
            running = [child for child in self._children if child.poll() is None]
        for child in running:
            self._end(child)

    @staticmethod
    def _end(child: subprocess.Popen) -> None:
        try:
            os.killpg(child.pid, signal.SIGINT)
            child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended by itself meanwhile
