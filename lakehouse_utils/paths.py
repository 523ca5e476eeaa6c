"""Every lake and landing location, derived in one place from two roots.

Roots are URIs so that the lake can sit on a local disk (`/path` or
`file:///path`), on Google Drive in Colab (`/content/drive/MyDrive/...`) or on
object storage (`s3a://bucket/prefix`). Stages only ever ask this module for a
location; they never join path strings themselves.

Zone layout::

    <lake>/bronze/<table>        <lake>/silver/<table>       <lake>/gold/<mart>
    <lake>/quarantine/<table>    <lake>/_checkpoints/<name>  <lake>/_state/<name>
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ZONES = ("bronze", "silver", "gold", "quarantine")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_SAFE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

MASTER_FILES = {
    "customers_orgs": "customers_orgs.csv",
    "users": "users.csv",
    "resources": "resources.csv",
    "support_tickets": "support_tickets.csv",
    "marketing_touches": "marketing_touches.csv",
    "nps_surveys": "nps_surveys.csv",
    "billing_monthly": "billing_monthly.csv",
}
EVENTS_DIR = "usage_events_stream"


def has_scheme(location: str) -> bool:
    """True for `s3a://b/x`, `file:///x`, `gs://b`; False for plain and Windows-less local paths."""
    return bool(_SCHEME.match(location)) and not re.match(r"^[a-zA-Z]:[\\/]", location)


def to_uri(location: str | Path) -> str:
    """Normalise a root: URIs stay as they are, local paths become absolute `file://` URIs.

    Not percent-encoded (`Path.as_uri` would be): Hadoop takes `file:///My Drive/lake` as the folder it names,
    and `%20` as three characters, so Colab's "Colab Notebooks" folder would become "Colab%20Notebooks".
    """
    text = str(location)
    if has_scheme(text):
        return text.rstrip("/")
    return f"file://{Path(text).expanduser().resolve().as_posix()}"


def join(base: str, *parts: str) -> str:
    """Join URI segments with single slashes (os.path.join would mangle `s3a://`)."""
    result = base.rstrip("/")
    for part in parts:
        result = f"{result}/{part.strip('/')}"
    return result


def relative_to(base: str, uri: str) -> str:
    """The part of `uri` below `base` ('' for `base` itself), without leading slashes.

    Schemes are ignored because Hadoop lists `file:/x/...` under a base given as `file:///x`.
    """
    def bare(location: str) -> str:
        return location.split("://")[-1] if "://" in location else location.split(":", 1)[-1]

    return bare(uri).split(bare(base.rstrip("/")), 1)[-1].lstrip("/")


def local_path(uri: str) -> Path | None:
    """The local filesystem path of a `file:` URI (or plain path); None for remote URIs."""
    if not has_scheme(uri):
        return Path(uri)
    if uri.startswith("file:"):
        return Path(re.sub(r"^file:(//)?", "", uri))
    return None


class InvalidNameError(ValueError):
    """A table, zone or keyspace name outside the allow-list (it would become a path segment or CQL identifier)."""


# Longest name of each kind; Cassandra refuses a keyspace name over 48 characters (SchemaConstants.NAME_LENGTH).
NAME_MAX, KEYSPACE_NAME_MAX = 64, 48


def check_name(name: str, kind: str = "table") -> str:
    """Table, zone and keyspace names become path segments and CQL identifiers: allow-list them."""
    longest = KEYSPACE_NAME_MAX if kind == "keyspace" else NAME_MAX
    if not _SAFE_NAME.match(name) or len(name) > longest:
        raise InvalidNameError(f"invalid {kind} name {name!r}: expected lower-case letters, digits and _, "
                               f"starting with a letter (at most {longest} characters)")
    return name


@dataclass(frozen=True)
class LakePaths:
    """Locations inside one lake root and one landing root."""

    lake_root: str
    landing_root: str

    @classmethod
    def from_roots(cls, lake_root: str | Path, landing_root: str | Path) -> LakePaths:
        return cls(lake_root=to_uri(lake_root), landing_root=to_uri(landing_root))

    @classmethod
    def from_settings(cls, settings) -> LakePaths:
        return cls.from_roots(settings.lake_root, settings.landing_dir)

    def zone(self, zone: str) -> str:
        if zone not in ZONES:
            raise ValueError(f"unknown zone {zone!r}; expected one of {ZONES}")
        return join(self.lake_root, zone)

    def bronze(self, table: str) -> str:
        return join(self.zone("bronze"), check_name(table))

    def silver(self, table: str) -> str:
        return join(self.zone("silver"), check_name(table))

    def gold(self, mart: str) -> str:
        return join(self.zone("gold"), check_name(mart))

    def quarantine(self, table: str) -> str:
        return join(self.zone("quarantine"), check_name(table))

    def checkpoint(self, name: str) -> str:
        return join(self.lake_root, "_checkpoints", check_name(name))

    def state(self, name: str) -> str:
        """Small bookkeeping files (run logs, incremental watermarks) of a stage."""
        return join(self.lake_root, "_state", check_name(name))

    def landing_master(self, source: str) -> str:
        if source not in MASTER_FILES:
            raise ValueError(f"unknown master {source!r}; expected one of {sorted(MASTER_FILES)}")
        return join(self.landing_root, MASTER_FILES[source])

    def landing_events(self) -> str:
        return join(self.landing_root, EVENTS_DIR)
