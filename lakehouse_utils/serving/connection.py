"""Connections to the serving Cassandra: the project's local node or AstraDB.

One `CassandraTarget` describes where to write (it is small and picklable, so
Spark executors receive it); `open_session` turns it into a driver session and
turns every connection failure into an error that says what to check. The
Astra token lives in a `Secret` whose str/repr is masked, and every error text
built here is scrubbed of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lakehouse_utils.paths import check_name

# A Traversable, not a Path: the package may be imported from a zip (spark-submit --py-files).
CQL_DIR = resources.files("lakehouse_utils.serving") / "cql"
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
DDL_TIMEOUT_S = 120.0
ASTRA_CONSOLE_STEP = (
    "open https://astra.datastax.com, select your database, open the 'Data Explorer' tab (or 'Overview' > "
    "'Keyspaces'), click 'Create Keyspace' and name it {keyspace}; wait until the database is Active again, "
    "then re-run"
)


# The kinds of Cassandra the serving layer writes to (SERVING_TARGET, --target). Kept here, not in `config`:
# this module is imported on executors, which need no python-dotenv.
SERVING_TARGETS = ("local", "astra")


class CassandraError(RuntimeError):
    """Base of the serving errors; messages never contain the Astra token."""


class CassandraUnavailableError(CassandraError):
    """The node (or Astra database) could not be reached."""


class KeyspaceMissingError(CassandraError):
    """The keyspace does not exist and this target cannot create it (Astra)."""


class CassandraWriteError(CassandraError):
    """Statements still failed after the bounded retries."""


class Secret:
    """A string that never shows itself in str(), repr() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value or ""

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __getstate__(self) -> tuple[str]:
        return (self._value,)  # a tuple: pickle skips __setstate__ for a falsy state such as ""

    def __setstate__(self, state: tuple[str]) -> None:
        self._value = state[0]


@dataclass(frozen=True)
class CassandraTarget:
    """Where the serving tables live. `kind` is `local` or `astra`."""

    kind: str
    keyspace: str
    host: str = "127.0.0.1"
    port: int = 9042
    bundle_path: str = ""
    token: Secret = field(default_factory=lambda: Secret(""), repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in SERVING_TARGETS:
            raise ValueError(f"unknown serving target {self.kind!r}; expected 'local' or 'astra'")
        check_name(self.keyspace, "keyspace")

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}" if self.kind == "local" else f"AstraDB bundle {self.bundle_path}"

    @property
    def slug(self) -> str:
        """Names this target's checkpoints and key mirrors (not the host: a moved node is the same data)."""
        return f"{self.kind}_{self.keyspace}"

    def scrub(self, text: str) -> str:
        token = self.token.reveal()
        return text.replace(token, "***") if token else text

    def unreachable_message(self, reason: str) -> str:
        if self.kind == "local":
            hint = ("Check the node: `python -m lakehouse_utils cassandra status` (start it with "
                    "`python -m lakehouse_utils cassandra start`), or set CASSANDRA_HOST/CASSANDRA_PORT "
                    "to a reachable node.")
        else:
            hint = ("Check ASTRA_DB_SECURE_BUNDLE_PATH (the bundle of this database), ASTRA_DB_APPLICATION_TOKEN "
                    "(a token with a role that can write) and that the database is Active, not hibernated, in "
                    "the Astra console.")
        return self.scrub(f"cannot reach Cassandra at {self.endpoint} (keyspace {self.keyspace}): {reason}. {hint}")


def target_from_settings(settings, target: str | None = None, keyspace: str | None = None) -> CassandraTarget:
    """Build the target from `Settings` (env, .env, Colab secrets); starts the local node if needed."""
    kind = (target or settings.serving_target or "local").lower()
    keyspace = check_name(keyspace or settings.cassandra_keyspace, "keyspace")
    if kind == "astra":
        missing = [name for name, value in (("ASTRA_DB_SECURE_BUNDLE_PATH", settings.astra_bundle_path),
                                            ("ASTRA_DB_APPLICATION_TOKEN", settings.astra_token)) if not value]
        if missing:
            raise CassandraUnavailableError(f"target astra needs {' and '.join(missing)} (environment, .env or "
                                            "Colab secrets); see .env.example")
        if not Path(settings.astra_bundle_path).is_file():
            raise CassandraUnavailableError(f"secure connect bundle not found: {settings.astra_bundle_path} "
                                            "(download it from the Astra console: database > Connect)")
        return CassandraTarget("astra", keyspace, bundle_path=settings.astra_bundle_path,
                               token=Secret(settings.astra_token))
    if settings.cassandra_host:
        return CassandraTarget("local", keyspace, host=settings.cassandra_host, port=int(settings.cassandra_port))
    from lakehouse_utils.cassandra_server import manage as local_cassandra

    host, port = local_cassandra.ensure_running()
    return CassandraTarget("local", keyspace, host=host, port=int(port))


def plain_value(value):
    """A value the driver returned, as plain Python: a date, a sorted list for a set, a dict by key for a map."""
    from cassandra.util import Date, OrderedMap, SortedSet

    if isinstance(value, Date):
        return value.date()
    if isinstance(value, (SortedSet, set, frozenset)):
        return sorted(value)
    if isinstance(value, (OrderedMap, dict)):  # OrderedMapSerializedKey is an OrderedMap
        return {key: value[key] for key in sorted(value)}
    return value


def connection_class():
    """The driver's event-loop class for this Python (see cassandra_server.manage.driver_connection_class).

    Python 3.12 removed `asyncore`, the driver's fallback reactor. The PyPI manylinux
    wheels bundle libev (`cassandra_driver.libs/libev-*.so`), so LibevConnection is used
    on every Python. A source build without libev cannot even import `cassandra.cluster`
    on 3.12 (its import-time reactor probe raises); `pip install pyasyncore` fixes that,
    after which AsyncioConnection is a fallback.
    """
    from lakehouse_utils.cassandra_server.manage import driver_connection_class

    return driver_connection_class()


def ship_bundle(spark, target: CassandraTarget) -> None:
    """Send the AstraDB bundle to the executors of a cluster (the serving writers open it there too)."""
    from lakehouse_utils.shipping import is_local_master

    if target.kind == "astra" and not is_local_master(spark.sparkContext.master):
        spark.sparkContext.addFile(target.bundle_path)


def bundle_here(bundle_path: str) -> str:
    """The bundle's path in this process: as configured on the driver, else the copy `ship_bundle` sent."""
    if Path(bundle_path).is_file():
        return bundle_path
    try:
        from pyspark import SparkFiles

        shipped = SparkFiles.get(Path(bundle_path).name)
    except Exception:  # noqa: BLE001 - not in a Spark process, or nothing was shipped: report the path as given
        return bundle_path
    return shipped if Path(shipped).is_file() else bundle_path


def _build_cluster(target: CassandraTarget):
    if target.kind != "astra":
        from lakehouse_utils.cassandra_server.manage import open_cluster

        return open_cluster(target.host, target.port, connect_timeout=CONNECT_TIMEOUT_S,
                            request_timeout=REQUEST_TIMEOUT_S)
    from cassandra import ProtocolVersion
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile

    profile = ExecutionProfile(request_timeout=REQUEST_TIMEOUT_S)
    return Cluster(cloud={"secure_connect_bundle": bundle_here(target.bundle_path)},
                   auth_provider=PlainTextAuthProvider("token", target.token.reveal()),
                   protocol_version=ProtocolVersion.V4, execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                   connect_timeout=CONNECT_TIMEOUT_S, control_connection_timeout=CONNECT_TIMEOUT_S,
                   schema_metadata_enabled=False, connection_class=connection_class())


@contextmanager
def open_session(target: CassandraTarget, use_keyspace: bool = True) -> Iterator:
    """A connected session (in the target's keyspace unless `use_keyspace` is False); always shut down."""
    cluster = None
    try:
        try:
            cluster = _build_cluster(target)
            session = cluster.connect()
        except Exception as error:  # noqa: BLE001 - NoHostAvailable, auth, SSL, bad bundle: all mean "unreachable"
            raise _unreachable(error, target) from None
        if use_keyspace:
            set_keyspace(session, target)
        yield session
    finally:
        if cluster is not None:
            cluster.shutdown()


def set_keyspace(session, target: CassandraTarget) -> None:
    """`USE` the target's keyspace: a missing one says how to create it; a node that went away since the session
    connected (stopped, or answering "Server is shutting down") is unreachable, as connecting says."""
    from cassandra import InvalidRequest
    from cassandra.cluster import NoHostAvailable

    try:
        session.set_keyspace(target.keyspace)
    except InvalidRequest:
        raise missing_keyspace_error(target) from None
    except NoHostAvailable as error:
        raise _unreachable(error, target) from None


def _unreachable(error: Exception, target: CassandraTarget) -> CassandraUnavailableError:
    return CassandraUnavailableError(target.unreachable_message(_short(error, target)))


def missing_keyspace_error(target: CassandraTarget) -> KeyspaceMissingError:
    if target.kind == "astra":
        step = ASTRA_CONSOLE_STEP.format(keyspace=target.keyspace)
        return KeyspaceMissingError(f"keyspace {target.keyspace} does not exist in the Astra database; AstraDB "
                                    f"keyspaces are created in the Astra console: {step}")
    return KeyspaceMissingError(f"keyspace {target.keyspace} does not exist at {target.endpoint}; run the serving "
                                "stage first (`python -m lakehouse_utils pipeline --stage serving`)")


def keyspace_exists(session, keyspace: str) -> bool:
    row = session.execute("SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
                          (check_name(keyspace, "keyspace"),)).one()
    return row is not None


def _short(error: BaseException, target: CassandraTarget) -> str:
    return target.scrub(f"{type(error).__name__}: {error}")[:400]


def split_statements(text: str) -> list[str]:
    """CQL statements of a file: full-line `--` comments dropped, split on `;`."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def named_statements(text: str) -> dict[str, str]:
    """Statements of a file, keyed by the `-- name: <name>` line before each."""
    named: dict[str, str] = {}
    for block in re.split(r"^--\s*name:\s*", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        statements = split_statements(body)
        if len(statements) != 1:
            raise ValueError(f"query {name.strip()!r} must hold exactly one statement, found {len(statements)}")
        named[name.strip()] = statements[0]
    return named

