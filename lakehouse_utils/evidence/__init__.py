"""Evidence a grader reads: inventories of every zone and Cassandra table, re-run checks."""

from __future__ import annotations

from pyspark.sql import DataFrame


def first_rows(df: DataFrame, n: int) -> DataFrame:
    """The first `n` rows of `df` in the order of its columns (the keys lead every zone table).

    A bare `limit(n)` returns whichever rows the first file holds, which changes with how
    the table was written: a re-executed notebook would show other rows for the same data.
    Spark plans the ordered limit as a top-n: one pass, no full sort. Maps do not order.
    """
    orderable = [f.name for f in df.schema.fields if "map<" not in f.dataType.simpleString()]
    return df.orderBy(*orderable).limit(n)
