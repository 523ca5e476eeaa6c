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

from lakehouse_utils.config import COURSE_LANDING, PROJECT_ROOT

# Spark jobs per stage before issue 17 (commit 259a818), on the course data, counted the same
# way (every thread and streaming query) by `pipeline --stage all` in one process. Recorded once,
# because the old code is gone; every run measures the columns beside it.
JOBS_BEFORE = {"bronze_batch": 52, "bronze_stream": 14, "silver": 157, "gold": 45, "serving": 94}
JOBS_BEFORE_LABEL = "spark_jobs before (259a818)"
# Issue 17 targets for the whole command on the course data.
COURSE_WALL_TARGET, COURSE_STAGES_WITHOUT_SERVING_TARGET = 30.0, 20.0

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
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT,
                         env=os.environ | {"CASSANDRA_KEYSPACE": keyspace})
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    print(f"  course data, whole command: {wall:.1f}s wall")
    # Seconds mean little on a busy machine (job counts do not care): say how busy it was.
    load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    return {"landing": str(landing), "wall": round(wall, 2), "stages": parse_progress(out.stderr), "load": load,
            "jvm_archive": class_archive_built()}


def class_archive_built() -> bool:
    """Whether the command's JVM could start from the class archive (ADR 090.7): a few seconds either way."""
    from lakehouse_utils.jvm_archive import archive_path
    from lakehouse_utils.spark import ensure_java17

    return archive_path(ensure_java17()).is_file()


def default_course_landing() -> Path | None:
    return COURSE_LANDING if (COURSE_LANDING / "customers_orgs.csv").exists() else None


def course_markdown(course: dict | None) -> str:
    """The whole command on the course data: targets, then seconds and jobs per stage beside the recorded jobs."""
    import pandas as pd

    if course is None:
        return "(not measured: no course data found; pass --course-landing)"
    stages = pd.DataFrame(course["stages"])
    stages[JOBS_BEFORE_LABEL] = [JOBS_BEFORE.get(stage) for stage in stages["stage"]]
    without_serving = float(stages.loc[stages["stage"] != "serving", "seconds"].sum())
    total = {"stage": "TOTAL", "seconds": round(float(stages["seconds"].sum()), 2),
             "spark_jobs": stages["spark_jobs"].sum(min_count=1),
             JOBS_BEFORE_LABEL: sum(v for v in JOBS_BEFORE.values() if v is not None)}
    stages = pd.concat([stages, pd.DataFrame([total])], ignore_index=True)
    checks = pd.DataFrame([
        {"target": "whole command, wall seconds", "goal": COURSE_WALL_TARGET, "measured": course["wall"],
         "met": course["wall"] <= COURSE_WALL_TARGET},
        {"target": "stage seconds without serving", "goal": COURSE_STAGES_WITHOUT_SERVING_TARGET,
         "measured": round(without_serving, 2), "met": without_serving <= COURSE_STAGES_WITHOUT_SERVING_TARGET},
    ])
    for column in ("spark_jobs", JOBS_BEFORE_LABEL):  # whole numbers, blank when unknown
        stages[column] = [("" if pd.isna(value) else str(int(value))) for value in stages[column]]
    archive = {True: "used", False: "not built"}.get(course.get("jvm_archive"), "not recorded")
    return (f"`python -m lakehouse_utils pipeline --stage all` on `{course['landing']}` in a new process "
            f"(JVM start and serving included), into an empty lake. Load average (1 min) on {os.cpu_count()} cores: "
            f"{course.get('load', 'not recorded')}. JVM class archive (`make jvm-archive`): {archive}.\n\n"
            f"```\n{checks.to_string(index=False)}\n\n{stages.to_string(index=False)}\n```")


def configure_parser(parser) -> None:
    parser.add_argument("--course-landing", help="course data for the course section (default: COURSE_LANDING_DIR "
                                                 "or ../shared/course_landing)")


def section(settings, args) -> str:
    """The `course` section of docs/performance.md."""
    from datetime import datetime, timezone

    landing = Path(args.course_landing) if getattr(args, "course_landing", None) else default_course_landing()
    course = course_command(landing, Path(args.cache_dir), settings.cassandra_keyspace) if landing else None
    return (f"## Course data, the whole command (issue #17)\n\nMeasured by `python -m lakehouse_utils benchmark "
            f"--sections course` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. {course_markdown(course)}\n")
