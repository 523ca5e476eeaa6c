"""PySpark's worker daemon, started without Spark's own archives on the import path (ADR 090.24).

Local sessions start their Python workers with `python -m lakehouse_spark_daemon` (this folder is put on
the workers' PYTHONPATH; `spark.python.daemon.module`). Spark puts pyspark.zip, py4j's zip and the
spark-core jar first on that path, and every Python task calls `importlib.invalidate_caches()`, which on
Python 3.10 and 3.11 re-reads the directory of every zip archive an import went through (cpython#103200,
fixed in 3.12): ~120 ms of CPU per task here. The same pyspark and py4j are installed in the
interpreter's site-packages, so they are imported from there; then pyspark's own daemon runs unchanged.
A module of its own, outside the package: the workers need not be able to import `lakehouse_utils`.
"""

import importlib.util
import os
import sys

_SPARK_HOME = os.path.join(os.path.abspath(os.environ.get("SPARK_HOME") or os.devnull), "")


def _is_spark_archive(entry: str) -> bool:
    return entry.startswith(_SPARK_HOME) and (".zip" in entry or ".jar" in entry)


_FULL_PATH = list(sys.path)
sys.path[:] = [entry for entry in sys.path if not _is_spark_archive(entry)]
if importlib.util.find_spec("pyspark") is None:  # a Spark without pip's pyspark: its archives are the only copy
    sys.path[:] = _FULL_PATH
else:
    for cached in [entry for entry in sys.path_importer_cache if _is_spark_archive(entry)]:
        del sys.path_importer_cache[cached]

from pyspark import daemon  # noqa: E402 - only once the archives are off the path

if __name__ == "__main__":
    daemon.manager()
