"""Issue 17's target as a user meets it: the whole `pipeline --stage all` command on the course data.

Run in a new process, so JVM start and serving are included, into an empty lake; per stage,
the seconds and Spark jobs come from the command's own progress lines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lakehouse_utils.config import PROJECT_ROOT

# A progress line of `pipeline` (stderr), e.g. "  silver: 12.3s, 40 Spark jobs".
PROGRESS_LINE = re.compile(r"^\s+(\w+): ([\d.]+)s, (\d+|None) Spark jobs$", re.M)


def parse_progress(stderr: str) -> list[dict]:
    return [{"stage": stage, "seconds": float(seconds), "spark_jobs": None if jobs == "None" else int(jobs)}
            for stage, seconds, jobs in PROGRESS_LINE.findall(stderr)]


def course_command(landing: Path, cache_dir: Path, keyspace: str) -> dict:
    """Wall seconds of the whole command, and seconds and Spark jobs per stage."""
    lake = cache_dir / "lake_course"
    shutil.rmtree(lake, ignore_errors=True)
    command = [sys.executable, "-m", "lakehouse_utils", "pipeline", "--landing", str(landing), "--lake", str(lake),
               "--stage", "all"]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT,
                         env=os.environ | {"CASSANDRA_KEYSPACE": keyspace})
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    print(f"  course data, whole command: {wall:.1f}s wall")
    return {"landing": str(landing), "wall": round(wall, 2), "stages": parse_progress(out.stderr)}


def default_course_landing() -> Path | None:
    folder = Path(os.environ.get("COURSE_LANDING_DIR") or PROJECT_ROOT.parent / "shared" / "course_landing")
    return folder if (folder / "customers_orgs.csv").exists() else None
