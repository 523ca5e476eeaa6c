"""The fork-free local file system: what local sessions run on, and that it behaves as Hadoop's own."""

from __future__ import annotations

import os
import stat

import pytest
from py4j.protocol import Py4JJavaError

from lakehouse_utils import local_fs
from lakehouse_utils.paths import to_uri
from lakehouse_utils.spark import ensure_java17


def _hadoop_path(spark, path) -> object:
    return spark._jvm.org.apache.hadoop.fs.Path(to_uri(path))


def _file_system(spark, path):
    return _hadoop_path(spark, path).getFileSystem(spark._jsc.hadoopConfiguration())


def test_a_local_session_writes_through_the_fork_free_file_system_and_file_context(spark, tmp_path):
    fs = _file_system(spark, tmp_path)
    assert fs.getClass().getName() == local_fs.FILE_SYSTEM_CLASS
    assert fs.getRawFileSystem().getClass().getName() == local_fs.FILE_SYSTEM_CLASS + "$Raw"
    context = spark._jvm.org.apache.hadoop.fs.FileContext.getFileContext(
        _hadoop_path(spark, tmp_path).toUri(), spark._jsc.hadoopConfiguration())
    assert context.getDefaultFileSystem().getClass().getName() == local_fs.ABSTRACT_FILE_SYSTEM_CLASS


def test_written_files_and_folders_get_hadoop_s_modes_and_checksums(spark, tmp_path):
    target = tmp_path / "table"
    spark.range(3).selectExpr("id", "id % 2 AS part").write.partitionBy("part").parquet(to_uri(target))
    data = sorted(target.rglob("*.parquet"))
    assert data and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in data)
    folders = [target, *(p for p in target.rglob("*") if p.is_dir())]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o755 for p in folders)
    # ChecksumFileSystem stays in place: every data file has its .crc beside it.
    assert all((p.parent / f".{p.name}.crc").is_file() for p in data)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o700, 0o755, 0o000, 0o1777])
def test_set_permission_sets_exactly_the_mode_chmod_would(spark, tmp_path, mode):
    target = tmp_path / "f"
    target.write_text("x")
    fs = _file_system(spark, target)
    permission = spark._jvm.org.apache.hadoop.fs.permission.FsPermission.createImmutable(mode)
    fs.setPermission(_hadoop_path(spark, target), permission)
    assert stat.S_IMODE(os.lstat(target).st_mode) == mode  # the sticky bit goes through Hadoop's chmod


def test_link_status_is_hadoop_s_own_for_a_file_a_folder_a_symbolic_link_and_a_missing_path(spark, tmp_path):
    regular = tmp_path / "regular"
    regular.write_text("x")
    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(regular)
    ours = _file_system(spark, tmp_path).getRawFileSystem()
    hadoop = spark._jvm.org.apache.hadoop.fs.RawLocalFileSystem()
    hadoop.initialize(_hadoop_path(spark, tmp_path).toUri(), spark._jsc.hadoopConfiguration())

    def seen(fs, name):
        try:
            status = fs.getFileLinkStatus(_hadoop_path(spark, tmp_path / name))
        except Py4JJavaError as error:
            return error.java_exception.getClass().getName()
        return status.isFile(), status.isDirectory(), status.isSymlink(), status.getLen(), status.getPath().toString()

    for name in ("regular", "folder", "link", "missing"):
        assert seen(ours, name) == seen(hadoop, name), name
    assert seen(ours, "missing") == "java.io.FileNotFoundException"


def test_a_jdk_without_javac_leaves_hadoop_s_own_file_system(tmp_path, monkeypatch):
    monkeypatch.setattr(local_fs, "jar_path", lambda: tmp_path / "cache" / "fork-free-local-fs-x.jar")
    no_compiler = tmp_path / "jre"
    (no_compiler / "bin").mkdir(parents=True)
    assert local_fs.local_session_conf(str(no_compiler)) == {}


def test_the_jar_is_compiled_once_from_the_packaged_source(tmp_path, monkeypatch):
    monkeypatch.setattr(local_fs, "jar_path", lambda: tmp_path / "cache" / "fork-free-local-fs-x.jar")
    conf = local_fs.local_session_conf(ensure_java17())
    jar = tmp_path / "cache" / "fork-free-local-fs-x.jar"
    assert conf["spark.driver.extraClassPath"] == str(jar)
    assert conf["spark.hadoop.fs.file.impl"] == local_fs.FILE_SYSTEM_CLASS
    built = jar.stat().st_mtime_ns
    assert local_fs.local_session_conf(ensure_java17()) == conf and jar.stat().st_mtime_ns == built
