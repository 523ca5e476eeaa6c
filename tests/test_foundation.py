"""Foundation: configuration precedence, path derivation, the Spark factory, the lake lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import types

import pytest

from lakehouse_utils.benchmark.jobs import JobCounter
from lakehouse_utils.config import PROJECT_ROOT, Settings
from lakehouse_utils.lock import LakeLockedError, lake_lock
from lakehouse_utils.notebook import COLAB_DRIVE_ROOT, colab_drive_defaults
from lakehouse_utils.paths import LakePaths, join, local_path, relative_to, to_uri
from lakehouse_utils.spark import JavaNotFoundError, ensure_java17


def describe_config():
    def it_prefers_the_environment_over_the_env_file(tmp_path, monkeypatch):
        env_file = tmp_path / ".env"
        env_file.write_text("LAKE_ROOT=/from/file\nCASSANDRA_PORT=9999\n")
        monkeypatch.setenv("LAKE_ROOT", "/from/env")
        monkeypatch.delenv("CASSANDRA_PORT", raising=False)
        settings = Settings.load(env_file)
        assert settings.lake_root == "/from/env"
        assert settings.cassandra_port == 9999

    def it_reads_a_relative_path_of_the_env_file_from_the_env_files_folder(tmp_path, monkeypatch):
        """A notebook runs in `notebooks/`: `LAKE_ROOT=data/lake` in the checkout's `.env` is still the checkout's."""
        env_file = tmp_path / ".env"
        env_file.write_text("LAKE_ROOT=data/lake\nLANDING_DIR=s3a://bucket/landing\nCASSANDRA_HOME=/abs/cassandra\n")
        for name in ("LAKE_ROOT", "LANDING_DIR", "CASSANDRA_HOME"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.chdir(tmp_path.parent)
        settings = Settings.load(env_file)
        assert (settings.lake_root, settings.landing_dir, settings.cassandra_home) == (
            str(tmp_path / "data" / "lake"), "s3a://bucket/landing", "/abs/cassandra")
        monkeypatch.setenv("LAKE_ROOT", "relative/lake")  # the environment is the shell's: relative to its folder
        assert Settings.load(env_file).lake_root == "relative/lake"

    def it_says_when_a_colab_secret_exists_but_the_notebook_may_not_read_it(tmp_path, monkeypatch):
        """Colab's `userdata.get` raises NotebookAccessError for a secret whose notebook access is off: that is not
        "unset" (a LAKE_ROOT secret would silently fall back to the default lake)."""
        from lakehouse_utils.config import SettingError

        class NotebookAccessError(Exception):
            pass

        class SecretNotFoundError(Exception):
            pass

        def get(name):
            raise NotebookAccessError(name) if name == "LAKE_ROOT" else SecretNotFoundError(name)

        colab = types.ModuleType("google.colab")
        colab.userdata = types.SimpleNamespace(get=get)
        monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
        monkeypatch.setitem(sys.modules, "google.colab", colab)
        monkeypatch.delenv("LAKE_ROOT", raising=False)
        with pytest.raises(SettingError, match="the Colab secret LAKE_ROOT exists but this notebook has no access"):
            Settings.load(tmp_path / "missing.env")
        monkeypatch.setenv("LAKE_ROOT", "/from/env")  # the environment wins before Colab is asked
        assert Settings.load(tmp_path / "missing.env").lake_root == "/from/env"

    def it_refuses_a_serving_target_it_does_not_know(tmp_path, monkeypatch):
        from lakehouse_utils.config import SettingError

        monkeypatch.setenv("SERVING_TARGET", "astradb")
        with pytest.raises(SettingError, match=r"SERVING_TARGET is 'astradb' .*: expected local or astra"):
            Settings.load(tmp_path / "missing.env")
        monkeypatch.setenv("SERVING_TARGET", "Astra")
        assert Settings.load(tmp_path / "missing.env").serving_target == "astra"
        monkeypatch.setenv("SERVING_TARGET", "")  # `SERVING_TARGET=` in .env.example's style: as if unset
        assert Settings.load(tmp_path / "missing.env").serving_target == "local"

    def it_falls_back_to_defaults(tmp_path, monkeypatch):
        monkeypatch.delenv("CASSANDRA_KEYSPACE", raising=False)
        settings = Settings.load(tmp_path / "missing.env")
        assert settings.cassandra_keyspace == "cloud_analytics"

    def it_puts_the_colab_lake_on_drive_only_where_nothing_else_names_it(tmp_path, monkeypatch):
        """In Colab the lake and landing default to Drive; a `.env` entry or a Colab secret still wins."""
        for name in ("LAKE_ROOT", "LANDING_DIR"):
            monkeypatch.delenv(name, raising=False)
        secrets = types.ModuleType("google.colab.userdata")
        secrets.get = lambda name: {"LANDING_DIR": "/content/drive/MyDrive/course/landing"}[name]  # KeyError: absent
        colab = types.ModuleType("google.colab")
        colab.userdata = secrets
        monkeypatch.setitem(sys.modules, "google.colab", colab)
        monkeypatch.setitem(sys.modules, "google.colab.userdata", secrets)
        missing = tmp_path / "missing.env"
        assert colab_drive_defaults(missing) == {"LAKE_ROOT": f"{COLAB_DRIVE_ROOT}/lake"}
        assert Settings.load(missing).landing_dir == "/content/drive/MyDrive/course/landing"
        env_file = tmp_path / ".env"
        env_file.write_text("LAKE_ROOT=/content/drive/MyDrive/my_lake\n")
        assert colab_drive_defaults(env_file) == {}
        monkeypatch.delitem(sys.modules, "google.colab.userdata")
        monkeypatch.delitem(sys.modules, "google.colab")
        assert colab_drive_defaults(missing) == {"LAKE_ROOT": f"{COLAB_DRIVE_ROOT}/lake",
                                                 "LANDING_DIR": f"{COLAB_DRIVE_ROOT}/landing"}

    def it_reads_a_secret_added_after_the_drive_defaults_were_applied_in_the_same_runtime(tmp_path, monkeypatch):
        """A notebook re-run after the user added a LAKE_ROOT secret (here: a `.env` entry) uses it; the Drive
        default the first run put into the environment does not outrank it."""
        from lakehouse_utils import notebook

        for name in ("LAKE_ROOT", "LANDING_DIR"):
            monkeypatch.delenv(name, raising=False)
        env_file = tmp_path / ".env"
        try:
            assert notebook.apply_colab_drive_defaults(env_file)["LAKE_ROOT"] == f"{COLAB_DRIVE_ROOT}/lake"
            assert Settings.load(env_file).lake_root == f"{COLAB_DRIVE_ROOT}/lake"
            env_file.write_text("LAKE_ROOT=/content/drive/MyDrive/my_lake\n")
            assert notebook.apply_colab_drive_defaults(env_file) == {"LANDING_DIR": f"{COLAB_DRIVE_ROOT}/landing"}
            assert Settings.load(env_file).lake_root == "/content/drive/MyDrive/my_lake"
        finally:
            for name in list(notebook._DRIVE_DEFAULTS_SET):
                os.environ.pop(name, None)
            notebook._DRIVE_DEFAULTS_SET.clear()

    def it_mounts_drive_only_for_a_lake_or_landing_on_it(tmp_path, monkeypatch):
        from lakehouse_utils.notebook import mount_drive_if_needed

        mounted: list[str] = []
        colab = types.ModuleType("google.colab")
        colab.drive = types.SimpleNamespace(mount=mounted.append)
        monkeypatch.setitem(sys.modules, "google.colab", colab)
        assert mount_drive_if_needed(LakePaths.from_roots(tmp_path / "lake", tmp_path / "landing")) is False
        assert mounted == []  # a user who keeps both under /content is not asked for Drive
        assert mount_drive_if_needed(LakePaths.from_roots(f"{COLAB_DRIVE_ROOT}/lake", tmp_path / "landing")) is True
        assert mounted == ["/content/drive"]

    def it_keeps_the_token_out_of_repr(tmp_path, monkeypatch):
        monkeypatch.setenv("ASTRA_DB_APPLICATION_TOKEN", "AstraCS:not-a-real-token-123")
        settings = Settings.load(tmp_path / "missing.env")
        assert settings.astra_token == "AstraCS:not-a-real-token-123"
        assert "not-a-real-token" not in repr(settings)


def describe_paths():
    def it_derives_zone_locations_from_a_local_root(tmp_path):
        paths = LakePaths.from_roots(tmp_path / "lake", tmp_path / "landing")
        assert paths.bronze("users") == (tmp_path / "lake").as_uri() + "/bronze/users"
        assert paths.checkpoint("bronze_usage_events").endswith("/lake/_checkpoints/bronze_usage_events")
        assert paths.landing_master("billing_monthly").endswith("/landing/billing_monthly.csv")

    def it_keeps_object_store_uris_intact():
        paths = LakePaths.from_roots("s3a://bucket/lake/", "gs://bucket/landing")
        assert paths.gold("revenue_by_org_month") == "s3a://bucket/lake/gold/revenue_by_org_month"
        assert paths.landing_events() == "gs://bucket/landing/usage_events_stream"
        assert local_path(paths.lake_root) is None

    def it_maps_file_uris_back_to_local_paths(tmp_path):
        uri = to_uri(tmp_path)
        assert uri.startswith("file:///")
        assert local_path(join(uri, "x")) == tmp_path / "x"

    def it_finds_the_path_below_a_base_whatever_the_scheme_form():
        # Hadoop lists `file:/x/...` under a base given as `file:///x`
        assert relative_to("file:///tmp/lake/gold/m/", "file:/tmp/lake/gold/m/as_of_date=2025-07-01/f.parquet") == \
            "as_of_date=2025-07-01/f.parquet"
        assert relative_to("s3a://bucket/lake/t", "s3a://bucket/lake/t/f.parquet") == "f.parquet"
        assert relative_to("/tmp/lake/t", "file:/tmp/lake/t") == ""

    def it_rejects_names_that_could_escape_a_folder_or_a_cql_statement():
        paths = LakePaths.from_roots("/lake", "/landing")
        for bad in ("../etc", "users; DROP TABLE x", "Users", ""):
            with pytest.raises(ValueError, match="invalid table name"):
                paths.bronze(bad)


def describe_spark():
    def it_reads_and_writes_parquet_under_the_lake_root(spark, lake):
        paths = LakePaths.from_roots(lake, lake)
        target = paths.bronze("smoke")
        spark.range(5).write.mode("overwrite").parquet(target)
        assert spark.read.parquet(target).count() == 5
        assert (lake / "bronze" / "smoke").is_dir()

    def it_runs_in_utc(spark):
        assert spark.conf.get("spark.sql.session.timeZone") == "UTC"

    def it_keeps_a_compiled_class_after_more_than_spark_s_default_100_others(spark):
        """A chain compiles ~700 classes; a re-run in the same JVM must find its own (ADR 090.17)."""
        compiled = spark.sparkContext._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()

        def run(n: int) -> None:  # one distinct class per n (the literal is in its source); compiled, no job run
            spark.range(3).selectExpr(f"id * {n} + 7919 AS x")._jdf.queryExecution().executedPlan().execute()

        run(0)
        for n in range(1, 106):  # LRU: 100 entries would evict the first
            run(n)
        before = compiled.getCount()
        run(0)
        assert compiled.getCount() == before, "the first query's class was evicted and compiled again"

    def it_builds_a_column_without_sending_its_python_call_site_to_the_jvm(spark, monkeypatch):
        """Call-site capture is off (ADR 090.23): a column is 3 py4j commands, not 13 plus a walk of the stack."""
        from py4j import protocol
        from pyspark.errors.utils import is_debugging_enabled
        from pyspark.sql import functions as F

        client = spark.sparkContext._gateway._gateway_client
        sent: list[str] = []
        send = client.send_command

        def counted(command, *args, **kwargs):
            # py4j also releases JVM objects Python has garbage-collected, whenever its collector runs: not the call's.
            if not command.startswith(protocol.MEMORY_COMMAND_NAME + protocol.MEMORY_DEL_SUBCOMMAND_NAME):
                sent.append(command)
            return send(command, *args, **kwargs)

        monkeypatch.setattr(client, "send_command", counted)
        F.col("warm_up")  # pyspark reads the setting once per process, on its first column
        sent.clear()
        F.col("amount")
        assert not is_debugging_enabled()
        assert not any("PySparkCurrentOrigin" in command for command in sent), sent
        assert len(sent) <= 3, sent

    def it_runs_python_tasks_without_spark_s_archives_on_the_import_path(spark):
        """Workers import pyspark from site-packages: no zip or jar of SPARK_HOME is re-read per task (ADR 090.24)."""

        def imports(_):
            import sys

            import pyspark

            archives = [e for e in [*sys.path, *sys.path_importer_cache] if ".zip" in e or ".jar" in e]
            yield pyspark.__file__, [e for e in archives if "pyspark" in e]

        [(origin, archives)] = spark.sparkContext.parallelize([0], 1).mapPartitions(imports).collect()
        assert archives == [], archives
        assert ".zip" not in origin and origin.endswith("site-packages/pyspark/__init__.py"), origin

    def it_explains_a_wrong_java_version(tmp_path, monkeypatch):
        fake_home = tmp_path / "jdk11"
        (fake_home / "bin").mkdir(parents=True)
        fake_java = fake_home / "bin" / "java"
        fake_java.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
        fake_java.chmod(fake_java.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("JAVA_HOME", str(fake_home))
        with pytest.raises(JavaNotFoundError, match="Java 11; this project needs Java 17"):
            ensure_java17()

    def it_reads_the_version_from_the_jdk_release_file_without_starting_java(tmp_path, monkeypatch):
        fake_home = tmp_path / "jdk11"
        (fake_home / "bin").mkdir(parents=True)
        fake_java = fake_home / "bin" / "java"
        fake_java.write_text("#!/bin/sh\nexit 3\n")  # would not tell a version if it were run
        fake_java.chmod(fake_java.stat().st_mode | stat.S_IEXEC)
        (fake_home / "release").write_text('IMPLEMENTOR="x"\nJAVA_VERSION="11.0.2"\n')
        monkeypatch.setenv("JAVA_HOME", str(fake_home))
        with pytest.raises(JavaNotFoundError, match="Java 11; this project needs Java 17"):
            ensure_java17()

    def it_explains_a_missing_java(tmp_path, monkeypatch):
        monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
        with pytest.raises(JavaNotFoundError, match="Java 17 was not found"):
            ensure_java17()


def describe_lake_lock():
    def it_refuses_a_second_run_on_the_same_lake(tmp_path):
        with lake_lock(str(tmp_path)):
            with pytest.raises(LakeLockedError, match="in use by another run"):
                with lake_lock(str(tmp_path)):
                    pass
        with lake_lock(str(tmp_path)):  # released after the first run
            pass

    def it_takes_over_a_lock_left_by_a_dead_process(tmp_path):
        code = (
            "import os; from lakehouse_utils.lock import lake_lock; "
            f"cm = lake_lock({str(tmp_path)!r}); cm.__enter__(); os._exit(0)"
        )
        subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd())
        assert (tmp_path / "_state" / "pipeline.lock").exists()
        with lake_lock(str(tmp_path)):
            pass


def describe_cli():
    def it_lists_every_command_in_help():
        out = subprocess.run([sys.executable, "-m", "lakehouse_utils", "--help"], capture_output=True, text=True)
        assert out.returncode == 0
        for command in ("generate", "pipeline", "query", "cassandra", "evidence", "benchmark"):
            assert command in out.stdout


# Taken when pytest imports this module, before any test has built the session.
PYSPARK_PYTHON_BEFORE = os.environ.get("PYSPARK_PYTHON")


def test_the_session_uses_this_interpreter_for_workers_without_leaking_it_to_subprocesses(spark):
    if PYSPARK_PYTHON_BEFORE is None:
        assert spark.sparkContext.pythonExec == sys.executable
    # A subprocess started after the session (another venv, a notebook's `!python`) keeps its own Python.
    assert os.environ.get("PYSPARK_PYTHON") == PYSPARK_PYTHON_BEFORE


def test_listing_a_local_lake_without_the_jvm_returns_what_hadoop_lists(spark, tmp_path):
    from lakehouse_utils import io

    root = tmp_path / "my lake%41"  # a space and a percent sign: Drive folders have both
    spark.range(6).selectExpr("id", "id % 3 AS part").write.partitionBy("part").parquet(str(root / "table"))
    for relative in ("_staging/part-0.parquet", ".hidden/x.parquet", "table/part=1/_tmp.parquet", "top.json",
                     "nested/deeper/file.json", "table/part=2/.x.crc"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("{}")
    uris = [to_uri(root), f"file:{root}", f"file://{root}/", f"file:{root}/table", f"file:{root}/top.json",
            f"file:{root}/absent"]
    for uri in uris:
        assert io.list_files(spark, uri) == io._list_hadoop(spark, uri), uri
    listed = io.list_files(spark, f"file:{root}")
    names = {e.path.rsplit("/", 1)[-1] for e in listed}
    assert {"top.json", "file.json"} <= names and not names & {"part-0.parquet", "x.parquet", "_tmp.parquet", ".x.crc"}
    assert {e.path.split("/table/")[1].split("/")[0] for e in listed if "/table/" in e.path} == {
        "part=0", "part=1", "part=2"}
    assert all(e.path.startswith(f"file:{root}/") and e.size > 0 for e in listed)


def test_reading_a_table_of_many_partitions_lists_it_without_a_spark_job(spark, tmp_path):
    table = str(tmp_path / "many_partitions")
    spark.range(40).selectExpr("id", "id AS part").write.partitionBy("part").parquet(table)  # 40 folders > 32
    with JobCounter(spark, "list-many-partitions") as jobs:
        frame = spark.read.schema("id long, part long").parquet(table)
    assert jobs.count == 0 and frame.count() == 40


def test_a_local_session_caches_rows_uncompressed(spark):
    """A cache is read back two or three times and dropped: compressing it cost more CPU than it saved."""
    from pyspark.sql import functions as F

    def stored_bytes() -> int:
        # Memory and disk: under memory pressure the blocks go to disk, still as they were encoded.
        infos = spark.sparkContext._jsc.sc().getRDDStorageInfo()
        return sum(infos[i].memSize() + infos[i].diskSize() for i in range(len(infos)))

    rows, text = 100_000, "twenty characters!!!"
    before = stored_bytes()  # what other tests left cached must not count for this one
    cached = spark.range(rows).select(F.lit(text).alias("text")).persist()
    try:
        cached.count()
        stored = stored_bytes() - before
    finally:
        cached.unpersist(blocking=True)
    # Compressed, one repeated value takes a few kilobytes (run-length and dictionary encodings).
    assert stored >= rows * len(text), stored


def test_reading_a_parquet_table_gives_spark_s_own_schema_without_its_inference_job(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.errors import AnalysisException

    from lakehouse_utils import io

    typed = spark.sql(
        "SELECT id, CAST(id AS DECIMAL(12, 4)) AS amount, TIMESTAMP'2025-08-01 10:00:00' AS ts, "
        "array('a', CAST(NULL AS STRING)) AS tags, map('k', id) AS m, named_struct('x', id, 'y', 'z') AS s, "
        "DATE'2025-08-01' + CAST(id % 3 AS INT) AS event_date FROM range(9)")
    tables = {"partitioned": (typed, ["event_date"]), "flat": (typed, []),
              "empty": (typed.where("id < 0"), []), "not_null": (spark.range(3), [])}
    for name, (frame, partition_by) in tables.items():
        frame.write.partitionBy(*partition_by).parquet(str(tmp_path / name))
    pq.write_table(pa.table({"n": [1, 2], "t": ["a", None]}), tmp_path / "by_pyarrow.parquet")  # no Spark schema
    for name in [*tables, "by_pyarrow.parquet"]:
        uri = to_uri(tmp_path / name)
        with JobCounter(spark, f"infer-{name}") as inferring_jobs:
            inferred = spark.read.parquet(uri)
        with JobCounter(spark, f"footer-{name}") as jobs:
            frame = io.read_parquet(spark, uri)
        assert frame.schema == inferred.schema, name
        # another tool's file: Spark infers
        assert inferring_jobs.count and (jobs.count == 0) == (name != "by_pyarrow.parquet"), name
        assert sorted(frame.collect()) == sorted(inferred.collect()), name
    (tmp_path / "no_files").mkdir()
    with pytest.raises(AnalysisException, match="UNABLE_TO_INFER_SCHEMA"):  # Spark's own error, as before
        io.read_parquet(spark, to_uri(tmp_path / "no_files"))


def test_a_state_file_edited_by_hand_is_refused_with_the_checksum_to_delete(spark, tmp_path):
    from lakehouse_utils import io

    uri = to_uri(tmp_path / "state.json")
    io.write_json(spark, uri, {"stream_id": "abc"})
    assert io.read_json(spark, uri) == {"stream_id": "abc"}
    (tmp_path / "state.json").write_text('{"stream_id": "xyz"}')  # same length, other bytes: a stale checksum
    with pytest.raises(io.StateFileError) as caught:
        io.read_json(spark, uri)
    text = str(caught.value)
    assert "changed outside the pipeline" in text and ".state.json.crc" in text and "org.apache" not in text
    (tmp_path / ".state.json.crc").unlink()  # the fix the message gives
    assert io.read_json(spark, uri) == {"stream_id": "xyz"}


def test_a_damaged_json_state_file_names_the_file_and_the_position(spark, tmp_path):
    from lakehouse_utils import io

    (tmp_path / "state.json").write_text('{"stream_id": ')
    with pytest.raises(io.StateFileError) as caught:
        io.read_json(spark, to_uri(tmp_path / "state.json"))
    assert "state.json is not valid JSON" in str(caught.value) and "line 1, column 15" in str(caught.value)


def test_the_command_line_says_the_package_s_own_errors_in_one_message_and_keeps_tracebacks_for_bugs(
        spark, tmp_path, capsys, monkeypatch):
    from lakehouse_utils.__main__ import TRACEBACK_VARIABLE, is_own_error, main
    from lakehouse_utils.bronze.batch import LandingFileMissingError

    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    argv = ["pipeline", "--landing", str(tmp_path / "nowhere"), "--lake", str(tmp_path / "lake"),
            "--stage", "bronze_batch"]
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: landing master file(s) not found: ") and "--landing (or LANDING_DIR)" in stderr
    assert "Traceback" not in stderr and f"{TRACEBACK_VARIABLE}=1" in stderr
    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    with pytest.raises(LandingFileMissingError):
        main(argv)
    assert is_own_error(LandingFileMissingError("x")) and not is_own_error(KeyError("a bug"))


def test_a_misspelt_stage_is_one_error_line_naming_the_stages(tmp_path, capsys, monkeypatch):
    from lakehouse_utils.__main__ import TRACEBACK_VARIABLE, main

    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    assert main(["pipeline", "--lake", str(tmp_path / "lake"), "--stage", "bronze_batch,silvr"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: unknown stage 'silvr'; expected one of bronze_batch, bronze_stream, silver, gold, "
                             "serving or all") and "Traceback" not in stderr
    assert not (tmp_path / "lake").exists()  # refused before anything ran


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("SPARK_DRIVER_MEMORY", "abc", "SPARK_DRIVER_MEMORY is 'abc' (environment, .env or a Colab secret): expected the "
                                   "JVM's memory size, digits and a unit (k, m, g or t), e.g. 3g or 4g"),
    ("CASSANDRA_PORT", "abc", "CASSANDRA_PORT is 'abc' (environment, .env or a Colab secret): expected a port number "
                              "from 0 to 65535, e.g. 9042"),
    ("CASSANDRA_JMX_PORT", "70000", "CASSANDRA_JMX_PORT is '70000'"),
])
def test_a_setting_that_cannot_work_is_refused_naming_it_before_a_jvm_starts(tmp_path, capsys, monkeypatch, variable,
                                                                            value, expected):
    from lakehouse_utils.__main__ import TRACEBACK_VARIABLE, main

    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    monkeypatch.setenv(variable, value)
    assert main(["pipeline", "--lake", str(tmp_path / "lake"), "--stage", "bronze_batch"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(f"error: {expected}") and "Traceback" not in stderr
    assert not (tmp_path / "lake").exists()
    monkeypatch.setenv(variable, {"SPARK_DRIVER_MEMORY": "1536m"}.get(variable, "9043"))
    Settings.load(tmp_path / "missing.env")  # a valid value passes


@pytest.mark.parametrize("argv", [
    ["pipeline", "--max-files-per-trigger", "-3"],
    ["live", "--duration", "-5"],
    ["live", "--trigger-interval", "0"],
    ["query", "q2", "--n", "0"],
    ["query", "q3", "--days", "-5"],
])
def test_an_option_value_that_cannot_work_is_a_usage_error(argv, capsys):
    from lakehouse_utils.__main__ import main

    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert f"argument {argv[-2]}: expected " in capsys.readouterr().err


def test_bad_operations_outside_spark_get_one_error_line(tmp_path, capsys, monkeypatch):
    """A lake root below a file, a lake that is not there, a reversed date range, a watermark delay without unit."""
    from lakehouse_utils.__main__ import TRACEBACK_VARIABLE, is_own_error, main
    from lakehouse_utils.bronze.stream import parse_delay
    from lakehouse_utils.config import SettingError

    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    (tmp_path / "file").write_text("not a folder")
    assert main(["pipeline", "--lake", str(tmp_path / "file" / "lake"), "--stage", "bronze_batch"]) == 2
    assert f"cannot be a folder: {tmp_path / 'file'} is a file" in capsys.readouterr().err
    assert main(["evidence", "--lake", str(tmp_path / "nolake"), "--no-cassandra"]) == 2
    assert capsys.readouterr().err.startswith(f"error: no lake at {(tmp_path / 'nolake').as_uri()} (no bronze")
    assert main(["query", "q1", "--from", "2025-02-01", "--to", "2025-01-01"]) == 2
    assert "--from 2025-02-01 is after --to 2025-01-01" in capsys.readouterr().err
    with pytest.raises(SettingError, match="WATERMARK_DELAY or --watermark-delay") as caught:
        parse_delay("banana")
    assert is_own_error(caught.value)


@pytest.mark.parametrize(("extra", "expected"), [([], None), (["--max-files-per-trigger", "1"], False)])
def test_the_pipeline_command_asks_for_c2_when_its_stream_runs_many_micro_batches(tmp_path, monkeypatch, extra,
                                                                                  expected):
    """The JIT of the command's driver (ADR 090.25): by the landing's size, except for a stream of many
    micro-batches, where C2's code pays off (the course at one file per trigger: 117.5 s with C1, 87.0 s with C2)."""
    from lakehouse_utils import spark as spark_module
    from lakehouse_utils.__main__ import main

    asked = []

    class Stop(Exception):
        pass

    def record(app_name, settings=None, small_data=None):
        asked.append(small_data)
        raise Stop

    monkeypatch.setattr(spark_module, "get_spark", record)
    with pytest.raises(Stop):
        main(["pipeline", "--lake", str(tmp_path / "lake"), "--stage", "bronze_stream", *extra])
    assert asked == [expected]


def test_a_make_run_keeps_the_compiled_modules_of_the_venv():
    """Under `make` (CI's `make test`) Python writes its bytecode caches even where the environment says not to:
    otherwise every Python process of the run compiles pandas, pyspark and the Cassandra driver from source again
    (~1.3 s each for those four, ~3 s for the notebooks' kernel; ADR 153, session 28)."""
    if "MAKELEVEL" not in os.environ:
        pytest.skip("checks what `make` gives its recipes: run through `make test` or `make test-fast`")
    import importlib.util
    from pathlib import Path

    import pandas

    assert not os.environ.get("PYTHONDONTWRITEBYTECODE"), "the Makefile must unexport PYTHONDONTWRITEBYTECODE"
    assert Path(importlib.util.cache_from_source(pandas.__file__)).is_file()


@pytest.fixture
def background_jobs_of_its_own(monkeypatch):
    """The plugin, with this test's jobs kept apart from the session's own: their summary, their running processes,
    an open start gate (the session's may still be closed) and a session that has not ended."""
    import threading

    import background_jobs

    opened = threading.Event()
    opened.set()
    monkeypatch.setattr(background_jobs.BackgroundJob, "started", [])
    monkeypatch.setattr(background_jobs, "_jobs_may_start", opened)
    monkeypatch.setattr(background_jobs, "_session_over", threading.Event())
    monkeypatch.setattr(background_jobs, "_running", set())
    return background_jobs


def test_a_background_job_runs_its_processes_at_low_priority_and_its_test_gets_its_error(background_jobs_of_its_own):
    BackgroundJob, run_idle = background_jobs_of_its_own.BackgroundJob, background_jobs_of_its_own.run_idle
    probe = [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"]
    job = BackgroundJob("probe", lambda: run_idle(probe, capture_output=True, text=True, check=True,
                                                  timeout=60).stdout.strip())
    assert job.result(timeout=60) == str(os.SCHED_IDLE) and os.sched_getscheduler(0) != os.SCHED_IDLE

    def failing():
        raise AssertionError("the installed copy's benchmark failed")

    with pytest.raises(AssertionError, match="installed copy's benchmark failed"):
        BackgroundJob("failing", failing).result(timeout=60)
    assert [job.name for job in BackgroundJob.started] == ["probe", "failing"] and job.seconds is not None


def test_background_jobs_that_share_a_queue_run_one_after_another(background_jobs_of_its_own):
    import threading
    import time

    BackgroundJob = background_jobs_of_its_own.BackgroundJob
    queue, spans = threading.Lock(), {}

    def work(name):
        started = time.monotonic()
        time.sleep(0.3)
        spans[name] = (started, time.monotonic())

    first = BackgroundJob("first", lambda: work("first"), queue)
    second = BackgroundJob("second", lambda: work("second"), queue)
    first.result(timeout=30), second.result(timeout=30)
    assert spans["second"][0] >= spans["first"][1] and second.waited >= 0.25


def test_background_jobs_wait_for_the_gate_test_s_set_up_and_never_start_after_the_session(
        background_jobs_of_its_own, monkeypatch):
    import threading
    import time
    from types import SimpleNamespace

    plugin = background_jobs_of_its_own
    monkeypatch.setattr(plugin, "_jobs_may_start", threading.Event())
    monkeypatch.setattr(plugin, "_gate_test", "tests/test_zone.py::test_first_slow")
    ran = []
    job = plugin.BackgroundJob("waiting", lambda: ran.append("ran") or "done")
    time.sleep(0.3)
    assert job.waited is None and not ran  # created, not started
    plugin.pytest_runtest_logreport(SimpleNamespace(when="setup", nodeid="tests/test_zone.py::test_fast"))
    plugin.pytest_runtest_logreport(SimpleNamespace(when="call", nodeid="tests/test_zone.py::test_first_slow"))
    time.sleep(0.1)
    assert not ran  # another test's set-up, or the gate test's call, is not what it waits for
    plugin.pytest_runtest_logreport(SimpleNamespace(when="setup", nodeid="tests/test_zone.py::test_first_slow"))
    assert job.result(timeout=30) == "done" and ran == ["ran"]

    monkeypatch.setattr(plugin, "_jobs_may_start", threading.Event())
    late = plugin.BackgroundJob("late", lambda: ran.append("late"))
    plugin.pytest_sessionfinish(None)
    with pytest.raises(RuntimeError, match="session ended before the background job 'late' started"):
        late.result(timeout=30)
    assert ran == ["ran"]


def test_the_first_slow_or_course_test_opens_the_gate(request):
    import background_jobs

    items = request.session.items
    heavy = [item.nodeid for item in items if item.get_closest_marker("slow") or item.get_closest_marker("course")]
    assert background_jobs._gate_test == (heavy or [items[0].nodeid])[0]


def test_the_tests_of_background_jobs_run_last(request):
    items = request.session.items
    marked = [i for i, item in enumerate(items) if item.get_closest_marker("background")]
    assert marked == list(range(len(items) - len(marked), len(items)))


def test_a_session_that_ends_first_interrupts_its_unfinished_background_job(background_jobs_of_its_own):
    import time

    plugin = background_jobs_of_its_own
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    job = plugin.BackgroundJob("sleeper", lambda: plugin.run_idle(sleeper, timeout=900))
    deadline = time.monotonic() + 30
    while not plugin._running and time.monotonic() < deadline:
        time.sleep(0.05)
    plugin.pytest_sessionfinish(None)
    assert job.result(timeout=30).returncode == -2  # SIGINT: its scripts' `finally` blocks stop what they started


def test_the_query_table_shows_numbers_as_they_are_up_to_six_decimals():
    from lakehouse_utils.report import format_table

    rows = [{"rate": 1.04985, "requests": 121.0, "cost": 12.5, "zero": -0.0, "tiny": 0.0000004, "date": None}]
    assert format_table(rows).splitlines()[2].split() == ["1.04985", "121", "12.5", "0", "0"]


def test_spark_workers_import_the_package_a_kernel_found_through_sys_path(tmp_path):
    """Colab's and a Jupyter kernel's setup cell puts the checkout on `sys.path`, not on PYTHONPATH: the Python
    workers (where the serving writers run) must import the package all the same."""
    from conftest import short_lived_driver_env

    script = tmp_path / "kernel.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(PROJECT_ROOT)!r})\n"
        "from lakehouse_utils.config import Settings\n"
        "from lakehouse_utils.spark import get_spark\n"
        f"spark = get_spark('kernel', Settings.load(lake_root={str(tmp_path / 'lake')!r}))\n"
        "def where(rows):\n"
        "    import lakehouse_utils.serving.writer as writer\n"
        "    yield writer.__file__\n"
        "print('workers:', sorted(set(spark.sparkContext.parallelize([1, 2], 2).mapPartitions(where).collect())))\n")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=short_lived_driver_env(env),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"workers: ['{PROJECT_ROOT / 'lakehouse_utils' / 'serving' / 'writer.py'}']" in done.stdout


def test_a_lake_in_a_folder_with_a_space_is_written_where_it_says(spark, tmp_path):
    """Colab's Drive folder is "Colab Notebooks": its URI must name that folder, not "Colab%20Notebooks"."""
    root = tmp_path / "Colab Notebooks" / "lake"
    uri = to_uri(root)
    assert uri == f"file://{root}" and local_path(uri) == root
    from lakehouse_utils import io

    io.write_json(spark, join(uri, "bronze", "probe.json"), {"ok": True})
    assert (root / "bronze" / "probe.json").is_file() and not list(tmp_path.glob("*%20*"))
    assert [entry.path.endswith("/Colab Notebooks/lake/bronze/probe.json") for entry in io.list_files(spark, uri)] == [
        True]


def test_an_astra_bundle_sent_with_the_job_is_found_in_a_task_where_the_drivers_path_is_missing(spark, tmp_path):
    """On a cluster the bundle path is the driver's: a writer task opens the copy `ship_bundle` sent (SparkFiles)."""
    import uuid

    from lakehouse_utils.serving.connection import bundle_here

    name = f"secure-connect-{uuid.uuid4().hex[:8]}.zip"
    (tmp_path / name).write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: only its presence matters here
    drivers_path = f"/nowhere/on/this/executor/{name}"
    before = spark.sparkContext.parallelize([1], 1).map(lambda _: bundle_here(drivers_path)).collect()
    spark.sparkContext.addFile(str(tmp_path / name))  # what ship_bundle does on a cluster
    after = spark.sparkContext.parallelize([1], 1).map(lambda _: bundle_here(drivers_path)).collect()
    assert before == [drivers_path]  # nothing sent: the path as configured, so the error names it
    assert after[0] != drivers_path and after[0].endswith(name) and os.path.isfile(after[0])
