"""The one place that builds the SparkSession.

Local by default, tuned for a 2-core machine (Colab has the same size). On a
cluster, set SPARK_MASTER or launch with spark-submit: an existing session (the
one spark-submit creates, or the one it configures) keeps spark-submit's master and
resources, and only session-level SQL settings apply.
Against a non-local master the package is shipped to the executors
(lakehouse_utils.shipping) unless `--py-files` already sent it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from lakehouse_utils.config import Settings
from lakehouse_utils.jvm_archive import driver_java_options
from lakehouse_utils.local_fs import local_session_conf
from lakehouse_utils.paths import local_path
from lakehouse_utils.shipping import ship_package

# Settings that are correctness decisions, not tuning: every stage relies on them.
SQL_CONF = {
    # Event dates are UTC dates; a local time zone would move events across days.
    "spark.sql.session.timeZone": "UTC",
    # Re-running a stage replaces only the partitions it writes.
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    # Small data on 2 cores: a few shuffle partitions (every write sets its own file count).
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.parquet.compression.codec": "snappy",
    # The streaming file source keeps its log small; our state lives elsewhere.
    "spark.sql.streaming.minBatchesToRetain": "20",
}

# Local runs only (issue 17, ADR 090.5): adaptive execution submits every shuffle stage as a job of
# its own and re-plans between them; on small data in local mode that fixed cost outweighs what it
# adapts (4 shuffle partitions leave little to coalesce; small-table joins are broadcast by hint or
# by their file size). A cluster keeps Spark's default (on).
LOCAL_SQL_CONF = {
    "spark.sql.adaptive.enabled": "false",
    # More than this many paths are listed by a Spark job of one task per path (default 32): a table's
    # partition folders, and every file of a streaming micro-batch (the file source reads them as
    # paths). Local tasks share the driver's cores, so the job only adds its per-task cost: 12,000
    # files per batch took a 12,000-task job. The driver lists them faster itself.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1000000",
    # A task writing several partition values keeps one writer open per value instead of sorting
    # its rows by value first (the sort of 4.3 M Silver rows spilled 1.7 GB); past this many values
    # it falls back to the sort. A task of a date-partitioned write holds ~15 of the 60 dates.
    "spark.sql.maxConcurrentOutputFileWriters": "64",
    # Every cache here (a stage's checked rows, a micro-batch) is read back two or three times and then
    # dropped: compressing it cost more CPU than it saved. Silver's events at 100x: the job that fills the
    # cache took 41-47 s compressed, 24-25 s not (ADR 090.27); uncompressed it held ~650 MB of the 3 GB driver.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}

# Local Python workers start from a daemon that imports pyspark from site-packages, not from the archives
# Spark puts first on their path: each Python task then costs ~100 ms less on Python 3.10-3.11 (ADR 090.24).
# Their path also holds the folder this package is imported from: a notebook kernel finds it through
# `sys.path.insert` (Colab, Jupyter started anywhere), which its workers do not inherit, and the serving
# writers run in them (`No module named 'lakehouse_utils'` in 05 otherwise; ADR 100).
LOCAL_PYTHON_DAEMON_CONF = {
    "spark.python.daemon.module": "lakehouse_spark_daemon",
    "spark.executorEnv.PYTHONPATH": os.pathsep.join([str(Path(__file__).with_name("spark_daemon")),
                                                     str(Path(__file__).resolve().parent.parent)]),
}

# Static settings: they take effect only when the session is created (a running session keeps its own).
STATIC_CONF = {
    # Spark keeps the classes it generated and compiled (whole-stage code, projections) keyed by their
    # source, 100 by default. One chain compiles ~700 distinct classes, so with 100 a re-run in the same
    # JVM (a notebook run again, `make demo`'s re-run, the live layer, a test session) compiled every
    # class again: 740 compiles in a second course chain, 46 with 2,000 (ADR 090.17).
    "spark.sql.codegen.cache.maxEntries": "2000",
    # PySpark records the Python call site of every Column and DataFrame call (it walks the Python stack and
    # makes 10 more py4j round trips per call) so that a Spark runtime error can quote the line that built the
    # failing expression. Building a plan is thousands of such calls: off, F.col costs 0.2 ms instead of 1.0 ms
    # and a small chain's driver ~1 s less (ADR 090.23). Our own checks name the file, row and rule themselves.
    "spark.python.sql.dataFrameDebugging.enabled": "false",
}

# Warnings and errors only: keeps Spark's start-up banner out of notebook outputs.
LOG4J2_CONFIG = Path(__file__).with_name("spark-log4j2.properties")

JAVA_17_CANDIDATES = ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-17-openjdk-arm64")


class JavaNotFoundError(RuntimeError):
    """Spark needs Java 17; raised with the steps to install it."""


def java_major_version(java_bin: str) -> int:
    """Major version of a `java` binary: from its JDK's `release` file, else parsed from `java -version`.

    The release file is read first because `java -version` starts a JVM (about a second on a busy
    2-core machine), before the one Spark starts anyway.
    """
    release = Path(java_bin).resolve().parent.parent / "release"
    if release.is_file():
        match = re.search(r'^JAVA_VERSION="(\d+)(?:\.(\d+))?', release.read_text(errors="replace"), re.M)
        if match:
            major = int(match.group(1))
            return int(match.group(2)) if major == 1 and match.group(2) else major
    out = subprocess.run([java_bin, "-version"], capture_output=True, text=True, timeout=60)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise JavaNotFoundError(f"could not read the version of {java_bin}: {out.stderr.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def find_java17() -> tuple[str, str]:
    """(JAVA_HOME, java binary) of a Java 17: JAVA_HOME if set, else a known location, else PATH.

    The one Java check of the project: Spark and the local Cassandra 5.0 both run on Java 17.
    """
    java_home = os.environ.get("JAVA_HOME", "")
    if java_home:
        origin, java_bin = f"JAVA_HOME={java_home}", Path(java_home, "bin", "java")
        if not java_bin.exists():
            raise JavaNotFoundError(
                f"Java 17 was not found: {origin} has no bin/java. Set JAVA_HOME to a Java 17 installation "
                f"(e.g. {JAVA_17_CANDIDATES[0]}) or unset it."
            )
    else:
        origin = "found on this machine"
        known = [Path(c, "bin", "java") for c in JAVA_17_CANDIDATES if Path(c, "bin", "java").exists()]
        on_path = shutil.which("java")
        if not known and not on_path:
            raise JavaNotFoundError(
                "Java 17 was not found. Install it (Debian/Ubuntu/Colab: `apt-get install -y "
                "openjdk-17-jdk-headless`) or set JAVA_HOME to a Java 17 installation."
            )
        java_bin = known[0] if known else Path(on_path)
    try:
        major = java_major_version(str(java_bin))
    except (OSError, subprocess.TimeoutExpired) as error:
        raise JavaNotFoundError(f"could not run `{java_bin} -version` ({origin}): {error}") from error
    if major != 17:
        raise JavaNotFoundError(
            f"{java_bin} ({origin}) is Java {major}; this project needs Java 17 (Spark 4.1 and Cassandra 5.0 "
            "both run on it; JDK 24+ cannot start Cassandra 5.0). Set JAVA_HOME to a Java 17 installation, "
            f"e.g. {JAVA_17_CANDIDATES[0]} (Debian/Ubuntu/Colab: `apt-get install -y openjdk-17-jdk-headless`)."
        )
    return java_home or str(java_bin.resolve().parent.parent), str(java_bin)


def ensure_java17() -> str:
    """Point JAVA_HOME at a Java 17 (for Spark's JVM) and return it, or explain how to get one."""
    java_home, _ = find_java17()
    os.environ["JAVA_HOME"] = java_home
    return java_home


# A local driver whose landing folder holds at most this much gets the C1 compiler only (ADR 090.25): the course
# data (13 MB) runs ~18 % faster; at 10x (137 MB) C2's faster JSON parsing in the stream wins it back. Runs that
# repeat the same plans for long (a stream of many micro-batches, the live layer) say small_data=False.
SMALL_LANDING_BYTES = 64 * 1024 * 1024


def landing_is_small(landing_dir: str, limit: int = SMALL_LANDING_BYTES) -> bool:
    """True when the landing folder is on this machine (or absent) and its files total at most `limit` bytes.

    Counting stops once past the limit, so a large landing costs a few `stat` calls, not a full walk.
    A remote landing (object storage) is taken as large: its size would cost requests to learn.
    """
    root = local_path(landing_dir)
    if root is None:
        return False
    total = 0
    for path in root.rglob("*"):  # nothing when the folder is absent
        if path.is_file():
            total += path.stat().st_size
            if total > limit:
                return False
    return True


def get_spark(app_name: str = "cloud-provider-analytics", settings: Settings | None = None,
              small_data: bool | None = None) -> SparkSession:
    """Return the active SparkSession, or build one from the settings.

    `small_data` picks the driver's JIT when this call starts the JVM (C1 only when true); None decides from the
    size of the settings' landing folder. A benchmark that generates larger landings says False.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        local = active.sparkContext.master.startswith("local")
        for key, value in (SQL_CONF | LOCAL_SQL_CONF if local else SQL_CONF).items():
            active.conf.set(key, value)
        ship_package(active)
        return active
    settings = settings or Settings.load()
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        # Launched by spark-submit: the JVM exists and its conf (--master, --driver-memory, ...) is the
        # user's choice; setting a master here would silently run the whole job in local mode. Its Java is
        # the cluster's too (Spark 4.1 also runs on 21): the Java 17 check is for JVMs this package starts.
        builder = SparkSession.builder.appName(app_name)
        for key, value in (STATIC_CONF | SQL_CONF).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        ship_package(spark)
        return spark
    java_home = ensure_java17()
    master = os.environ.get("SPARK_MASTER") or settings.spark_master
    if small_data is None:
        small_data = landing_is_small(settings.landing_dir)
    if master.startswith("local"):
        # Stay on loopback: the driver must not bind to (or advertise) an external interface.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.ui.enabled", os.environ.get("SPARK_UI_ENABLED", "false"))
        .config("spark.ui.showConsoleProgress", "false")
        # pyspark's own pandas serializer (pandas UDFs) can raise a pandas
        # FutureWarning per worker; it says nothing about our data and would land in notebook outputs.
        .config("spark.executorEnv.PYTHONWARNINGS", "ignore::FutureWarning")
        .config("spark.driver.extraJavaOptions",
                f"-Dio.netty.tryReflectionSetAccessible=true -Dlog4j2.configurationFile={LOG4J2_CONFIG.as_uri()} "
                f"{driver_java_options(java_home, small_data)}".strip())
    )
    local = master.startswith("local")
    # A cluster's executors would have neither the fork-free file system's jar nor the daemon's folder: local only.
    local_only = (LOCAL_SQL_CONF | LOCAL_PYTHON_DAEMON_CONF | local_session_conf(java_home)) if local else {}
    for key, value in (STATIC_CONF | SQL_CONF | local_only).items():
        builder = builder.config(key, value)
    spark = _create_with_worker_python(builder, local=local)
    spark.sparkContext.setLogLevel("ERROR")
    ship_package(spark)
    return spark


def _create_with_worker_python(builder: SparkSession.Builder, local: bool) -> SparkSession:
    """Create the session with Python workers on this interpreter, leaving the caller's environment as it was.

    Workers must be this interpreter (a venv's packages, e.g. the Cassandra driver used on executors by
    the serving stage); Spark's default is whatever `python3` is on PATH. pyspark reads PYSPARK_PYTHON only
    when the context starts, so it is set for that moment: left in os.environ, every subprocess started
    later (a notebook's `!python`, another venv) would send its workers to this interpreter.
    """
    before = os.environ.get("PYSPARK_PYTHON")
    if local and before is None:
        os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        return builder.getOrCreate()
    finally:
        if before is None:
            os.environ.pop("PYSPARK_PYTHON", None)
