"""Filesystem and table I/O that works the same on a local disk, Drive or object storage.

Everything goes through Hadoop's FileSystem API (reached through the active
SparkSession), so a stage never assumes `os` can see the lake. One exception, for speed:
`list_files` walks a `file:` location with `os` (a Hadoop listing costs about seven
Python-to-JVM calls per file) and returns exactly what Hadoop's listing would.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field

from py4j.protocol import Py4JJavaError
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils.paths import relative_to


def _jvm_class(spark: SparkSession, name: str):
    """A JVM class by its full name, in one py4j command.

    `jvm.org.apache.hadoop.fs.Path` asks the JVM about `org`, `org.apache`, ... in turn, and every miss
    searches all ~290 jars of the class path (2.0 ms against 0.3 ms a lookup; ADR 090.23).
    """
    return getattr(spark.sparkContext._jvm, name)


def _fs_and_path(spark: SparkSession, uri: str):
    path = _jvm_class(spark, "org.apache.hadoop.fs.Path")(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, path


def exists(spark: SparkSession, uri: str) -> bool:
    fs, path = _fs_and_path(spark, uri)
    return bool(fs.exists(path))


def delete(spark: SparkSession, uri: str) -> None:
    fs, path = _fs_and_path(spark, uri)
    if fs.exists(path):
        fs.delete(path, True)


def rename(spark: SparkSession, source: str, target: str) -> None:
    fs, src = _fs_and_path(spark, source)
    _, dst = _fs_and_path(spark, target)
    parent = dst.getParent()
    if parent is not None and not fs.exists(parent):
        fs.mkdirs(parent)
    if not fs.rename(src, dst):
        raise OSError(f"could not rename {source} to {target}")


def write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write a small text file atomically (write a sibling, then rename over)."""
    fs, path = _fs_and_path(spark, uri)
    tmp_uri = f"{uri}.tmp-{uuid.uuid4().hex}"
    _, tmp_path = _fs_and_path(spark, tmp_uri)
    stream = fs.create(tmp_path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
    if fs.exists(path):
        fs.delete(path, False)
    if not fs.rename(tmp_path, path):
        raise OSError(f"could not write {uri}")


class StateFileError(RuntimeError):
    """A small state file of the lake (JSON bookkeeping) was changed or damaged outside the pipeline."""


def _checksum_error(error: Py4JJavaError) -> bool:
    cause = error.java_exception
    while cause is not None:
        if cause.getClass().getName() == "org.apache.hadoop.fs.ChecksumException":
            return True
        cause = cause.getCause()
    return False


def _checksum_file(uri: str) -> str:
    parent, _, name = uri.rstrip("/").rpartition("/")
    return f"{parent}/.{name}.crc"


def read_text(spark: SparkSession, uri: str) -> str | None:
    """Content of a small text file, or None when it does not exist."""
    fs, path = _fs_and_path(spark, uri)
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        return _jvm_class(spark, "org.apache.commons.io.IOUtils").toString(stream, "UTF-8")
    except Py4JJavaError as error:
        if not _checksum_error(error):
            raise
        # A local lake keeps a checksum beside every file Hadoop writes; an edit by hand leaves it stale.
        raise StateFileError(
            f"{uri} was changed outside the pipeline: its content no longer matches the checksum Hadoop keeps "
            f"in {_checksum_file(uri)}, so it was not read. If you edited it on purpose, delete that checksum file "
            "and run again; otherwise restore the file from a backup.") from None
    finally:
        stream.close()


def file_digest(spark: SparkSession, uri: str) -> str:
    """SHA-256 (hex) of a file's bytes, streamed by the JVM: the same on every Hadoop filesystem."""
    fs, path = _fs_and_path(spark, uri)
    stream = fs.open(path)
    try:
        return str(_jvm_class(spark, "org.apache.commons.codec.digest.DigestUtils").sha256Hex(stream))
    finally:
        stream.close()


def read_first_line(spark: SparkSession, uri: str) -> str | None:
    """First line of a text file without reading the rest ('' when empty, None when missing)."""
    fs, path = _fs_and_path(spark, uri)
    if not fs.exists(path):
        return None
    reader = _jvm_class(spark, "java.io.BufferedReader")(
        _jvm_class(spark, "java.io.InputStreamReader")(fs.open(path), "UTF-8"))
    try:
        line = reader.readLine()
    finally:
        reader.close()
    return "" if line is None else str(line)


def read_json(spark: SparkSession, uri: str) -> dict | None:
    text = read_text(spark, uri)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise StateFileError(
            f"{uri} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}): the pipeline "
            "writes it whole, so it was damaged or edited outside the pipeline. Restore it from a backup, or fix "
            "the JSON by hand, then run again.") from None


def write_json(spark: SparkSession, uri: str, payload: dict) -> None:
    write_text(spark, uri, json.dumps(payload, indent=2, sort_keys=True, default=str))


def glob(spark: SparkSession, pattern: str) -> list[str]:
    """URIs matching a Hadoop glob (`*`, `?`, `{a,b}`), sorted; one listing call instead of a recursive walk."""
    fs, path = _fs_and_path(spark, pattern)
    statuses = fs.globStatus(path)
    return [] if statuses is None else sorted(str(status.getPath().toString()) for status in statuses)


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    modified_ms: int = 0  # the modification time Hadoop reports (what the stream's file log records)


def list_files(spark: SparkSession, uri: str) -> list[FileEntry]:
    """Data files below a directory, recursively, skipping `_`/`.` bookkeeping files."""
    root = _local_root(uri)
    return _list_hadoop(spark, uri) if root is None else _list_local(root)


def list_names(spark: SparkSession, uri: str) -> list[str]:
    """Names directly in a directory, hidden ones included (`list_files` leaves `_`/`.` names out), sorted."""
    root = _local_root(uri)
    if root is not None:
        return sorted(os.listdir(root)) if os.path.isdir(root) else []
    fs, path = _fs_and_path(spark, uri)
    return sorted(str(status.getPath().getName()) for status in fs.listStatus(path)) if fs.exists(path) else []


def _hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def _list_hadoop(spark: SparkSession, uri: str) -> list[FileEntry]:
    fs, path = _fs_and_path(spark, uri)
    if not fs.exists(path):
        return []
    entries: list[FileEntry] = []
    iterator = fs.listFiles(path, True)
    while iterator.hasNext():
        status = iterator.next()
        name = status.getPath().getName()
        relative = status.getPath().toString()[len(path.toString()) :]
        if _hidden(name) or "/_" in relative or "/." in relative:
            continue
        entries.append(FileEntry(status.getPath().toString(), int(status.getLen()), int(status.getModificationTime())))
    return sorted(entries, key=lambda e: e.path)


def _local_root(uri: str) -> str | None:
    """The OS path of a `file:` URI as Hadoop reads it (no percent-decoding: `%20` stays three characters)."""
    match = re.match(r"^file:(?://(?=/))?(/.*)$", uri)
    return None if match is None else os.path.normpath(match.group(1))


def _list_local(root: str) -> list[FileEntry]:
    """`_list_hadoop` for a local directory, without the JVM: same entries, paths as Hadoop prints them."""
    if os.path.isfile(root):
        name = os.path.basename(root)
        return [] if _hidden(name) else [_local_entry(root)]
    entries: list[FileEntry] = []
    for directory, subdirectories, names in os.walk(root, followlinks=True):
        subdirectories[:] = [name for name in subdirectories if not _hidden(name)]
        for name in names:
            if not _hidden(name):
                entries.append(_local_entry(os.path.join(directory, name)))
    return sorted(entries, key=lambda e: e.path)


def _local_entry(path: str) -> FileEntry:
    status = os.stat(path)
    return FileEntry(f"file:{path}", status.st_size, status.st_mtime_ns // 1_000_000)


# Spark writes the schema of the rows into every Parquet footer under this key (ParquetReadSupport).
SPARK_SCHEMA_KEY = "org.apache.spark.sql.parquet.row.metadata"


def read_parquet(spark: SparkSession, uri: str) -> DataFrame:
    """`spark.read.parquet(uri)` without Spark's schema-inference job.

    Without a schema, Spark reads the footer of a table's first data file (in path order) in a
    Spark job of its own, even for one file: ~0.05 s warm, more in a new JVM, and about one job in
    six of a chain (ADR 090.18). The driver reads that same footer here and gives Spark the schema;
    partition columns are still found from the folder names, so the frame is the one Spark would
    infer. No data file, or a footer without Spark's schema (another tool wrote it, or it does
    not open): Spark infers it, with its own errors.
    """
    schema = footer_schema(spark, uri)
    return (spark.read if schema is None else spark.read.schema(schema)).parquet(uri)


def footer_schema(spark: SparkSession, uri: str) -> T.StructType | None:
    """The Spark schema stored in the footer of the first data file below `uri` (None: see `read_parquet`)."""
    files = [entry.path for entry in list_files(spark, uri) if not entry.path.endswith("._COPYING_")]
    if not files:
        return None
    try:
        source = _jvm_class(spark, "org.apache.parquet.hadoop.util.HadoopInputFile").fromPath(
            _jvm_class(spark, "org.apache.hadoop.fs.Path")(files[0]), spark.sparkContext._jsc.hadoopConfiguration())
        reader = _jvm_class(spark, "org.apache.parquet.hadoop.ParquetFileReader").open(source)
        try:
            text = reader.getFooter().getFileMetaData().getKeyValueMetaData().get(SPARK_SCHEMA_KEY)
        finally:
            reader.close()
    except Py4JJavaError:
        return None
    try:
        return T.StructType.fromJson(json.loads(text)) if text else None
    except (ValueError, KeyError, TypeError):
        return None


def partition_inventory(spark: SparkSession, uri: str) -> list[dict]:
    """One row per partition directory: relative path, number of data files, bytes."""
    base = uri.rstrip("/")
    partitions: dict[str, dict] = {}
    for entry in list_files(spark, base):
        relative = relative_to(base, entry.path)
        directory = relative.rsplit("/", 1)[0] if "/" in relative else "."
        slot = partitions.setdefault(directory, {"partition": directory, "files": 0, "bytes": 0})
        slot["files"] += 1
        slot["bytes"] += entry.size
    return [partitions[key] for key in sorted(partitions)]


def table_files(spark: SparkSession, uri: str) -> list[list]:
    """[relative path, bytes] of every data file of a table ([] when there is none).

    Spark names every file it writes uniquely, so a rewrite, a deletion or an added file changes this
    list: a stage compares it with the one it recorded to know its inputs and outputs are as it left them.
    """
    base = uri.rstrip("/")
    return [[relative_to(base, entry.path), entry.size] for entry in list_files(spark, base)]


def tables_files(spark: SparkSession, tables: dict[str, str]) -> dict[str, list[list]]:
    """`table_files` of several tables (name -> URI), by name: names, not URIs, so a copied lake compares equal."""
    return {name: table_files(spark, uri) for name, uri in tables.items()}


@dataclass(frozen=True)
class Written:
    """What a write actually wrote: its row count and the sums it was asked to observe."""

    rows: int
    sums: dict = field(default_factory=dict)


class WriteTally:
    """Counts the rows of a write as they reach the writer, in the write's own job.

    `DataFrame.observe` aggregates the rows flowing through that point of the plan while
    the write runs, so the count costs no extra Spark job and no read-back, and it is the
    number of rows the writer received: a row a transform dropped is not in it.
    """

    def __init__(self, df: DataFrame, sums: dict[str, Column] | None) -> None:
        self._observation = Observation(f"written-{uuid.uuid4().hex[:12]}")
        self._source, self._sums = df, dict(sums or {})
        metrics = [F.sum(column).alias(name) for name, column in self._sums.items()]
        self.df = df.observe(self._observation, F.count(F.lit(1)).alias("__rows"), *metrics)

    def result(self) -> Written:
        try:
            metrics = dict(self._observation.get)  # blocks until the write's job has finished
        except Py4JJavaError:
            # Adaptive execution found the input empty at run time and pruned the observing node,
            # leaving an empty metrics row: count the (empty) input instead, the only extra job.
            return self._counted_again()
        rows = int(metrics.pop("__rows") or 0)
        return Written(rows, metrics)

    def _counted_again(self) -> Written:
        row = self._source.agg(F.count(F.lit(1)).alias("__rows"),
                               *[F.sum(c).alias(n) for n, c in self._sums.items()]).first()
        return Written(int(row["__rows"]), {name: row[name] for name in self._sums})


def _one_file_per_partition(df: DataFrame, partition_by: list[str] | None) -> DataFrame:
    """The rows laid out for a write of one file per partition value (one file when unpartitioned).

    Hashing on the partition columns puts all rows of a value in one task, so each value gets one
    file, while the values spread over the session's shuffle partitions. `repartition(1, ...)` gave
    the same files from a single task: 4.3 M Silver rows took 37 s in one task that spilled 1.7 GB.
    """
    return df.repartition(*partition_by) if partition_by else df.coalesce(1)


def replace_table(
    spark: SparkSession,
    df: DataFrame,
    uri: str,
    partition_by: list[str] | None = None,
    sums: dict[str, Column] | None = None,
) -> Written:
    """Replace a whole table so that readers see either the old or the new version.

    Returns the rows written (and `sums` of the written rows), counted during the write.

    The new version is written next to the table and swapped in with renames
    only after Spark has committed it. A failed write leaves the old table as
    it was (and a `.staging-*` folder that the next run removes).
    """
    parent, name = uri.rstrip("/").rsplit("/", 1)
    staging = f"{parent}/.staging-{name}-{uuid.uuid4().hex[:8]}"
    retired = f"{parent}/.retired-{name}-{uuid.uuid4().hex[:8]}"
    _remove_leftovers(spark, parent, name)
    tally = WriteTally(df, sums)
    df = tally.df
    writer = _one_file_per_partition(df, partition_by).write.mode("overwrite").format("parquet")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(staging)
    if exists(spark, uri):
        rename(spark, uri, retired)
    rename(spark, staging, uri)
    delete(spark, retired)
    return tally.result()


def _remove_leftovers(spark: SparkSession, parent: str, name: str) -> None:
    fs, path = _fs_and_path(spark, parent)
    if not fs.exists(path):
        return
    for status in fs.listStatus(path):
        child = status.getPath().getName()
        if child.startswith((f".staging-{name}-", f".retired-{name}-")):
            fs.delete(status.getPath(), True)


def overwrite_partitions(
    spark: SparkSession,
    df: DataFrame,
    uri: str,
    partition_by: list[str],
    sums: dict[str, Column] | None = None,
) -> Written:
    """Replace only the partitions present in `df` (dynamic partition overwrite); rows written, as `replace_table`."""
    tally = WriteTally(df, sums)
    (
        _one_file_per_partition(tally.df, partition_by)
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy(*partition_by)
        .format("parquet")
        .save(uri)
    )
    return tally.result()
