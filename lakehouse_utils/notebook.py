"""What the notebooks share: start-up, input checks and small display helpers.

Notebooks stay free of function definitions; anything they need to reuse lives here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pandas as pd

from lakehouse_utils import io
from lakehouse_utils.config import Settings
from lakehouse_utils.paths import LakePaths, local_path

COLAB_DRIVE_ROOT = "/content/drive/MyDrive/cloud_provider_analytics"

# notebook -> (a table its input zone must contain, the notebook that writes it)
REQUIRED_INPUT = {
    "01_bronze_batch": None,
    "02_bronze_stream": None,
    "03_silver": (("bronze", "customers_orgs"), "01_bronze_batch"),
    "04_gold": (("silver", "usage_events"), "03_silver"),
    "05_serving": (("gold", "org_daily_usage_by_service"), "04_gold"),
}
EXTRA_REQUIRED = {"03_silver": [(("bronze", "usage_events"), "02_bronze_stream")]}


class MissingInputError(RuntimeError):
    """The zone this notebook reads has not been written yet."""


@dataclass
class NotebookContext:
    name: str
    settings: Settings
    paths: LakePaths
    spark: object

    def describe(self) -> pd.DataFrame:
        rows = [
            ("notebook", self.name),
            ("landing", self.paths.landing_root),
            ("lake", self.paths.lake_root),
            ("spark", f"{self.spark.version} ({self.spark.sparkContext.master})"),
            ("serving target", self.settings.serving_target),
            ("running in", "Google Colab" if in_colab() else "local Python"),
        ]
        return pd.DataFrame(rows, columns=["setting", "value"]).set_index("setting")


def in_colab() -> bool:
    return "google.colab" in sys.modules


def bootstrap(name: str) -> NotebookContext:
    """Settings, Spark and paths for one notebook; fails early if its input zone is missing.

    In Colab the lake and the landing folder default to Google Drive, because every
    notebook gets its own runtime and the zones must outlive it.
    """
    if in_colab():
        os.environ.setdefault("LAKE_ROOT", f"{COLAB_DRIVE_ROOT}/lake")
        os.environ.setdefault("LANDING_DIR", f"{COLAB_DRIVE_ROOT}/landing")
    from lakehouse_utils.spark import get_spark

    settings = Settings.load()
    paths = LakePaths.from_settings(settings)
    landing = local_path(paths.landing_root)
    if landing is not None and not (landing / "customers_orgs.csv").exists():
        raise MissingInputError(
            f"no landing data at {landing}: set LANDING_DIR to the course's datalake/landing folder, "
            "or run `make landing` to generate the synthetic dataset"
        )
    spark = get_spark(name, settings)
    context = NotebookContext(name=name, settings=settings, paths=paths, spark=spark)
    for (zone, table), writer in _requirements(name):
        location = getattr(paths, zone)(table)
        if not io.list_files(spark, location):
            raise MissingInputError(f"{zone}/{table} is missing at {location}: run notebook {writer} first")
    return context


def _requirements(name: str):
    first = REQUIRED_INPUT.get(name)
    return ([first] if first else []) + EXTRA_REQUIRED.get(name, [])


def report_frame(*reports) -> pd.DataFrame:
    """A StageReport (or several) as a table: in / out / duplicates / quarantined / reconciles."""
    rows = [row for report in reports for row in report.as_rows()]
    return pd.DataFrame(rows).set_index(["stage", "table"])


def partitions_frame(spark, uri: str, limit: int | None = None) -> pd.DataFrame:
    """Partition folders of a table with file counts and sizes (KiB)."""
    inventory = io.partition_inventory(spark, uri)
    frame = pd.DataFrame(inventory, columns=["partition", "files", "bytes"])
    frame["KiB"] = (frame["bytes"] / 1024).round(1)
    frame = frame.drop(columns="bytes").set_index("partition")
    return frame if limit is None else frame.head(limit)


def batches_frame(events) -> pd.DataFrame:
    """Micro-batch progress of a bronze_stream run, indexed by batch id; empty (same columns) when no file was new."""
    from lakehouse_utils.bronze.stream import BATCH_PROGRESS_KEYS

    return pd.DataFrame(events.details["batches"], columns=list(BATCH_PROGRESS_KEYS)).set_index("batch_id")


def sample(spark, uri: str, n: int = 5, columns: list[str] | None = None, where: str | None = None) -> pd.DataFrame:
    """A few rows of a Parquet table, as pandas (only `n` rows reach the driver)."""
    df = spark.read.parquet(uri)
    if where:
        df = df.where(where)
    if columns:
        df = df.select(*columns)
    return df.limit(n).toPandas()


def inventory_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    return frame.set_index(["zone", "table"]) if not frame.empty else frame


def cassandra_session(settings: Settings):
    """A session for the rest of the notebook, closed when the kernel exits."""
    import atexit

    from lakehouse_utils.serving.connection import open_session, target_from_settings

    context = open_session(target_from_settings(settings))
    session = context.__enter__()
    atexit.register(context.__exit__, None, None, None)
    return session
