"""A pytest plugin: the three slowest subprocess tests run beside the rest of the suite, at low CPU priority.

The notebooks chain, the installed copy's benchmark and the standalone-cluster demo are processes of their
own (a kernel and its JVM; a venv and a driver JVM; a master, a worker, a driver and an executor). The suite
leaves a fifth of the two cores idle while its own driver plans, Python workers start and tests wait on files
and Cassandra (ADR 153, session 17: 78-79 % busy), so their work starts once the session's first slow or
course test is set up, at idle priority (`SCHED_IDLE`), soaks up that idle time, and their tests, moved to the
end of the run, check what they printed and wrote (ADR 153, sessions 29 and 30).

A test opts in with `@pytest.mark.background("<job fixture>")`: the fixture starts a `BackgroundJob` and
returns it; the test calls `.result()`. Nothing starts unless such a test is selected (`make test-fast`
selects none), and a failure inside a job is raised by its test, with the job's own message.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# Generous: a job gets almost no CPU while the suite keeps both cores busy.
JOB_TIMEOUT_S = 3000.0
# Linux's SCHED_IDLE: a core that runs only such tasks counts as idle when the kernel places a waking task, and
# the waking task preempts them at once (nice 19 only lowers their share). The suite still slows down while the
# jobs run (caches, memory bandwidth, Cassandra serving them): measured in ADR 153, session 29.
_LAUNCHER = """import os, sys
try:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
except (AttributeError, OSError):
    os.nice(19)
os.execvp(sys.argv[1], sys.argv[1:])
"""


def low_priority(command: list[str]) -> list[str]:
    """`command` at idle priority: every process and thread it starts (JVMs included) inherits the policy."""
    return [sys.executable, "-c", _LAUNCHER, *map(str, command)]


# Jobs start once the session's first slow or course test is set up (the first test, when none is selected): in a
# full run that set-up runs the session's first chain on the course data, which took 54-101 s with a job starting
# beside it against 37.5 s alone (ADR 153, session 30).
_jobs_may_start = threading.Event()
_session_over = threading.Event()
_gate_test: str | None = None  # the node id of the test whose set-up opens the gate; None: the first test's

_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def run_idle(command: list, *, timeout: float, check: bool = False, capture_output: bool = False,
             **popen_options) -> subprocess.CompletedProcess:
    """`subprocess.run` of `command` at idle priority, in a process group of its own: a session that ends
    before the job does (`pytest -x`, Ctrl-C) interrupts it instead of leaving it running."""
    if capture_output:
        popen_options.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with subprocess.Popen(low_priority(command), start_new_session=True, **popen_options) as process:
        with _running_lock:
            _running.add(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException:
            _interrupt(process)
            raise
        finally:
            with _running_lock:
                _running.discard(process)
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check:
        done.check_returncode()
    return done


def _interrupt(process: subprocess.Popen) -> None:
    """SIGINT the job's process group (its scripts then stop the daemons and kernels they started), SIGKILL
    it if it is still there 20 s later."""
    for sig, grace in ((signal.SIGINT, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
            process.wait(grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def pytest_runtest_logreport(report) -> None:
    # Passed, failed or skipped: a set-up that ends opens the gate. A gate test never reached (`-x`, Ctrl-C) ends the
    # session, which opens it too.
    if report.when == "setup" and _gate_test in (None, report.nodeid):
        _jobs_may_start.set()


def pytest_sessionfinish(session) -> None:
    _session_over.set()  # a job still waiting to start never starts
    _jobs_may_start.set()
    with _running_lock:
        unfinished = list(_running)
    for process in unfinished:
        _interrupt(process)


class BackgroundJob:
    """`work()` in a thread of the pytest process (it waits on subprocesses, so it costs no CPU here)."""

    started: list[BackgroundJob] = []  # this session's jobs, for the run's summary

    def __init__(self, name: str, work: Callable[[], object], queue: threading.Lock | None = None) -> None:
        """`queue`: jobs that share it run one after another, in the order they were created."""
        self.name, self.seconds, self.waited = name, None, None
        BackgroundJob.started.append(self)
        self._result: object = None
        self._error: BaseException | None = None
        self._created = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(work, queue), name=f"background {name}", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], object], queue: threading.Lock | None) -> None:
        with queue or contextlib.nullcontext():  # taken in creation order, then held while the gate is closed
            _jobs_may_start.wait()
            started = time.monotonic()
            self.waited = started - self._created
            try:
                if _session_over.is_set():
                    raise RuntimeError(f"the session ended before the background job {self.name!r} started")
                self._result = work()
            except BaseException as error:  # noqa: BLE001 - raised again by the test that asks for the result
                self._error = error
            finally:
                self.seconds = time.monotonic() - started

    def result(self, timeout: float = JOB_TIMEOUT_S) -> object:
        """What `work()` returned, once it has; what it raised is raised here, in the test."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"background job {self.name!r} still running after {timeout:.0f} s"
        if self._error is not None:
            raise self._error
        return self._result


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "background(job): the test's work runs beside the suite at low priority, "
                                       "started with the session by the named job fixture; the test runs last")


def pytest_terminal_summary(terminalreporter) -> None:
    """How long each job took beside the suite: a job that ends after the suite's last test makes the run wait."""
    if BackgroundJob.started:
        jobs = ", ".join(f"{job.name} {job.seconds:.0f} s after {job.waited:.0f} s" if job.seconds is not None
                         else f"{job.name} unfinished" for job in BackgroundJob.started)
        terminalreporter.line("background jobs (idle priority, one after another once the first slow test was set up): "
                              f"{jobs}")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Tests that check a background job run last, when their job has had the whole suite to finish."""
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)  # stable: order kept otherwise


def pytest_collection_finish(session) -> None:
    """The gate test, chosen among the tests that will run (`-k` and `-m` have deselected the others by now)."""
    global _gate_test
    heavy = [item for item in session.items if item.get_closest_marker("slow") or item.get_closest_marker("course")]
    candidates = heavy or session.items
    _gate_test = candidates[0].nodeid if candidates else None


@pytest.fixture(scope="session", autouse=True)
def _background_jobs_started(request) -> None:
    """Create the job of every selected background test with the session's first test; each starts once the
    first slow or course test is set up (`_jobs_may_start`)."""
    for item in request.session.items:
        marker = item.get_closest_marker("background")
        if marker is not None:
            try:
                request.getfixturevalue(marker.args[0])
            except KeyboardInterrupt:
                raise
            except BaseException:  # noqa: BLE001 - the test asks for the same fixture and reports it (and only it)
                pass


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    project = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(project)],
                   check=True, timeout=600, capture_output=True)
    (built,) = out.glob("lakehouse_utils-*.whl")
    return built


# The suite's jobs run one at a time: all three at once start seven JVMs and processes beside the session's first
# chain, which took 58 and 141 s in two such runs against 38 s alone (ADR 153, session 29).
_SUITE_QUEUE = threading.Lock()


@pytest.fixture(scope="session")
def installed_copy_job(wheel, cassandra_endpoint, tmp_path_factory) -> BackgroundJob:
    from test_packaging import run_installed_copy

    root = tmp_path_factory.mktemp("installed_copy")
    return BackgroundJob("installed copy", lambda: run_installed_copy(wheel, root, *cassandra_endpoint), _SUITE_QUEUE)


@pytest.fixture(scope="session")
def cluster_demo_job(faulty_landing, cassandra_endpoint, tmp_path_factory) -> BackgroundJob:
    from test_cluster import run_cluster_demo

    root = tmp_path_factory.mktemp("cluster_demo")
    return BackgroundJob("cluster demo", lambda: run_cluster_demo(faulty_landing[0], root), _SUITE_QUEUE)


@pytest.fixture(scope="session")
def notebook_chain_job(cassandra_endpoint, tmp_path_factory) -> BackgroundJob:
    from test_notebooks import run_notebook_chain

    root = tmp_path_factory.mktemp("notebook_chain")
    return BackgroundJob("notebook chain", lambda: run_notebook_chain(root, *cassandra_endpoint), _SUITE_QUEUE)
