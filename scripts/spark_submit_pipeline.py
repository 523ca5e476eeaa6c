"""spark-submit entry point: `spark-submit scripts/spark_submit_pipeline.py --lake s3a://... --landing s3a://...`.

Same options as `python -m lakehouse_utils pipeline`; the session spark-submit creates is reused
(lakehouse_utils.spark.get_spark only applies the SQL settings to it).
"""

import sys

from lakehouse_utils.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
