"""Hadoop's local file system without a `chmod` process per file, for local Spark sessions.

pip's pyspark ships no Hadoop native library, so Hadoop's RawLocalFileSystem sets the mode of
every file and folder it creates by starting `chmod`, and FileContext's rename starts `readlink`:
~7 ms of a forked process each, ~1,300 times in a small four-stage chain (a data file, its
checksum file, the staging folders of each write). `ForkFreeLocalFileSystem.java` does the same
two things through java.nio and leaves the rest (checksums included) to Hadoop (ADR 090.20).

The class is compiled once per machine with the JDK's `javac` against the pinned Hadoop jar and
cached beside the class archive; a JDK without `javac`, or a failed compile, leaves Hadoop's own
file system in place (same files, only slower). Local sessions use it, and the demo's standalone
cluster on this machine (`same_machine_cluster_conf`); a real cluster's executors would not have the jar.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import uuid
import zipfile
from pathlib import Path

from lakehouse_utils.shipping import FIXED_ZIP_TIME

SOURCE = Path(__file__).with_name("ForkFreeLocalFileSystem.java")
FILE_SYSTEM_CLASS = "lakehouse.fs.ForkFreeLocalFileSystem"
# FileContext (streaming checkpoints, the state store) looks up its own implementation per scheme.
ABSTRACT_FILE_SYSTEM_CLASS = FILE_SYSTEM_CLASS + "$Fs"
COMPILE_TIMEOUT_S = 180


def _hadoop_jars() -> list[Path]:
    from lakehouse_utils.jvm_archive import spark_jars_dir

    return sorted(spark_jars_dir().glob("hadoop-client-api-*.jar"))


def source_key() -> str:
    """A digest of the source and the Hadoop jar it is compiled against."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    for jar in _hadoop_jars():
        digest.update(jar.name.encode())
    return digest.hexdigest()[:16]


def jar_path() -> Path:
    from lakehouse_utils.jvm_archive import cache_dir

    return cache_dir() / f"fork-free-local-fs-{source_key()}.jar"


def ensure_jar(java_home: str) -> Path | None:
    """The compiled jar (built now if missing), or None when this JDK cannot compile it."""
    target = jar_path()
    if target.is_file():
        return target
    javac = Path(java_home, "bin", "javac")
    hadoop = _hadoop_jars()
    if not javac.is_file() or not hadoop:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fork-free-fs-") as classes:
        try:
            result = subprocess.run(
                [str(javac), "--release", "17", "-nowarn", "-proc:none", "-cp", os.pathsep.join(map(str, hadoop)),
                 "-d", classes, str(SOURCE)], capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if result.returncode != 0:
            return None
        # A unique name while it is written: a JVM never puts half a jar on its class path.
        partial = target.with_name(f"{target.stem}.{uuid.uuid4().hex[:8]}.partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as jar:
            for compiled in sorted(Path(classes).rglob("*.class")):
                info = zipfile.ZipInfo(compiled.relative_to(classes).as_posix(), date_time=FIXED_ZIP_TIME)
                jar.writestr(info, compiled.read_bytes())
        os.replace(partial, target)
    # Jars of an older source stay (a few KB each): a JVM of another checkout sharing the cache may be starting with one.
    return target


def local_session_conf(java_home: str) -> dict[str, str]:
    """Spark settings that put the fork-free file system under `file:` paths; empty when it cannot be built."""
    jar = ensure_jar(java_home)
    if jar is None:
        return {}
    return {
        "spark.driver.extraClassPath": str(jar),
        "spark.hadoop.fs.file.impl": FILE_SYSTEM_CLASS,
        "spark.hadoop.fs.AbstractFileSystem.file.impl": ABSTRACT_FILE_SYSTEM_CLASS,
    }


def same_machine_cluster_conf(java_home: str) -> dict[str, str]:
    """spark-submit settings for a standalone cluster whose JVMs all run on this machine; empty without the jar.

    Driver and executor get the jar first on their class path, as the local driver that built the class archive
    had it: a JVM maps the archive only when its class path starts with the archive's (ADR 090.21).
    """
    conf = local_session_conf(java_home)
    return {**conf, "spark.executor.extraClassPath": conf["spark.driver.extraClassPath"]} if conf else {}
