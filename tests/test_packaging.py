"""The package as a user installs it: declared dependencies, resources inside the wheel, an installed copy
that runs the pipeline from another folder, and the zip that executors import."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from background_jobs import run_idle
from conftest import short_lived_driver_env
from packaging.requirements import Requirement

from lakehouse_utils.shipping import build_package_zip

PROJECT_ROOT = Path(__file__).resolve().parent.parent
KEYSPACE = "cluster_install_test"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_every_pin_is_declared_and_inside_its_range():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = {Requirement(text).name.lower(): Requirement(text)
                for text in tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    pins = _pins()
    assert set(pins) == set(declared), "requirements.txt pins and pyproject dependencies name different packages"
    outside = {name: (pins[name], str(req.specifier)) for name, req in declared.items()
               if not req.specifier.contains(pins[name])}
    assert not outside, f"pins outside the declared ranges: {outside}"


def _tracked_package_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "lakehouse_utils"], cwd=PROJECT_ROOT, capture_output=True, check=True)
    return {name for name in listed.stdout.decode().split("\0") if name}


def test_wheel_holds_every_tracked_package_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if name.startswith("lakehouse_utils/")}
        metadata = next(archive.read(n).decode() for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    assert _tracked_package_files() - in_wheel == set()
    assert any(name.endswith(".cql") for name in in_wheel) and "lakehouse_utils/spark-log4j2.properties" in in_wheel
    assert "Requires-Dist: pyspark" in metadata and "Requires-Dist: cassandra-driver" in metadata


def test_shipping_zip_holds_every_tracked_package_file_and_is_reproducible(tmp_path):
    first = build_package_zip(tmp_path / "a")
    second = build_package_zip(tmp_path / "b")
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        names = set(archive.namelist())
    assert _tracked_package_files() - names == set()
    assert not any("__pycache__" in name for name in names)


def test_package_imported_from_the_zip_reads_its_cql(tmp_path):
    archive = build_package_zip(tmp_path)
    probe = ("import lakehouse_utils, lakehouse_utils.serving.stage as s, lakehouse_utils.serving.queries as q; "
             "print(lakehouse_utils.__file__); print(len(s.cql_files()), len(q.QUERIES)); "
             "from lakehouse_utils.shipping import package_archive; print(package_archive())")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(archive)}, check=True)
    origin, counts, shipped = done.stdout.strip().splitlines()
    assert origin.startswith(str(archive)), origin
    assert counts.split()[0] != "0" and counts.split()[1] != "0"
    assert shipped == str(archive)  # what a cluster driver sends instead of zipping the package again


CONFIG_PROBE = ("from lakehouse_utils.config import DEFAULTS, PROJECT_ROOT, Settings; s = Settings.load(); "
                "print(PROJECT_ROOT); print(s.lake_root); print(s.cassandra_home); print(s.landing_dir)")


def test_defaults_of_an_installed_copy_follow_the_working_directory(tmp_path):
    site, work, cache = tmp_path / "site-packages", tmp_path / "work", tmp_path / "cache"
    shutil.copytree(PROJECT_ROOT / "lakehouse_utils", site / "lakehouse_utils",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work.mkdir()
    (work / ".env").write_text("LANDING_DIR=/from/the/folder/env\n")
    env = {k: v for k, v in os.environ.items() if k not in {"LAKE_ROOT", "LANDING_DIR", "CASSANDRA_HOME"}}
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(cache))
    done = subprocess.run([sys.executable, "-c", CONFIG_PROBE], cwd=work, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    root, lake, cassandra_home, landing = done.stdout.strip().splitlines()
    assert (root, lake) == (str(work), str(work / "data" / "lake"))
    assert cassandra_home == str(cache / "lakehouse_utils" / "cassandra")
    assert landing == "/from/the/folder/env"  # the .env of the working directory


def test_defaults_of_the_checkout_stay_in_the_checkout_from_any_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"LAKE_ROOT", "CASSANDRA_HOME"}}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    done = subprocess.run([sys.executable, "-c", CONFIG_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    root, lake, cassandra_home, _ = done.stdout.strip().splitlines()
    assert (root, lake) == (str(PROJECT_ROOT), str(PROJECT_ROOT / "data" / "lake"))
    assert cassandra_home == str(PROJECT_ROOT / ".cache" / "cassandra")


def run_installed_copy(wheel: Path, root: Path, host: str, port: int) -> dict:
    """A venv of its own (no system site-packages); the wheel is installed into it with pip. To avoid
    downloading ~450 MB, the pinned dependencies come from this interpreter's site-packages through a
    .pth file (appended after the venv's own site-packages): the package itself is the installed copy.

    The installed copy runs `benchmark` at a tiny scale with its defaults: every stage, serving included,
    into `data/benchmark` of the working folder and the report into its `docs/`. Every command runs at low
    priority beside the rest of the suite (`background_jobs`); the test checks what this returns."""
    from lakehouse_utils.jvm_archive import cache_dir

    venv = root / "venv"
    run_idle([sys.executable, "-m", "venv", venv], check=True, timeout=600)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    (venv_site / "zz_pinned_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # PYSPARK_PYTHON too: a Spark session built earlier in this pytest process set it to the checkout's venv,
    # whose Python workers cannot import the installed copy (found by CI: ModuleNotFoundError on an executor).
    leaked = {"PYTHONPATH", "LAKE_ROOT", "LANDING_DIR", "SPARK_MASTER", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"}
    env = {k: v for k, v in os.environ.items() if k not in leaked}
    # Away from the checkout and its PYTHONPATH: pip would take its lakehouse_utils.egg-info for an installed copy.
    run_idle([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], check=True, timeout=600,
             cwd=root, env=env)
    installed = _snapshot(venv_site / "lakehouse_utils")
    # A user cache of its own whose `jvm` folder is the checkout's: the installed copy finds the class archive
    # and the fork-free file system's jar where it looks for them (same Spark jars, same jar source), and the
    # JVM maps the archive only when the jar it was built with comes first on the class path (ADR 090.20).
    user_cache = root / "user_cache" / "lakehouse_utils"
    user_cache.mkdir(parents=True)
    (user_cache / "jvm").symlink_to(cache_dir(), target_is_directory=True)
    class_log = root / "classes.log"
    env.update(CASSANDRA_HOST=host, CASSANDRA_PORT=str(port), BENCHMARK_KEYSPACE=KEYSPACE, SPARK_DRIVER_MEMORY="1g",
               XDG_CACHE_HOME=str(user_cache.parent), SPARK_DRIVER_JAVA_OPTIONS=f"-Xlog:class+load=info:file={class_log}")
    env = short_lived_driver_env(env)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> str:
        done = run_idle([python, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=2400)
        assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    return {"pip_check": run("-m", "pip", "check"),
            "origin": run("-c", "import lakehouse_utils; print(lakehouse_utils.__file__)").strip(),
            # Exit status 0 also says every stage reconciled (the command fails otherwise).
            "benchmark": run("-m", "lakehouse_utils", "benchmark", "--sections", "stages", "--scales", "0.02"),
            "venv_site": venv_site, "installed": installed, "elsewhere": elsewhere, "class_log": class_log}


@pytest.mark.slow
@pytest.mark.background("installed_copy_job")
def test_installed_package_runs_every_stage_and_the_benchmark_from_another_folder(installed_copy_job,
                                                                                  cassandra_endpoint):
    """One run proves the package works outside the checkout and that the benchmark cannot rot (ADR 153.2,
    session 17); it ran beside the suite (`run_installed_copy`)."""
    from lakehouse_utils.benchmark.stages import STAGE_ORDER
    from lakehouse_utils.jvm_archive import archive_path
    from lakehouse_utils.spark import ensure_java17

    copy = installed_copy_job.result()
    venv_site, elsewhere, output = copy["venv_site"], copy["elsewhere"], copy["benchmark"]
    assert copy["pip_check"].strip().endswith("No broken requirements found.")
    assert copy["origin"].startswith(str(venv_site)), f"imported {copy['origin']}, not the installed copy"
    timed = {m["stage"]: (int(m["rows_in"].replace(",", "")), int(m["rows_out"].replace(",", "")))
             for m in re.finditer(r"scale 0\.02 (?P<stage>\w+)\s+[\d.]+s\s+\d+ jobs\s+in\s+(?P<rows_in>[\d,]+)\s+"
                                  r"out\s+(?P<rows_out>[\d,]+)", output)}
    assert list(timed) == STAGE_ORDER, output[-3000:]
    assert all(rows_in > 0 for rows_in, _ in timed.values())
    assert timed["bronze_stream"][0] == timed["bronze_stream"][1]  # clean data: every line is an event
    lake = elsewhere / "data" / "benchmark" / "lake_scale_0.02"
    for zone in ("bronze", "silver", "gold"):
        assert any((lake / zone).iterdir()), f"no {zone} tables under the working folder"
    report = (elsewhere / "docs" / "performance.md").read_text()
    assert "bronze_stream" in report and "## Targets" in report
    assert re.search(r"files per partition, any zone\s+\S+\s+\S+\s+True", report), report
    assert (elsewhere / "docs" / "performance.png").stat().st_size > 0
    assert not (venv_site / "data").exists()
    assert {p.name for p in (venv_site / "lakehouse_utils").iterdir()} >= {"serving", "config.py"}
    assert _snapshot(venv_site / "lakehouse_utils") == copy["installed"], "the run wrote into the installed package"
    if archive_path(ensure_java17()).is_file():  # `make test` builds it; a bare `pytest` may not have it
        assert " org.apache.spark.SparkContext source: shared objects file" in copy["class_log"].read_text()
    drop_keyspace(*cassandra_endpoint, KEYSPACE)


def _snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime)
            for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def drop_keyspace(host: str, port: int, keyspace: str) -> None:
    from lakehouse_utils.serving.connection import CassandraTarget, open_session

    with open_session(CassandraTarget("local", keyspace, host=host, port=port), use_keyspace=False) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)


def test_the_modules_executors_import_need_none_of_the_drivers_extra_packages(tmp_path):
    """README's "What the executors need": pyspark, pandas, pyarrow, cassandra-driver. python-dotenv and
    matplotlib are the driver's only (a cluster's executors may not have them)."""
    probe = ("import builtins; real = builtins.__import__\n"
             "def guarded(name, *args, **kwargs):\n"
             "    if name.split('.')[0] in ('dotenv', 'matplotlib'):\n"
             "        raise ImportError(f'{name} is not installed on this executor')\n"
             "    return real(name, *args, **kwargs)\n"
             "builtins.__import__ = guarded\n"
             "import lakehouse_utils.serving.writer, lakehouse_utils.serving.sync, lakehouse_utils.serving.connection\n"
             "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
