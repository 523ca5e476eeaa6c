"""Bad operations on the bronze stream: each stops with one clear paragraph and leaves Bronze as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lakehouse_utils.bronze import stream as bronze_stream
from lakehouse_utils.bronze.stream_guard import (
    OWNER_FILE,
    CheckpointLayoutError,
    CheckpointMissingError,
    LandingMovedError,
    SharedCheckpointError,
    StreamOperationError,
)
from lakehouse_utils.paths import LakePaths
from tests.test_bronze_stream import RUN_ID, bronze, event, make_landing

AGAIN = "20250101T000001Z-def456"


def zone_files(lake: Path) -> dict[str, tuple[int, int]]:
    """Every Bronze and quarantine file of the stream with its size and modification time."""
    files = {}
    for table in (lake / "bronze" / "usage_events", lake / "quarantine" / "usage_events_raw"):
        for path in sorted(table.rglob("*")) if table.exists() else []:
            if path.is_file():
                files[str(path.relative_to(lake))] = (path.stat().st_size, path.stat().st_mtime_ns)
    return files


@pytest.fixture(scope="module")
def streamed_template(spark, tmp_path_factory) -> tuple[Path, Path]:
    """(root, pristine copy): a lake whose stream has ingested two files (one conflicting duplicate in
    quarantine), streamed once per module. The checkpoint records the lake's and the landing's paths,
    so each test gets it back at the same place (`streamed_lake`) rather than a copy elsewhere."""
    root = tmp_path_factory.mktemp("streamed")
    landing = make_landing(root, {"1.jsonl": f"{event('e1')}\n{event('e2')}\n",
                                  "2.jsonl": f"{event('e1', cost=9.0)}\n{event('e3')}\n"})
    paths = LakePaths.from_roots(root / "lake", landing)
    bronze_stream.run(spark, paths, RUN_ID, max_files_per_trigger=1)
    assert bronze(spark, paths).count() == 3
    pristine = tmp_path_factory.mktemp("streamed_pristine") / "copy"
    shutil.copytree(root, pristine, symlinks=True)  # copy2: modification times kept (arrival order)
    return root, pristine


@pytest.fixture
def streamed_lake(streamed_template):
    """The module's streamed lake and landing as streamed, whatever the test before did to them.

    Every test here is refused before a query starts, so no Spark state outlives the files it restores."""
    root, pristine = streamed_template
    shutil.rmtree(root)
    shutil.copytree(pristine, root, symlinks=True)
    return root, root / "landing", LakePaths.from_roots(root / "lake", root / "landing")


def assert_one_clear_paragraph(error: StreamOperationError, *phrases: str) -> None:
    text = str(error)
    assert "\n" not in text and "org.apache" not in text and "Exception" not in text
    for phrase in phrases:
        assert phrase in text


def test_a_moved_landing_folder_is_refused_with_the_fix(spark, streamed_lake):
    root, landing, paths = streamed_lake
    before = zone_files(root / "lake")
    moved = root / "moved_landing"
    landing.rename(moved)
    with pytest.raises(LandingMovedError) as caught:
        bronze_stream.run(spark, LakePaths.from_roots(root / "lake", moved), AGAIN)
    assert_one_clear_paragraph(caught.value, str(landing), "Move the folder back", "rebuild the stream")
    assert zone_files(root / "lake") == before


def test_a_deleted_checkpoint_with_bronze_kept_is_refused_not_re_ingested(spark, streamed_lake):
    root, landing, paths = streamed_lake
    before = zone_files(root / "lake")
    shutil.rmtree(root / "lake" / "_checkpoints" / "bronze_usage_events")
    with pytest.raises(CheckpointMissingError) as caught:
        bronze_stream.run(spark, paths, AGAIN)
    assert_one_clear_paragraph(caught.value, "checkpoint", "is missing", "Restore the checkpoint")
    assert zone_files(root / "lake") == before and bronze(spark, paths).count() == 3


def test_two_lakes_sharing_one_checkpoint_are_refused(spark, streamed_lake):
    root, landing, paths = streamed_lake
    before = zone_files(root / "lake")
    other = root / "other_lake"
    (other / "_checkpoints").mkdir(parents=True)
    (other / "_checkpoints" / "bronze_usage_events").symlink_to(root / "lake" / "_checkpoints" / "bronze_usage_events")
    with pytest.raises(SharedCheckpointError) as caught:
        bronze_stream.run(spark, LakePaths.from_roots(other, landing), AGAIN)
    assert_one_clear_paragraph(caught.value, "belongs to another lake", "its own checkpoint")
    assert zone_files(root / "lake") == before and zone_files(other) == {}


def test_a_checkpoint_of_an_older_query_layout_is_refused_with_the_fix(spark, streamed_lake):
    """A checkpoint started by the three-source query (no `layout` in its owner file) cannot be resumed."""
    root, landing, paths = streamed_lake
    owner_file = root / "lake" / "_checkpoints" / "bronze_usage_events" / OWNER_FILE
    owner = json.loads(owner_file.read_text())
    assert owner.pop("layout") == 2
    owner_file.write_text(json.dumps(owner))
    owner_file.with_name(f".{OWNER_FILE}.crc").unlink()  # Hadoop's checksum of the old text
    (landing / "3.jsonl").write_text(f"{event('e4')}\n")
    before = zone_files(root / "lake")
    with pytest.raises(CheckpointLayoutError) as caught:
        bronze_stream.run(spark, paths, AGAIN)
    assert_one_clear_paragraph(caught.value, "older version", "layout 1", "rebuild the stream")
    assert zone_files(root / "lake") == before and bronze(spark, paths).count() == 3
