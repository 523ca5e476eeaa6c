"""Runtime configuration: one place that reads environment, `.env` and Colab secrets.

Precedence (highest first): real environment variables, then the `.env` file,
then Colab secrets (only inside Colab), then the defaults below. Every variable
is documented in `.env.example`.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from dotenv import dotenv_values

PACKAGE_DIR = Path(__file__).resolve().parent


def is_source_checkout() -> bool:
    """True when the package runs from its source tree (next to its `pyproject.toml`), not from site-packages."""
    checkout = PACKAGE_DIR.parent
    return (checkout / "pyproject.toml").is_file() and (checkout / "lakehouse_utils" / "__init__.py").is_file()


def project_root() -> Path:
    """Where relative defaults (`data/lake`, `.env`, `data/landing`) live.

    From a source checkout (as `make`, the notebooks and the tests run it): the checkout,
    whatever the working directory. Installed with `pip install .`: the working directory
    at start-up, so a user's lake lands where they run the command, never in site-packages.
    """
    return PACKAGE_DIR.parent if is_source_checkout() else Path.cwd()


def user_cache_dir() -> Path:
    """Per-user cache (the downloaded Cassandra) of an installed package: XDG_CACHE_HOME or ~/.cache."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lakehouse_utils"


PROJECT_ROOT = project_root()
# The course's own dataset, beside the checkout (read-only; never copied into the project). Development, the
# committed evidence, the benchmark's course section and the course-data tests read it when it is there.
COURSE_LANDING = Path(os.environ.get("COURSE_LANDING_DIR") or PROJECT_ROOT.parent / "shared" / "course_landing")
IS_CHECKOUT = is_source_checkout()

DEFAULTS: dict[str, str] = {
    "LAKE_ROOT": str(PROJECT_ROOT / "data" / "lake"),
    "LANDING_DIR": "",
    "SPARK_MASTER": "local[2]",
    "SPARK_DRIVER_MEMORY": "3g",
    "SERVING_TARGET": "local",
    "CASSANDRA_HOST": "",
    "CASSANDRA_PORT": "9042",
    "CASSANDRA_KEYSPACE": "cloud_analytics",
    "CASSANDRA_HOME": str((PROJECT_ROOT / ".cache" if IS_CHECKOUT else user_cache_dir()) / "cassandra"),
    "CASSANDRA_STORAGE_PORT": "7000",
    "CASSANDRA_JMX_PORT": "7199",
    "ASTRA_DB_SECURE_BUNDLE_PATH": "",
    "ASTRA_DB_APPLICATION_TOKEN": "",
    "WATERMARK_DELAY": "2 hours",
}


def _colab_secret(name: str) -> str | None:
    """Read a Colab secret when running inside Colab; None elsewhere or when absent."""
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return userdata.get(name)
    except Exception as error:  # noqa: BLE001 - Colab raises its own types for missing/denied secrets
        if type(error).__name__ == "NotebookAccessError":  # the secret exists; this notebook may not read it
            raise SettingError(f"the Colab secret {name} exists but this notebook has no access to it: open the key "
                               "icon in Colab's left bar and turn on 'Notebook access' for it, then run the cell "
                               "again (without it the setting would silently fall back to its default)") from None
        return None  # not set (SecretNotFoundError), or Colab could not answer


# Settings that name a local folder or file. In `.env` a relative one is relative to the `.env` file's folder
# (as docker compose reads its env files): a notebook runs in `notebooks/`, and `LAKE_ROOT=data/lake` must still
# mean the checkout's `data/lake`, not `notebooks/data/lake`.
PATH_SETTINGS = ("LAKE_ROOT", "LANDING_DIR", "CASSANDRA_HOME", "ASTRA_DB_SECURE_BUNDLE_PATH")


def _env_file_values(env_file: Path | str | None) -> dict[str, str]:
    env_path = Path(env_file) if env_file is not None else PROJECT_ROOT / ".env"
    if not env_path.exists():
        return {}
    values = {k: v for k, v in dotenv_values(env_path).items() if v is not None}
    for name in PATH_SETTINGS:
        if values.get(name) and _relative_local_path(values[name]):
            values[name] = str(env_path.resolve().parent / values[name])
    return values


def _relative_local_path(value: str) -> bool:
    from lakehouse_utils.paths import has_scheme

    return not has_scheme(value) and not value.startswith("~") and not Path(value).is_absolute()


def _configured(name: str, from_file: dict[str, str]) -> str | None:
    value = os.environ.get(name)
    if value is None:
        value = from_file.get(name)
    if value is None:
        value = _colab_secret(name)
    return value


def configured_value(name: str, env_file: Path | str | None = None) -> str | None:
    """The value the user gave `name` (environment, `.env` or a Colab secret), None when only the default applies."""
    return _configured(name, _env_file_values(env_file))


def load_variables(env_file: Path | str | None = None) -> dict[str, str]:
    """Merge defaults, Colab secrets, `.env` and the environment (in rising precedence)."""
    from_file = _env_file_values(env_file)
    merged: dict[str, str] = {}
    for name, default in DEFAULTS.items():
        value = _configured(name, from_file)
        merged[name] = default if value is None else value
    return merged


class SettingError(ValueError):
    """A setting whose value cannot work; the message names it, where settings come from, and a valid value."""


# What Spark passes to the JVM as -Xmx: digits and an optional unit.
_MEMORY = re.compile(r"^\d+[kmgt]?$", re.IGNORECASE)


def _port(values: dict[str, str], name: str) -> int:
    text = str(values[name]).strip()
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise SettingError(f"{name} is {values[name]!r} (environment, .env or a Colab secret): expected a port "
                           f"number from 0 to 65535, e.g. {DEFAULTS[name]}")
    return int(text)


def _memory(values: dict[str, str], name: str) -> str:
    text = str(values[name]).strip()
    if not _MEMORY.match(text):
        raise SettingError(f"{name} is {values[name]!r} (environment, .env or a Colab secret): expected the JVM's "
                           f"memory size, digits and a unit (k, m, g or t), e.g. {DEFAULTS[name]} or 4g")
    return text


def _serving_target(values: dict[str, str]) -> str:
    from lakehouse_utils.serving.connection import SERVING_TARGETS

    text = str(values["SERVING_TARGET"]).strip().lower() or DEFAULTS["SERVING_TARGET"]  # empty: as if unset
    if text not in SERVING_TARGETS:
        raise SettingError(f"SERVING_TARGET is {values['SERVING_TARGET']!r} (environment, .env or a Colab secret): "
                           f"expected {' or '.join(SERVING_TARGETS)} (local: the project's Cassandra or CASSANDRA_HOST; "
                           "astra: AstraDB)")
    return text


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (argparse prints the message and exits with status 2)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds greater than 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:  # also false for NaN
        raise argparse.ArgumentTypeError(f"expected a number of seconds greater than 0, got {text!r}")
    return seconds


_DURATION_UNITS = {"millisecond": 0.001, "second": 1, "minute": 60, "hour": 3_600, "day": 86_400, "week": 604_800}
_DURATION_PART = re.compile(r"(\d+)\s*(millisecond|second|minute|hour|day|week)s?", re.IGNORECASE)


def parse_duration(text: str | None) -> timedelta | None:
    """'2 hours', '500 milliseconds', '1 day 6 hours' (the forms Spark takes for a watermark delay or a trigger
    interval) -> timedelta; None when the text is anything else."""
    parts = _DURATION_PART.findall(text or "")
    if not parts or _DURATION_PART.sub("", text).strip():
        return None
    return timedelta(seconds=sum(int(n) * _DURATION_UNITS[unit.lower()] for n, unit in parts))


def interval(text: str) -> str:
    """argparse type: a micro-batch interval with its unit."""
    if parse_duration(text) is None:
        raise argparse.ArgumentTypeError(f"expected an interval with its unit, e.g. '2 seconds' or '500 milliseconds', "
                                         f"got {text!r}")
    return text


@dataclass(frozen=True)
class Settings:
    """Typed view of the configuration. The token is kept out of `repr`."""

    lake_root: str
    landing_dir: str
    spark_master: str
    spark_driver_memory: str
    serving_target: str
    cassandra_host: str
    cassandra_port: int
    cassandra_keyspace: str
    cassandra_home: str
    astra_bundle_path: str
    astra_token: str = field(repr=False)
    watermark_delay: str = DEFAULTS["WATERMARK_DELAY"]
    # Local node only (a second node needs its own ports); JMX port 0 turns JMX off.
    cassandra_storage_port: int = 7000
    cassandra_jmx_port: int = 7199

    @classmethod
    def load(cls, env_file: Path | str | None = None, **overrides: str) -> Settings:
        values = load_variables(env_file)
        values.update({k.upper(): v for k, v in overrides.items() if v is not None})
        return cls(
            lake_root=values["LAKE_ROOT"],
            landing_dir=values["LANDING_DIR"] or default_landing_dir(),
            spark_master=values["SPARK_MASTER"],
            spark_driver_memory=_memory(values, "SPARK_DRIVER_MEMORY"),
            serving_target=_serving_target(values),
            cassandra_host=values["CASSANDRA_HOST"],
            cassandra_port=_port(values, "CASSANDRA_PORT"),
            cassandra_keyspace=values["CASSANDRA_KEYSPACE"],
            cassandra_home=values["CASSANDRA_HOME"],
            astra_bundle_path=values["ASTRA_DB_SECURE_BUNDLE_PATH"],
            astra_token=values["ASTRA_DB_APPLICATION_TOKEN"],
            watermark_delay=values["WATERMARK_DELAY"],
            cassandra_storage_port=_port(values, "CASSANDRA_STORAGE_PORT"),
            cassandra_jmx_port=_port(values, "CASSANDRA_JMX_PORT"),
        )


def default_landing_dir() -> str:
    """The landing folder used when LANDING_DIR is unset.

    A user who unzipped the course data into `data/landing/` gets it (the zip's
    `datalake/landing` folder is accepted as is); otherwise the project's
    generated dataset in `data/generated_landing/`.
    """
    for candidate in (PROJECT_ROOT / "data" / "landing", PROJECT_ROOT / "data" / "landing" / "datalake" / "landing"):
        if (candidate / "customers_orgs.csv").exists():
            return str(candidate)
    return str(PROJECT_ROOT / "data" / "generated_landing")
