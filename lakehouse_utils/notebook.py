"""What the notebooks share: start-up, input checks and small display helpers.

Notebooks stay free of function definitions; anything they need to reuse lives here.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd

from lakehouse_utils import io
from lakehouse_utils.config import PROJECT_ROOT, Settings, configured_value
from lakehouse_utils.evidence import first_rows
from lakehouse_utils.paths import LakePaths, local_path
from lakehouse_utils.spark import JAVA_17_CANDIDATES, JavaNotFoundError, find_java17

COLAB_DRIVE_MOUNT = "/content/drive"
COLAB_DRIVE_ROOT = f"{COLAB_DRIVE_MOUNT}/MyDrive/cloud_provider_analytics"

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
            ("landing (LANDING_DIR)", display_path(self.paths.landing_root)),
            ("lake (LAKE_ROOT)", display_path(self.paths.lake_root)),
            ("spark", f"{self.spark.version} ({self.spark.sparkContext.master})"),
            ("serving target", self.settings.serving_target),
            ("running in", "Google Colab" if in_colab() else "local Python"),
        ]
        return pd.DataFrame(rows, columns=["setting", "value"]).set_index("setting")


def in_colab() -> bool:
    return "google.colab" in sys.modules


def colab_drive_defaults(env_file: Path | str | None = None) -> dict[str, str]:
    """Google Drive folders for the lake and the landing data, for each of the two the user did not set.

    Only where neither the environment, `.env` nor a Colab secret names it: those keep their precedence.
    """
    drive = {"LAKE_ROOT": f"{COLAB_DRIVE_ROOT}/lake", "LANDING_DIR": f"{COLAB_DRIVE_ROOT}/landing"}
    return {name: folder for name, folder in drive.items() if configured_value(name, env_file) is None}


# The Drive defaults this kernel put into the environment (so that every later `Settings.load()` of the
# notebook sees them): taken back before each bootstrap, so that a secret added meanwhile is read.
_DRIVE_DEFAULTS_SET: dict[str, str] = {}


def apply_colab_drive_defaults(env_file: Path | str | None = None) -> dict[str, str]:
    """Put the Drive defaults into the environment where nothing else names the lake or the landing."""
    for variable, value in list(_DRIVE_DEFAULTS_SET.items()):
        if os.environ.get(variable) == value:
            del os.environ[variable]
        del _DRIVE_DEFAULTS_SET[variable]
    defaults = colab_drive_defaults(env_file)
    os.environ.update(defaults)
    _DRIVE_DEFAULTS_SET.update(defaults)
    return defaults


def mount_drive_if_needed(paths: LakePaths) -> bool:
    """Mount Google Drive when the lake or the landing lives on it (and it is not mounted yet)."""
    on_drive = [root for root in (paths.lake_root, paths.landing_root)
                if (local_path(root) or Path("/")).as_posix().startswith(COLAB_DRIVE_MOUNT)]
    if not on_drive or Path(COLAB_DRIVE_MOUNT, "MyDrive").is_dir():
        return False
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(COLAB_DRIVE_MOUNT)
    return True


def _missing_landing_hint(landing: Path) -> str:
    if in_colab():
        return (f"no landing data at {landing}: upload the course's datalake/landing folder (the seven CSV files and "
                f"usage_events_stream/) to that Drive folder, or point a LANDING_DIR secret at where it is")
    return (f"no landing data at {landing}: set LANDING_DIR to the course's datalake/landing folder, or run "
            "`make landing` to generate the synthetic dataset")


def bootstrap(name: str) -> NotebookContext:
    """Settings, Spark and paths for one notebook; fails early if its input zone is missing.

    In Colab the lake and the landing folder default to Google Drive, because every
    notebook gets its own runtime and the zones must outlive it; Drive is mounted only
    when one of them is on it.
    """
    if in_colab():
        apply_colab_drive_defaults()
    from lakehouse_utils.spark import get_spark

    settings = Settings.load()
    paths = LakePaths.from_settings(settings)
    if in_colab():
        mount_drive_if_needed(paths)
    landing = local_path(paths.landing_root)
    if landing is not None and not (landing / "customers_orgs.csv").exists():
        raise MissingInputError(_missing_landing_hint(landing))
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
    """A StageReport (or several) as a table: in / out / duplicates / quarantined / reconciles, then `table_rows`.

    An aggregate reconciles on what it folds (Silver's daily table on events, the ticket marts on tickets),
    so its `rows_in`/`rows_out` are not its own size: `table_rows` is the rows the table received, as its
    write counted them (`rows_out` where the two are the same unit).
    """
    rows = []
    for report in reports:
        for row, counts in zip(report.as_rows(), report.tables, strict=True):
            written = counts.details.get("rows_written", counts.details.get("mart_rows"))
            rows.append(row | {"table_rows": counts.rows_out if written is None else written})
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
    """The first `n` rows of a Parquet table by its columns, as pandas (only `n` rows reach the driver)."""
    df = io.read_parquet(spark, uri)
    if where:
        df = df.where(where)
    if columns:
        df = df.select(*columns)
    return readable(first_rows(df, n).toPandas())


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


# ---- what a stranger reads: no machine paths, numbers rounded for people ----------------------

def display_path(value: str, roots: dict[str, str] | None = None) -> str:
    """A path or `file:` URI as a reader should see it, never as this machine's absolute path.

    Under a named root (LANDING_DIR, LAKE_ROOT) it becomes `NAME/relative`; under the project, a
    path relative to it; elsewhere the last two segments after `…/`. Remote URIs (s3a://…) and
    anything that is not a path are returned unchanged.
    """
    path = local_path(value) if isinstance(value, str) and value else None
    if path is None or not path.is_absolute():
        return value
    for name, root in (roots or {}).items():
        root_path = local_path(root)
        if root_path is not None and root_path.is_absolute() and path.is_relative_to(root_path):
            relative = path.relative_to(root_path).as_posix()
            return name if relative == "." else f"{name}/{relative}"
    if path.is_relative_to(PROJECT_ROOT):
        return path.relative_to(PROJECT_ROOT).as_posix() or "."
    return "…/" + "/".join(path.parts[-2:])


def round_for_people(value):
    """Floats (and Decimals) to 6 decimals, 3 significant digits for tinier values; maps too.

    Enough for every value the data holds (FX rates have 5 decimals, carbon_kg 6) while float
    noise such as 50.21039999999999 or 16-digit scores goes.
    """
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return 0.0 if value == 0 else value
        return round(value, max(6, 2 - math.floor(math.log10(abs(value)))))
    if isinstance(value, dict):
        return {key: round_for_people(item) for key, item in value.items()}
    return value


def readable(data, roots: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows (list of dicts) or a DataFrame ready to show: paths via `display_path`, numbers rounded.

    `roots` defaults to the configured LANDING_DIR and LAKE_ROOT.
    """
    frame = data.copy() if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    roots = roots if roots is not None else _configured_roots()
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_float_dtype(series):
            frame[column] = series.map(round_for_people)
        elif series.dtype == object:
            frame[column] = series.map(lambda v: display_path(v, roots) if isinstance(v, str) else round_for_people(v))
    return frame


def _configured_roots() -> dict[str, str]:
    paths = LakePaths.from_settings(Settings.load())
    return {"LANDING_DIR": paths.landing_root, "LAKE_ROOT": paths.lake_root}


# ---- Colab: system packages, and what serving will do -----------------------------------------

COLAB_JAVA_HOME = JAVA_17_CANDIDATES[0]  # where apt-get puts openjdk-17-jdk-headless on Colab's x86-64 runtimes
FIRST_LOCAL_START = "about 1-3 minutes"  # Maven install + 67 MB of jars + boot, on Colab's 2 vCPUs


def prepare_colab(serving: bool = False) -> list[str]:
    """Install with apt what a Colab runtime lacks; print and return what was installed.

    Every notebook needs Java 17 (Spark 4.1). A notebook that serves (`serving=True`) with
    SERVING_TARGET=local also needs Maven, which fetches the local Cassandra's jars; with
    SERVING_TARGET=astra nothing more is installed. Outside Colab this does nothing.
    """
    if not in_colab():
        return []
    wanted = [] if _java17_present() else ["openjdk-17-jdk-headless"]
    target = Settings.load().serving_target if serving else None
    if target == "local" and shutil.which("mvn") is None:
        wanted.append("maven")
    if wanted:
        print(f"Colab: installing {', '.join(wanted)} with apt-get (about a minute)...", flush=True)
        if _apt_install(wanted) != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            if _apt_install(wanted) != 0:
                raise RuntimeError(f"apt-get install {' '.join(wanted)} failed; run it in a cell to see why")
    if "openjdk-17-jdk-headless" in wanted:
        os.environ["JAVA_HOME"] = COLAB_JAVA_HOME
    needs = {"local": "Java 17 and Maven (the local Cassandra's jars come from Maven Central)",
             "astra": "Java 17, and nothing for AstraDB"}.get(target, "Java 17")
    print(f"Colab: this notebook needs {needs}: " + (f"installed {', '.join(wanted)}" if wanted else "already present"))
    return wanted


def _apt_install(packages: list[str]) -> int:
    return subprocess.run(["apt-get", "install", "-y", "-qq", *packages], stdout=subprocess.DEVNULL).returncode


def _java17_present() -> bool:
    try:
        find_java17()  # the project's one Java check (JAVA_HOME, the known locations, PATH)
    except JavaNotFoundError:
        return False
    return True


def serving_plan(settings: Settings) -> str:
    """One paragraph, printed before serving starts: which target, and what starting it costs."""
    keyspace = settings.cassandra_keyspace
    if settings.serving_target == "astra":
        bundle = Path(settings.astra_bundle_path).name if settings.astra_bundle_path else "(ASTRA_DB_SECURE_BUNDLE_PATH unset)"
        return (f"Serving target: astra (SERVING_TARGET) - the AstraDB database of bundle {bundle}, keyspace {keyspace} "
                "(create it in the Astra console first). Nothing is installed or started; the load takes a few minutes.")
    if settings.cassandra_host:
        return (f"Serving target: local - the Cassandra at {settings.cassandra_host}:{settings.cassandra_port} "
                f"(CASSANDRA_HOST), keyspace {keyspace}. Nothing is started.")
    where = "in every new Colab runtime" if in_colab() else "the first time on this machine"
    return (f"Serving target: local (SERVING_TARGET) - the project's own Apache Cassandra 5.0 node on 127.0.0.1:"
            f"{settings.cassandra_port}, keyspace {keyspace}. If it is not running, the next cell starts it: "
            f"{where} that takes {FIRST_LOCAL_START} (Maven fetches 67 MB of jars, then the node boots); "
            "a restart takes 10-40 s, and a node already running is reused at once. "
            "Set SERVING_TARGET=astra to use AstraDB instead (see the end of this notebook).")
