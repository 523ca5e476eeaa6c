"""A class-data-sharing archive of Spark's classes, so a Spark driver JVM starts warm.

A fresh Spark driver loads and verifies ~30,000 classes from ~290 jars before and during its first
jobs: on a 2-core machine that is seconds of CPU per JVM (session start, then the first job of each
kind). Java 17's class-data sharing maps those classes already parsed and verified. Measured in ADR 090.7.

The archive is built once per machine by `python -m lakehouse_utils jvm-archive` (`make jvm-archive`,
a prerequisite of `make test`, `test-fast`, `notebooks` and `benchmark`): the JDK's own `-Xshare:dump`
reads the classes named by `jvm_classes.txt.gz` (committed beside this module) from the driver's class
path and writes them, with no Spark run (ADR 090.29). The list is what a small pipeline run loads;
`jvm-archive --record-classes` records it again (after a Spark or JDK upgrade; a test compares its header
with the pinned pyspark). The archive is named after what it depends on (the JDK, the Spark jars, the
list), so an upgrade of either simply finds no archive. The JVM also checks the archive against its class
path and, when it does not match, starts without it; with CDS logging off, that fallback is silent. Used
when `get_spark` starts the driver JVM itself; under spark-submit the driver's JVM options are the user's.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from lakehouse_utils.config import IS_CHECKOUT, PROJECT_ROOT, user_cache_dir

# Nothing on stdout: an archive that no longer matches is skipped by the JVM, which would say so there.
QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"
# Extra driver JVM options (profiling: JFR, class-load logs) when `get_spark` starts the JVM; not under spark-submit.
EXTRA_OPTIONS_VARIABLE = "SPARK_DRIVER_JAVA_OPTIONS"
# The C1 compiler only, for a JVM that runs no tasks or a chain on small data: C2 pays off where a JVM runs the
# same plans again and again or parses large inputs, and elsewhere only competes for the two cores (ADR 090.19,
# 090.21, 090.25). Without tiered compilation the JVM reserves 48 MB of code cache instead of 240 MB; a Spark
# chain fills 48 MB in ~30 s and the JVM then stops compiling for good, so C1 gets tiered's size.
C1_ONLY = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"
# `--record-classes` waits this long for the training JVM to write its class list and exit.
EXIT_TIMEOUT_S = 600.0
# The whole build (or the recording's chain); a partial file older than this is abandoned.
BUILD_TIMEOUT_S = int(EXIT_TIMEOUT_S * 2)
# The classes a small pipeline run loads (`-XX:DumpLoadedClassList`), with a header naming the pyspark it ran.
CLASS_LIST = Path(__file__).with_name("jvm_classes.txt.gz")
CLASS_LIST_HEADER = re.compile(r"^# lakehouse_utils class list: pyspark (?P<pyspark>\S+), java (?P<java>\S+)$")


def cache_dir() -> Path:
    """`.cache/jvm` of the checkout (beside the local Cassandra), else the user's cache."""
    return (PROJECT_ROOT / ".cache" if IS_CHECKOUT else user_cache_dir()) / "jvm"


def spark_jars_dir() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home()) / "jars"


def archive_key(java_home: str) -> str:
    """A digest of what the archive is valid for: the JDK build, every Spark jar (name, size, mtime), the
    fork-free file system's jar (on the driver's class path, which the JVM checks against the archive's) and
    the class list."""
    from lakehouse_utils.local_fs import source_key

    digest = hashlib.sha256(source_key().encode())
    if CLASS_LIST.is_file():
        digest.update(CLASS_LIST.read_bytes())
    release = Path(java_home, "release")
    digest.update(release.read_bytes() if release.is_file() else java_home.encode())
    jars = spark_jars_dir()
    for jar in sorted(jars.glob("*.jar")) if jars.is_dir() else []:
        stat = jar.stat()
        digest.update(f"{jar.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def archive_path(java_home: str) -> Path:
    return cache_dir() / f"spark-classes-{archive_key(java_home)}.jsa"


def archive_options(java_home: str) -> str:
    """JVM options that map the archive, or "" when it was not built (any Spark JVM: driver, daemons, executors)."""
    archive = archive_path(java_home)
    # Quoted: Spark splits these options on blanks, and a checkout path may hold one.
    return f'"-XX:SharedArchiveFile={archive}" {QUIET}' if archive.is_file() else ""


def driver_java_options(java_home: str, small_data: bool = False) -> str:
    """JVM options of a local driver: the archive when it exists, C1 only for small data, then the user's extra
    options (last, so that theirs win: the JVM takes the last value of a repeated flag)."""
    extra = os.environ.get(EXTRA_OPTIONS_VARIABLE, "").strip()
    # A JVM that writes an archive cannot also map one (the JVM refuses to start): `jvm-archive --force`.
    options = [] if "-XX:ArchiveClassesAtExit" in extra else [archive_options(java_home)]
    return " ".join(option for option in [*options, C1_ONLY if small_data else "", extra] if option)


def _record(class_list: Path) -> None:
    """Run in the recording process: a Spark JVM that lists every class it loads, through a small chain."""
    from lakehouse_utils.generator.landing import generate
    from lakehouse_utils.paths import LakePaths
    from lakehouse_utils.pipeline import run_pipeline
    from lakehouse_utils.spark import get_spark

    # C1 only: what is recorded is the classes a chain loads, not compiled code; C1 runs it ~15 % sooner.
    os.environ[EXTRA_OPTIONS_VARIABLE] = f"-XX:DumpLoadedClassList={class_list} {QUIET} {C1_ONLY}"
    with tempfile.TemporaryDirectory(prefix="jvm-classes-") as work:
        landing = Path(work, "landing")
        generate(landing, seed=3, scale=0.02, files=4, duplicates=True, malformed=True, late_files=True,
                 bad_rows=True)
        spark = get_spark("jvm-classes")
        run_pipeline(spark, LakePaths.from_roots(Path(work, "lake"), landing),
                     ["bronze_batch", "bronze_stream", "silver", "gold"])
        # The serving stage's path into Python workers, without needing a Cassandra node.
        spark.sparkContext.parallelize(range(4), 2).mapPartitions(lambda rows: [sum(rows)]).collect()
        jvm = spark.sparkContext._gateway.proc
        spark.stop()
        # The JVM exits when its stdin closes; the list is complete then.
        jvm.stdin.close()
        jvm.wait(timeout=EXIT_TIMEOUT_S)


def record_class_list() -> Path:
    """Run the small chain in a new JVM that lists the classes it loads; write them to `CLASS_LIST` (gzip)."""
    import pyspark

    from lakehouse_utils.spark import ensure_java17, java_major_version

    java_version = str(java_major_version(str(Path(ensure_java17(), "bin", "java"))))
    env = {key: value for key, value in os.environ.items() if key != EXTRA_OPTIONS_VARIABLE}
    with tempfile.TemporaryDirectory(prefix="jvm-classes-") as work:
        listed = Path(work, "classes.txt")
        result = subprocess.run([sys.executable, "-m", "lakehouse_utils.jvm_archive", "--record", str(listed)],
                                env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if result.returncode != 0 or not listed.is_file():
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise RuntimeError(f"the class list was not recorded (exit {result.returncode}). Last output:\n{tail}")
        write_class_list(CLASS_LIST, listed.read_text(), pyspark.__version__, java_version)
    return CLASS_LIST


def write_class_list(target: Path, dumped: str, pyspark_version: str, java_version: str) -> None:
    """The JVM's class list (`dumped`, its comment lines dropped) under our header, gzipped."""
    names = [line for line in dumped.splitlines() if line and not line.startswith("#")]
    header = f"# lakehouse_utils class list: pyspark {pyspark_version}, java {java_version}"
    # mtime=0: the file's bytes depend on the list alone (a recording lists the classes in the order its threads
    # happened to load them, so two recordings of the same Spark may still differ in order and lambda forms).
    target.write_bytes(gzip.compress("\n".join([header, *names, ""]).encode(), compresslevel=9, mtime=0))


def class_list_header(class_list: Path | None = None) -> dict[str, str] | None:
    """pyspark and Java versions a class list (the committed one by default) was recorded with; None without one."""
    class_list = class_list or CLASS_LIST
    if not class_list.is_file():
        return None
    with gzip.open(class_list, "rt") as listed:
        match = CLASS_LIST_HEADER.match(listed.readline().rstrip("\n"))
    return match.groupdict() if match else None


def driver_class_path(java_home: str) -> str:
    """The class path Spark's launcher gives a local driver: the one the archive must be dumped with (a JVM maps
    it only when its own class path starts the same way). Asked of the launcher itself, as spark-submit does."""
    from lakehouse_utils.local_fs import ensure_jar

    jars = spark_jars_dir()
    jar = ensure_jar(java_home)
    scala = next((m.group(1) for p in jars.glob("spark-core_*.jar")
                  if (m := re.match(r"spark-core_(\d+\.\d+)-", p.name))), "2.13")
    extra = ["--conf", f"spark.driver.extraClassPath={jar}"] if jar else []
    result = subprocess.run(
        [str(Path(java_home, "bin", "java")), "-Xmx128m", "-cp", str(jars / "*"),
         "org.apache.spark.launcher.Main", "org.apache.spark.deploy.SparkSubmit", *extra, "pyspark-shell"],
        env={**os.environ, "SPARK_HOME": str(jars.parent), "SPARK_SCALA_VERSION": scala},
        capture_output=True, timeout=120)
    command = result.stdout.decode().split("\0")
    if result.returncode != 0 or "-cp" not in command:
        raise RuntimeError(f"Spark's launcher did not give a driver command: {result.stderr.decode()[-1000:]}")
    return command[command.index("-cp") + 1]


def build(force: bool = False) -> Path:
    """Build the archive for this JDK and these Spark jars unless it exists; return its path."""
    from lakehouse_utils.spark import ensure_java17

    java_home = ensure_java17()
    target = archive_path(java_home)
    if target.is_file() and not force:
        return target
    if not CLASS_LIST.is_file():
        raise RuntimeError(f"no class list at {CLASS_LIST}: record one with `python -m lakehouse_utils jvm-archive "
                           "--record-classes`")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A unique name while it is written: two builds never write one file, and a reader never maps a half.
    partial = target.with_name(f"{target.stem}.{uuid.uuid4().hex[:8]}.partial")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jvm-archive-") as work:
        listed = Path(work, "classes.txt")
        listed.write_bytes(gzip.decompress(CLASS_LIST.read_bytes()))
        # Classes the list names but this Spark lacks (a newer patch release) are skipped by the dump, silently.
        command = [str(Path(java_home, "bin", "java")), "-Xshare:dump", f"-XX:SharedClassListFile={listed}",
                   f"-XX:SharedArchiveFile={partial}", *QUIET.split(), "-Xlog:gc+verify=off",
                   "-cp", driver_class_path(java_home)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"the JVM class archive was not written: its build took over {BUILD_TIMEOUT_S} s and "
                               "was stopped; Spark runs without it, only slower to start") from None
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"the JVM class archive was not written (exit {result.returncode}); Spark runs "
                           f"without it, only slower to start. Last output:\n{tail}")
    os.replace(partial, target)
    _remove_stale(target)
    print(f"JVM class archive built in {time.perf_counter() - started:.0f} s ({target.stat().st_size / 1e6:.0f} MB)")
    return target


def _remove_stale(target: Path) -> None:
    """Archives of other Spark/Java versions, and partial files no running build can still own."""
    oldest_live = time.time() - BUILD_TIMEOUT_S
    for stale in target.parent.glob("spark-classes-*"):
        if stale == target:
            continue
        if not stale.name.endswith(".partial") or stale.stat().st_mtime < oldest_live:
            stale.unlink(missing_ok=True)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="rebuild even if the archive exists")
    parser.add_argument("--record-classes", action="store_true",
                        help=f"run a small chain and record the classes it loads into {CLASS_LIST.name} "
                             "(after a Spark or JDK upgrade), then rebuild the archive")


def run_cli(args: argparse.Namespace) -> int:
    try:
        if args.record_classes:
            print(f"class list recorded: {record_class_list()}")
        path = build(force=args.force or args.record_classes)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"JVM class archive ready: {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--record":
        _record(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m lakehouse_utils jvm-archive [--force] [--record-classes]")
