"""`make cluster-demo`: the whole pipeline on a Spark standalone cluster of one master and one worker.

Both daemons are started from the pinned pyspark's own `bin/spark-class` (nothing is
downloaded) on 127.0.0.1, as separate processes, and stopped at the end even on failure.
The worker's environment has no PYTHONPATH and its Python is checked *not* to import
lakehouse_utils, so the run proves that the package reaches the executors only through
`spark-submit --py-files <zip>` (the serving stage's writer runs there).

Honours LANDING_DIR (default: a small generated dataset), LAKE_ROOT (default
build/cluster_demo/lake), CASSANDRA_HOST (default: the checkout's local node, started if needed
and handed to the driver as CASSANDRA_HOST/PORT: the driver imports the shipped zip, which is
not a checkout and would look for a node of its own), CASSANDRA_KEYSPACE
(default `cluster_demo`), WORKER_PYTHON (default: this interpreter) and CLUSTER_DEMO_DIR
(logs, work dir, zip; default build/cluster_demo). Exit status:
spark-submit's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

from lakehouse_utils.cassandra_server.node import CassandraSetupError
from lakehouse_utils.config import PROJECT_ROOT, Settings
from lakehouse_utils.jvm_archive import C1_ONLY, archive_options
from lakehouse_utils.local_fs import same_machine_cluster_conf
from lakehouse_utils.shipping import build_package_zip
from lakehouse_utils.spark import LOG4J2_CONFIG, ensure_java17, landing_is_small

SPARK_HOME = Path(pyspark.__file__).resolve().parent
# Logs, the worker's work dir, the zip and the default lake; a test gives each run its own.
DEMO_DIR = Path(os.environ.get("CLUSTER_DEMO_DIR") or PROJECT_ROOT / "build" / "cluster_demo")
WORKER_CORES, WORKER_MEMORY, EXECUTOR_MEMORY = 1, "1536m", "1g"
SUBMIT_SCRIPT = PROJECT_ROOT / "scripts" / "spark_submit_pipeline.py"
# The daemons and the driver run no tasks. Their CPU goes to planning and to the JIT, and C2 compiling them
# competed with the executor for this machine's two cores: C1 alone took the demo from ~100 s to ~70 s
# (ADR 090.21). The executor runs the tasks: C1 as well when the landing is small, by the rule a local driver
# follows (`spark.landing_is_small`, ADR 090.25); the JVM's default otherwise.
NO_TASKS_JIT = C1_ONLY


class ClusterDemoError(RuntimeError):
    """The cluster could not be started or checked; the message says what to do."""


# The master's UI answers, and the worker registers, within a few seconds of starting: a short poll does
# not add a second of waiting to each.
POLL_INTERVAL_S = 0.25


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def daemon_env(java_home: str) -> dict[str, str]:
    """Environment of master and worker: loopback only, small daemon heaps, and no PYTHONPATH at all."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"}}
    env.update(JAVA_HOME=java_home, SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1", SPARK_DAEMON_MEMORY="512m",
               SPARK_DAEMON_JAVA_OPTS=f"{archive_options(java_home)} {NO_TASKS_JIT}".strip())
    # Only so that the daemons' class path starts as the class archive's does (they write no tables).
    jar = same_machine_cluster_conf(java_home).get("spark.executor.extraClassPath")
    if jar:
        env["SPARK_DAEMON_CLASSPATH"] = jar
    return env


def start_daemon(name: str, args: list[str], env: dict[str, str], logs: Path, cwd: Path) -> subprocess.Popen:
    log = (logs / f"{name}.log").open("wb")
    command = [str(SPARK_HOME / "bin" / "spark-class"), *args]
    print(f"starting {name}: {shlex.join(command)}  (log {logs / f'{name}.log'})")
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_daemon(process: subprocess.Popen, name: str) -> None:
    """SIGTERM the daemon's process group, SIGKILL it if still there after 20 s."""
    if process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    print(f"stopped {name} (pid {process.pid})")


def ui_json(port: int) -> dict:
    """A daemon's web UI state; {} while the UI answers but its JSON is not served yet (an empty body, found by CI)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/", timeout=5) as response:
        body = response.read()
    try:
        return json.loads(body)
    except ValueError:
        return {}


def wait_for(description: str, check, processes: list[tuple[str, subprocess.Popen]], timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, process in processes:
            if process.poll() is not None:
                raise ClusterDemoError(f"the {name} exited with status {process.returncode} before {description}; "
                                       f"see {DEMO_DIR / 'logs' / (name + '.log')}")
        try:
            state = check()
            if state:
                return state
        except OSError:
            pass  # the web UI is not up yet
        time.sleep(POLL_INTERVAL_S)
    raise ClusterDemoError(f"timed out after {timeout_s:.0f} s waiting for {description}")


def check_worker_python_lacks_package(python: str, env: dict[str, str], cwd: Path) -> None:
    probe = "import importlib.util, sys; sys.exit(3 if importlib.util.find_spec('lakehouse_utils') else 0)"
    result = subprocess.run([python, "-c", probe], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode == 3:
        raise ClusterDemoError(f"the worker's Python {python} imports lakehouse_utils by itself, so the demo would not "
                               "prove that the package is shipped; set WORKER_PYTHON to an interpreter without it")
    if result.returncode != 0:
        raise ClusterDemoError(f"the worker's Python {python} does not run: {result.stderr.strip()[:300]}")
    print(f"worker Python {python}: lakehouse_utils NOT importable there (shipping is required)")


def submit_command(master_url: str, package_zip: Path, landing: str, lake: str, jvm_options: str = "",
                   conf: dict[str, str] | None = None, executor_jit: str = "") -> list[str]:
    """The spark-submit line the README documents (and the slow test runs, through this script)."""
    executor_options = " ".join(filter(None, [jvm_options, executor_jit]))
    extra = ["--conf", f"spark.executor.extraJavaOptions={executor_options}"] if executor_options else []
    for key, value in (conf or {}).items():
        extra += ["--conf", f"{key}={value}"]
    return [
        str(SPARK_HOME / "bin" / "spark-submit"), "--master", master_url, "--deploy-mode", "client",
        "--py-files", str(package_zip),
        "--driver-memory", "1g", "--executor-memory", EXECUTOR_MEMORY,
        "--conf", "spark.executor.cores=1", "--conf", "spark.cores.max=1",
        *extra, "--driver-java-options",
        " ".join(filter(None, [f"-Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()}", jvm_options, NO_TASKS_JIT])),
        str(SUBMIT_SCRIPT), "--landing", landing, "--lake", lake,
    ]


def demo_landing() -> str:
    if os.environ.get("LANDING_DIR"):
        return os.environ["LANDING_DIR"]
    from lakehouse_utils.generator.landing import generate

    landing = DEMO_DIR / "landing"
    if not (landing / "customers_orgs.csv").exists():
        print(f"LANDING_DIR unset: generating a small dataset (scale 0.1) into {landing}")
        generate(landing, seed=7, scale=0.1)
    return str(landing)


def serving_endpoint() -> dict[str, str]:
    """CASSANDRA_HOST/PORT for the driver: CASSANDRA_HOST as given (checked to answer), else this
    checkout's local node (started when it is not running). Astra needs neither."""
    from lakehouse_utils.cassandra_server import manage

    settings = Settings.load()
    if settings.serving_target != "local":
        return {}
    host, port = manage.ensure_running(settings)
    print(f"serving into Cassandra at {host}:{port}")
    return {"CASSANDRA_HOST": host, "CASSANDRA_PORT": str(port)}


def print_cluster_view(master_ui: int, worker_ui: int) -> None:
    """What the master and the worker themselves report (separate processes from the driver)."""
    master = ui_json(master_ui)
    for app in master.get("activeapps", []) + master.get("completedapps", []):
        print(f"master: application {app['id']} {app['name']!r} state {app['state']}, cores {app.get('cores')}")
    worker = ui_json(worker_ui)
    for executor in worker.get("executors", []) + worker.get("finishedexecutors", []):
        print(f"worker {worker.get('id')}: ran executor {executor.get('id')} of {executor.get('appid')} "
              f"({executor.get('memory', '?')} MB)")


def run(args: argparse.Namespace) -> int:
    java_home = ensure_java17()
    logs, work = DEMO_DIR / "logs", DEMO_DIR / "work"
    logs.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    landing, lake = demo_landing(), os.environ.get("LAKE_ROOT") or str(DEMO_DIR / "lake")
    worker_python = os.environ.get("WORKER_PYTHON") or sys.executable
    env = daemon_env(java_home)
    check_worker_python_lacks_package(worker_python, env, work)
    cassandra = serving_endpoint()
    package_zip = build_package_zip(DEMO_DIR / "dist")
    master_port, master_ui, worker_ui = free_port(), free_port(), free_port()
    master_url = f"spark://127.0.0.1:{master_port}"
    daemons: list[tuple[str, subprocess.Popen]] = []
    try:
        daemons.append(("master", start_daemon("master", [
            "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(master_port),
            "--webui-port", str(master_ui)], env, logs, work)))
        wait_for("the master's web UI", lambda: ui_json(master_ui).get("status") == "ALIVE", daemons,
                 args.start_timeout)
        daemons.append(("worker", start_daemon("worker", [
            "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(WORKER_CORES),
            "--memory", WORKER_MEMORY, "--webui-port", str(worker_ui), "--work-dir", str(work), master_url],
            env, logs, work)))
        wait_for("the worker to register", lambda: ui_json(master_ui).get("aliveworkers", 0) >= 1, daemons,
                 args.start_timeout)
        print(f"master URL: {master_url}  (web UI http://127.0.0.1:{master_ui}), 1 worker "
              f"({WORKER_CORES} core, {WORKER_MEMORY})")
        # Every JVM of this cluster runs here, on the local disk: the fork-free local file system is safe to use.
        command = submit_command(master_url, package_zip, landing, lake, archive_options(java_home),
                                 same_machine_cluster_conf(java_home), C1_ONLY if landing_is_small(landing) else "")
        print(f"running: {shlex.join(command)}", flush=True)
        keyspace = os.environ.get("CASSANDRA_KEYSPACE") or args.keyspace
        driver_env = {**os.environ, "JAVA_HOME": java_home, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
                      "PYSPARK_PYTHON": worker_python, "PYSPARK_DRIVER_PYTHON": sys.executable,
                      "CASSANDRA_KEYSPACE": keyspace, **cassandra}
        driver_env.pop("SPARK_MASTER", None)
        status = subprocess.run(command, env=driver_env, cwd=PROJECT_ROOT, timeout=args.timeout).returncode
        print_cluster_view(master_ui, worker_ui)
        print(f"spark-submit exited with status {status}; lake {lake}, Cassandra keyspace {keyspace}")
        return status
    finally:
        for name, process in reversed(daemons):
            stop_daemon(process, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keyspace", default="cluster_demo", help="Cassandra keyspace when CASSANDRA_KEYSPACE is unset")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed for spark-submit")
    parser.add_argument("--start-timeout", type=float, default=90,
                        help="seconds allowed for the master's web UI, then for the worker to register")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # interleave in order with spark-submit's output
    try:
        return run(args)
    except (ClusterDemoError, CassandraSetupError) as error:
        print(f"cluster demo failed: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
