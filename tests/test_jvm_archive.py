"""The class-data-sharing archive of Spark's classes (ADR 090.7, 090.29): dumped from the committed class list
with the driver's class path, named after what it is valid for, mapped by the driver JVM when present, skipped
without a word when it does not fit."""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lakehouse_utils import jvm_archive
from lakehouse_utils.spark import ensure_java17

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Where `-Xlog:class+load` says a class came from when the static archive had it.
FROM_ARCHIVE = "shared objects file"
# The first four bytes of a static CDS archive (`-Xshare:dump`); a dynamic one (`-XX:ArchiveClassesAtExit`) has 0xf00baba8.
STATIC_ARCHIVE_MAGIC = 0xF00BABA2


def test_the_archive_name_changes_when_a_spark_jar_changes(tmp_path, monkeypatch):
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "spark-core.jar").write_bytes(b"x" * 10)
    monkeypatch.setattr(jvm_archive, "spark_jars_dir", lambda: jars)
    java_home = ensure_java17()
    before = jvm_archive.archive_key(java_home)
    assert jvm_archive.archive_key(java_home) == before
    (jars / "spark-core.jar").write_bytes(b"x" * 11)
    assert jvm_archive.archive_key(java_home) != before


def test_the_archive_name_changes_when_the_class_list_changes(tmp_path, monkeypatch):
    java_home = ensure_java17()
    listed = tmp_path / "jvm_classes.txt.gz"
    listed.write_bytes(jvm_archive.CLASS_LIST.read_bytes())
    monkeypatch.setattr(jvm_archive, "CLASS_LIST", listed)
    before = jvm_archive.archive_key(java_home)
    listed.write_bytes(listed.read_bytes() + b"\0")
    assert jvm_archive.archive_key(java_home) != before


def test_the_committed_class_list_was_recorded_with_the_pinned_pyspark_and_this_java():
    """A Spark upgrade leaves classes out of the archive (the dump skips names it cannot find) until the list is
    recorded again with the new Spark."""
    pinned = re.search(r"^pyspark==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    header = jvm_archive.class_list_header()
    fix = "run `python -m lakehouse_utils jvm-archive --record-classes` and commit lakehouse_utils/jvm_classes.txt.gz"
    assert header == {"pyspark": pinned, "java": "17"}, f"the class list was recorded with {header}: {fix}"
    names = gzip.decompress(jvm_archive.CLASS_LIST.read_bytes()).decode().splitlines()[1:]
    assert len(names) > 10_000 and "org/apache/spark/SparkContext" in names and "org/apache/spark/sql/SparkSession" in names


def test_a_recorded_list_keeps_the_class_names_under_its_header_and_its_bytes_depend_on_the_list_alone(tmp_path):
    dumped = "# NOTE: Do not modify this file.\n#\njava/lang/Object\n@lambda-proxy java/lang/Runnable run\n"
    first, second = tmp_path / "first.txt.gz", tmp_path / "second.txt.gz"
    jvm_archive.write_class_list(first, dumped, "4.1.4", "17")
    jvm_archive.write_class_list(second, dumped, "4.1.4", "17")
    assert gzip.decompress(first.read_bytes()).decode().splitlines()[1:] == [
        "java/lang/Object", "@lambda-proxy java/lang/Runnable run"]
    assert jvm_archive.class_list_header(first) == {"pyspark": "4.1.4", "java": "17"}
    assert first.read_bytes() == second.read_bytes()
    assert jvm_archive.class_list_header(tmp_path / "absent.txt.gz") is None


def test_the_dump_uses_the_class_path_spark_s_launcher_gives_a_local_driver():
    from lakehouse_utils.local_fs import ensure_jar

    java_home = ensure_java17()
    entries = jvm_archive.driver_class_path(java_home).split(os.pathsep)
    jar = ensure_jar(java_home)
    # The fork-free file system's jar first, as `get_spark` puts it (ADR 090.20), then Spark's own jars.
    assert entries[0] == str(jar) and entries[-1] == str(jvm_archive.spark_jars_dir() / "*")


def test_driver_options_name_the_archive_only_when_it_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(jvm_archive, "cache_dir", lambda: tmp_path / "jvm")
    monkeypatch.setenv(jvm_archive.EXTRA_OPTIONS_VARIABLE, "-Dprobe=1")
    java_home = ensure_java17()
    assert jvm_archive.driver_java_options(java_home) == "-Dprobe=1"
    archive = jvm_archive.archive_path(java_home)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"archive")
    options = jvm_archive.driver_java_options(java_home)
    assert f'"-XX:SharedArchiveFile={archive}"' in options and options.endswith("-Dprobe=1")


def test_a_small_local_landing_gets_c1_with_tiered_s_code_cache_and_a_large_or_remote_one_the_default(tmp_path):
    from lakehouse_utils.spark import SMALL_LANDING_BYTES, landing_is_small

    landing = tmp_path / "landing"
    (landing / "usage_events_stream").mkdir(parents=True)
    assert landing_is_small(str(landing)) and landing_is_small(str(tmp_path / "absent"))
    with open(landing / "usage_events_stream" / "big.jsonl", "wb") as sparse:  # no disk blocks written
        sparse.truncate(SMALL_LANDING_BYTES + 1)
    assert not landing_is_small(str(landing)) and landing_is_small(str(landing), limit=SMALL_LANDING_BYTES + 1)
    assert not landing_is_small(landing.as_uri().replace("file:", "s3a:"))
    java_home = ensure_java17()
    assert "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m" in jvm_archive.driver_java_options(java_home, True)
    assert "TieredStopAtLevel" not in jvm_archive.driver_java_options(java_home, False)


def test_the_test_session_s_driver_runs_c2_and_maps_the_archive(spark):
    """The session's JVM runs for minutes (C2, ADR 090.25); what the archive holds does not depend on the JIT:
    the running JVM has the file mapped (read from /proc)."""
    jvm = spark.sparkContext._jvm
    bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
        jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean"))
    assert bean.getVMOption("TieredStopAtLevel").getValue() == "4"
    archive = jvm_archive.archive_path(ensure_java17())
    if not archive.is_file():
        pytest.skip(f"no class archive at {archive}: run `make jvm-archive` (every make target that tests builds it)")
    pid = jvm.java.lang.ProcessHandle.current().pid()
    assert str(archive) in Path(f"/proc/{pid}/maps").read_text()


def test_a_finished_build_removes_other_archives_and_abandoned_partials_only(tmp_path):
    target = tmp_path / "spark-classes-new.jsa"
    other_version = tmp_path / "spark-classes-old.jsa"
    abandoned = tmp_path / "spark-classes-new.0badc0de.partial"  # a build killed long ago
    in_progress = tmp_path / "spark-classes-new.1234abcd.partial"  # another build writing right now
    for path in (target, other_version, abandoned, in_progress):
        path.write_bytes(b"x")
    long_ago = time.time() - jvm_archive.BUILD_TIMEOUT_S - 60
    os.utime(abandoned, (long_ago, long_ago))
    jvm_archive._remove_stale(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [in_progress.name, target.name]


@pytest.fixture(scope="module")
def built_archive() -> Path:
    """The machine's archive (`make` builds it before the tests; built here when missing)."""
    return jvm_archive.build()


def test_the_archive_is_a_static_dump_of_the_class_list(built_archive):
    """`-Xshare:dump`, not a training run that archives its classes at exit (ADR 090.29)."""
    with open(built_archive, "rb") as archive:
        assert struct.unpack("<I", archive.read(4))[0] == STATIC_ARCHIVE_MAGIC


def _start_driver(tmp_path: Path, cache: Path | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    """A new driver JVM in a subprocess (one job), logging where each class came from."""
    class_log = tmp_path / "classes.log"
    redirect = f"jvm_archive.cache_dir = lambda: Path({str(cache)!r})" if cache else ""
    script = textwrap.dedent(f"""
        from pathlib import Path
        from lakehouse_utils import jvm_archive
        {redirect}
        from lakehouse_utils.spark import get_spark
        spark = get_spark("archive-probe", small_data=True)
        print("rows", spark.range(5).count())
        jvm = spark.sparkContext._jvm
        bean = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(
            jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean"))
        print("jit", *(bean.getVMOption(name).getValue() for name in ("TieredStopAtLevel", "ReservedCodeCacheSize")))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_", "SPARK_DRIVER_JAVA"))}
    env[jvm_archive.EXTRA_OPTIONS_VARIABLE] = f"-Xlog:class+load=info:file={class_log}"
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows 5" in result.stdout
    return result, class_log


def _source_of(class_log: Path, class_name: str) -> str:
    line = next(line for line in class_log.read_text().splitlines() if f" {class_name} source:" in line)
    return line.split(" source: ", 1)[1]


@pytest.mark.slow  # starts a Spark driver JVM of its own (full suite only, ADR 153.2)
def test_a_driver_loads_spark_classes_from_the_archive(built_archive, tmp_path):
    result, class_log = _start_driver(tmp_path)
    # C1 alone with tiered compilation's 240 MB of code cache: with the 48 MB C1 gets by default, a chain fills it
    # in ~30 s and the JVM stops compiling (ADR 090.25).
    assert f"jit 1 {240 * 1024 * 1024}" in result.stdout
    assert _source_of(class_log, "org.apache.spark.SparkContext") == FROM_ARCHIVE
    assert _source_of(class_log, "org.apache.spark.sql.SparkSession") == FROM_ARCHIVE
    from_archive = class_log.read_text().count(f"source: {FROM_ARCHIVE}")
    assert from_archive > 5_000, f"only {from_archive} classes came from the archive"
    assert "cds" not in (result.stdout + result.stderr).lower()


@pytest.mark.slow  # starts a Spark driver JVM of its own (full suite only, ADR 153.2)
def test_an_archive_that_does_not_fit_is_skipped_silently(built_archive, tmp_path):
    cache = tmp_path / "jvm"
    cache.mkdir()
    # What a JDK upgrade or a damaged file looks like to the JVM: a file at the expected name it cannot use.
    (cache / built_archive.name).write_bytes(os.urandom(1 << 16))
    result, class_log = _start_driver(tmp_path, cache=cache)
    assert _source_of(class_log, "org.apache.spark.SparkContext").startswith("file:")
    assert "cds" not in (result.stdout + result.stderr).lower()


@pytest.mark.slow  # starts a Spark daemon JVM of its own (full suite only, ADR 153.2)
def test_the_cluster_demo_daemons_map_the_archive(built_archive, tmp_path):
    """A JVM maps the archive only when its class path starts as the archive's does (the fork-free file
    system's jar first, ADR 090.20): the demo cluster's daemons and executors must put it first as well."""
    from scripts.cluster_demo import SPARK_HOME, daemon_env

    env = daemon_env(ensure_java17())
    class_log = tmp_path / "classes.log"
    env["SPARK_DAEMON_JAVA_OPTS"] += f" -Xlog:class+load=info:file={class_log}"
    result = subprocess.run([str(SPARK_HOME / "bin" / "spark-class"), "org.apache.spark.deploy.master.Master", "--help"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Usage: Master" in result.stderr + result.stdout, result.stderr[-2000:]
    assert _source_of(class_log, "org.apache.spark.SparkConf") == FROM_ARCHIVE
    from_archive = class_log.read_text().count(f"source: {FROM_ARCHIVE}")
    assert from_archive > 1_000, f"only {from_archive} classes came from the archive"
