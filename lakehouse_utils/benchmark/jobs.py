"""Counting Spark jobs: the load-independent measure of a stage's fixed cost.

On 2 cores a small stage's time is mostly job latency (planning, task launch, commit),
so the number of jobs shows a regression that wall time on a shared machine hides.
"""

from __future__ import annotations

from pyspark.sql import SparkSession


def jobs_submitted(spark: SparkSession) -> int | None:
    """How many jobs this SparkContext has submitted so far, in every thread, or None if unknown.

    Job ids are consecutive, so the next id is the count. Streaming queries and the threads
    that write masters in parallel run jobs under their own job groups, which a per-group
    count would miss. Falls back to the largest id the status tracker still holds.
    """
    sc = spark.sparkContext
    try:
        return int(sc._jsc.sc().dagScheduler().numTotalJobs())
    except Exception:  # noqa: BLE001 - internal API; the status tracker is the public fallback
        pass
    try:
        store_jobs = sc._jsc.sc().statusStore().jobsList(None)
        return max((store_jobs.apply(i).jobId() for i in range(store_jobs.size())), default=-1) + 1
    except Exception:  # noqa: BLE001 - e.g. Spark Connect, where the driver is remote
        return None


class JobCounter:
    """`with JobCounter(spark, "silver") as jobs: ...` then `jobs.count` (None if unknown).

    Also sets a job group named after what is measured, so the jobs are easy to find in
    the Spark UI (SPARK_UI_ENABLED=true) or the status tracker.
    """

    def __init__(self, spark: SparkSession, group: str) -> None:
        self.spark = spark
        self.group = group
        self.count: int | None = None
        self._start: int | None = None

    def __enter__(self) -> JobCounter:
        self.spark.sparkContext.setJobGroup(self.group, self.group)
        self._start = jobs_submitted(self.spark)
        return self

    def __exit__(self, *exc) -> None:
        end = jobs_submitted(self.spark)
        self.count = end - self._start if end is not None and self._start is not None else None
        self.spark.sparkContext._jsc.clearJobGroup()
