"""Layout, Java check, jar assembly (Maven) and configuration files of the local node."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lakehouse_utils.config import Settings
from lakehouse_utils.spark import JavaNotFoundError
from lakehouse_utils.spark import find_java17 as spark_java17

# A Traversable: works when the package is imported from a zip too.
RESOURCES = resources.files("lakehouse_utils.cassandra_server")
CASSANDRA_VERSION = "5.0.8"
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"
LOOPBACK = "127.0.0.1"
# Small heap: the node shares a 2-core machine with Spark; -Xms low keeps idle RSS low.
HEAP_FLAGS = ("-Xms256m", "-Xmx1G")
NODE_SUBDIRS = ("conf", "data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs", "tmp")
REQUIRED_JARS = (f"cassandra-all-{CASSANDRA_VERSION}.jar", "jamm-*.jar", "jna-*.jar", "logback-classic-*.jar")
MAVEN_TIMEOUT_S = 900
TAIL_LINES = 30


class CassandraSetupError(RuntimeError):
    """The local Cassandra could not be set up, started, reached or stopped."""


class JavaVersionError(CassandraSetupError, JavaNotFoundError):
    """No Java 17 to run the server with."""


class MavenError(CassandraSetupError):
    """Maven is missing, or fetching the server's jars from Maven Central failed."""


class PortInUseError(CassandraSetupError):
    """A port the node needs is held by a program that is not this project's node."""


class StartupError(CassandraSetupError):
    """The server process died during startup or did not answer CQL in time."""


class CassandraUnreachableError(CassandraSetupError):
    """The server named by CASSANDRA_HOST does not answer CQL."""


@dataclass(frozen=True)
class NodeConfig:
    """Where a local node lives and which loopback ports it uses (jmx_port 0 = JMX off).

    `home` holds the jars (`lib/`, shared by every node using that home); `node_dir`
    (default `<home>/node`) holds one node's conf, data, commitlog, logs and PID file.
    """

    home: Path
    native_port: int = 9042
    storage_port: int = 7000
    jmx_port: int = 7199
    node_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).resolve())
        node_dir = Path(self.node_dir).resolve() if self.node_dir is not None else self.home / "node"
        object.__setattr__(self, "node_dir", node_dir)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> NodeConfig:
        settings = settings or Settings.load()
        return cls(
            home=Path(settings.cassandra_home),
            native_port=settings.cassandra_port,
            storage_port=settings.cassandra_storage_port,
            jmx_port=settings.cassandra_jmx_port,
        )

    @property
    def lib_dir(self) -> Path:
        return self.home / "lib"

    @property
    def conf_dir(self) -> Path:
        return self.node_dir / "conf"

    @property
    def log_dir(self) -> Path:
        return self.node_dir / "logs"

    @property
    def argfile(self) -> Path:
        return self.conf_dir / "jvm.args"

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "cassandra.pid"

    @property
    def state_file(self) -> Path:
        return self.node_dir / "node.json"

    @property
    def lock_file(self) -> Path:
        return self.node_dir.parent / f"{self.node_dir.name}.lock"

    @property
    def system_log(self) -> Path:
        return self.log_dir / "system.log"

    @property
    def stdout_log(self) -> Path:
        return self.log_dir / "stdout.log"


def find_java17() -> str:
    """The `java` binary to run the server with (lakehouse_utils.spark.find_java17 decides which)."""
    try:
        return spark_java17()[1]
    except JavaNotFoundError as error:
        raise JavaVersionError(str(error)) from None


def jars_present(lib_dir: Path) -> bool:
    return all(any(lib_dir.glob(pattern)) for pattern in REQUIRED_JARS)


def ensure_jars(config: NodeConfig, java_bin: str) -> bool:
    """Fetch the server's jars into `<home>/lib` unless there; True when it downloaded."""
    if jars_present(config.lib_dir):
        return False
    mvn = shutil.which("mvn")
    if not mvn:
        raise MavenError(
            f"Maven (mvn) is needed once to fetch Cassandra {CASSANDRA_VERSION} from Maven Central into "
            f"{config.lib_dir}, and it is not on PATH. Install it (Debian/Ubuntu/Colab: `apt-get install -y maven`), "
            "or set CASSANDRA_HOST to use an existing Cassandra."
        )
    config.home.mkdir(parents=True, exist_ok=True)
    pom = config.home / "pom.xml"
    pom.write_bytes((RESOURCES / "pom.xml").read_bytes())
    # Download into a private folder and rename: an interrupted download never looks complete.
    partial = config.home / f"lib.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    command = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={partial}"]
    env = {**os.environ, "JAVA_HOME": str(Path(java_bin).resolve().parent.parent)}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S, env=env, cwd=config.home)
    except subprocess.TimeoutExpired as error:
        raise MavenError(f"`{' '.join(command)}` did not finish within {MAVEN_TIMEOUT_S} s") from error
    if done.returncode != 0 or not jars_present(partial):
        shutil.rmtree(partial, ignore_errors=True)
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-TAIL_LINES:])
        raise MavenError(
            f"fetching the Cassandra jars failed (exit code {done.returncode}) with `{' '.join(command)}`. "
            "Check access to https://repo.maven.apache.org (proxies go in ~/.m2/settings.xml). "
            f"Last lines of the Maven output:\n{output or '(no output)'}"
        )
    try:
        partial.rename(config.lib_dir)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not jars_present(config.lib_dir):  # not a concurrent download that won the race
            raise
    return True


def write_node_files(config: NodeConfig) -> Path:
    """Create the node's folders and render cassandra.yaml, logback.xml and the JVM argfile."""
    for sub in NODE_SUBDIRS:
        (config.node_dir / sub).mkdir(parents=True, exist_ok=True)
    yaml = (
        (RESOURCES / "cassandra.yaml").read_text()
        .replace("@NODE_DIR@", str(config.node_dir))
        .replace("@NATIVE_PORT@", str(config.native_port))
        .replace("@STORAGE_PORT@", str(config.storage_port))
    )
    (config.conf_dir / "cassandra.yaml").write_text(yaml)
    (config.conf_dir / "logback.xml").write_bytes((RESOURCES / "logback.xml").read_bytes())
    flags = (RESOURCES / "jvm17-server.options").read_text()
    extra = "\n".join(_argfile_quote(arg) for arg in launch_arguments(config))
    config.argfile.write_text(f"{flags.rstrip()}\n{extra}\n")
    return config.argfile


def launch_arguments(config: NodeConfig) -> list[str]:
    """JVM arguments that depend on the node: heap, agent, paths, ports, classpath."""
    jamm = sorted(config.lib_dir.glob("jamm-*.jar"))
    args = [*HEAP_FLAGS, *(f"-javaagent:{jar}" for jar in jamm[:1])]
    args += [
        f"-Djava.io.tmpdir={config.node_dir / 'tmp'}",
        f"-Dcassandra.config={(config.conf_dir / 'cassandra.yaml').as_uri()}",
        f"-Dcassandra.storagedir={config.node_dir}",
        f"-Dcassandra.logdir={config.log_dir}",
        f"-Dlogback.configurationFile={config.conf_dir / 'logback.xml'}",
        # Without it the daemon closes stdout/stderr after setup and late crashes leave no trace.
        "-Dcassandra-foreground=yes",
        # Single seed node: no gossip settling (~8 s) and no ring delay to wait for.
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dcassandra.ring_delay_ms=1000",
        # A stop announces the shutdown to the other nodes, then sleeps 2 s for them to hear it; there are none.
        "-Dcassandra.shutdown_announce_in_ms=0",
        "-Dcassandra.unsafesystem=true",
        f"-Djava.rmi.server.hostname={LOOPBACK}",
    ]
    if config.jmx_port:
        args += [f"-Dcassandra.jmx.local.port={config.jmx_port}", "-Dcom.sun.management.jmxremote.authenticate=false"]
    args += ["-cp", f"{config.conf_dir}{os.pathsep}{config.lib_dir}/*"]
    return args


def _argfile_quote(arg: str) -> str:
    """Quote an argument for a java @argfile when it holds whitespace or quotes."""
    if not any(ch.isspace() or ch in "\"'\\" for ch in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
