"""Ship the package to the executors of a cluster, and show which executors ran the job.

Most stages are DataFrame plans that run in the JVM, but the serving stage's writer runs
as Python inside `mapPartitions` on the executors, and its pickled closure refers to
`lakehouse_utils.serving.writer`. Workers need not have the package installed: the driver
sends a zip of it with the job, through `spark-submit --py-files <zip>` or, for a session
that `get_spark` builds against a non-local master, `SparkContext.addPyFile`. The zip is
built from the package being run (a checkout or an installed copy), content-hashed, into
a temporary folder unless told otherwise (never into site-packages).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from pyspark.sql import SparkSession

import lakehouse_utils

PACKAGE_NAME = "lakehouse_utils"
# 1980-01-01: zip's earliest timestamp; fixed times make the archive depend on content only.
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def package_dir() -> Path:
    return Path(lakehouse_utils.__file__).resolve().parent


def _package_files(root: Path) -> list[Path]:
    """Every file of the package (code and resources: CQL, Cassandra configs, log4j), no bytecode."""
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"})


def build_package_zip(out_dir: str | Path | None = None) -> Path:
    """Zip the package (importable from the zip: `lakehouse_utils/...` at its root); reuse an identical one."""
    root = package_dir()
    if not root.is_dir():
        raise RuntimeError(f"{PACKAGE_NAME} is not imported from a folder ({root}); build the zip where it is installed")
    files = _package_files(root)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    target_dir = Path(out_dir) if out_dir is not None else Path(tempfile.gettempdir()) / "lakehouse_utils-ship"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{PACKAGE_NAME}-{lakehouse_utils.__version__}-{digest.hexdigest()[:12]}.zip"
    if target.exists():
        return target
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(f"{PACKAGE_NAME}/{path.relative_to(root).as_posix()}", date_time=FIXED_ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    partial.replace(target)  # atomic: a concurrent reader never sees half an archive
    return target


def is_local_master(master: str) -> bool:
    return master.startswith("local")


def package_archive() -> Path | None:
    """The zip the package is imported from (`--py-files deps.zip`, `PYTHONPATH=deps.zip`); None from a folder."""
    for parent in package_dir().parents:
        if parent.is_file() and zipfile.is_zipfile(parent):
            return parent
    return None


def already_shipped(spark: SparkSession) -> bool:
    """True when spark-submit --py-files (or an earlier call) sent the package with this application: an
    archive named after the package, or the very archive the driver imports it from (whatever its name)."""
    submitted = spark.sparkContext.getConf().get("spark.submit.pyFiles", "")
    includes = getattr(spark.sparkContext, "_python_includes", None) or []
    names = {Path(entry).name for entry in [*submitted.split(","), *includes] if entry}
    archive = package_archive()
    return any(PACKAGE_NAME in name for name in names) or (archive is not None and archive.name in names)


def ship_package(spark: SparkSession) -> Path | None:
    """On a cluster, make the package importable on every executor; a no-op in local mode or when shipped.
    A driver that imports it from a zip sends that zip (a zip cannot be zipped again)."""
    if is_local_master(spark.sparkContext.master) or already_shipped(spark):
        return None
    archive = package_archive() or build_package_zip()
    spark.sparkContext.addPyFile(str(archive))
    return archive


def executors(spark: SparkSession) -> list[str]:
    """`host:port` of the block managers of the application's executors (the driver's own removed)."""
    context = spark.sparkContext._jsc.sc()
    driver = context.env().blockManager().blockManagerId().hostPort()
    keys = context.getExecutorMemoryStatus().keys().iterator()  # a Scala Map, the driver included
    found = []
    while keys.hasNext():
        found.append(keys.next())
    return sorted(endpoint for endpoint in found if endpoint != driver)


def _where_executor_imports_package(_rows) -> Iterator[str]:
    import importlib.util
    import socket

    spec = importlib.util.find_spec(PACKAGE_NAME)
    yield f"{socket.gethostname()} -> {spec.origin if spec else 'NOT IMPORTABLE'}"


def executor_import_origins(spark: SparkSession) -> list[str]:
    """Where the executors' Python imports the package from.

    A shipped zip shows as `./lakehouse_utils-<version>-<hash>.zip/...`: Spark fetched it into the executor's work dir.
    """
    return sorted(set(spark.sparkContext.parallelize([0], 1).mapPartitions(_where_executor_imports_package).collect()))


def cluster_summary(spark: SparkSession) -> str:
    """Master, executors and package origin on the executors: printed by the pipeline on a cluster."""
    lines = [f"master:    {spark.sparkContext.master}  (application {spark.sparkContext.applicationId})"]
    lines.append(f"executors: {', '.join(executors(spark)) or 'none registered'}")
    lines.extend(f"executor imports {PACKAGE_NAME} from: {origin}" for origin in executor_import_origins(spark))
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="dist", help="folder for the zip (default: dist/)")


def run_cli(args: argparse.Namespace) -> int:
    print(build_package_zip(args.out))
    return 0
