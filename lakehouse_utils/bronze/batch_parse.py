"""Parsing and classification of one landing CSV master for bronze_batch.

Every field is read as text and cast here, so that a value that does not fit its
type is caught with its column and text instead of silently becoming null. The
result has one status per record: ok, duplicate, superseded or unparsable.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils.contracts import MasterSchema
from lakehouse_utils.contracts.landing import NUMBER_PATTERN, REPLACEMENT_CHARACTER

CORRUPT = "_corrupt_record"
ROW_ID = "_row_id"
RAW_PREFIX = "_raw_"
DATE_FORMAT = "yyyy-MM-dd"
TYPE_NAMES = {"date": "date (YYYY-MM-DD)", "boolean": "boolean (True/False)", "double": "number"}
MALFORMED = "malformed CSV record (wrong number of fields or unbalanced quotes)"
NOT_UTF8 = ("record is not valid UTF-8 (bytes that are not UTF-8 were replaced by U+FFFD): save the file as UTF-8 "
            "and run bronze_batch again")

# Record status after classification; only `ok` records reach Bronze.
OK, DUPLICATE, SUPERSEDED, UNPARSABLE = "ok", "duplicate", "superseded", "unparsable"


def raw_name(column: str) -> str:
    return RAW_PREFIX + column


def read_raw(spark: SparkSession, uri: str, header: tuple[str, ...]) -> DataFrame:
    """Every field as text, named after the file's header order, with the position of each record.

    multiLine makes the file one non-splittable partition read front to back by one
    task, so monotonically_increasing_id taken right after the scan is 0..n-1 in file order.
    """
    fields = [T.StructField(raw_name(name), T.StringType(), True) for name in header]
    schema = T.StructType([*fields, T.StructField(CORRUPT, T.StringType(), True)])
    raw_df = (
        spark.read.schema(schema)
        .options(header=True, multiLine=True, quote='"', escape='"', mode="PERMISSIVE",
                 columnNameOfCorruptRecord=CORRUPT, encoding="UTF-8")
        .csv(uri)
    )
    return raw_df.select("*", F.monotonically_increasing_id().alias(ROW_ID))


def typed_value(raw: Column, dtype: T.DataType) -> Column:
    """One landing field cast to its contract type; null when empty or not parsable."""
    trimmed = F.trim(raw)
    if isinstance(dtype, T.DateType):
        return F.try_to_date(trimmed, DATE_FORMAT)
    if isinstance(dtype, T.BooleanType):
        lowered = F.lower(trimmed)
        return F.when(lowered == "true", F.lit(True)).when(lowered == "false", F.lit(False))
    if isinstance(dtype, T.DoubleType):
        return F.when(trimmed.rlike(NUMBER_PATTERN), trimmed.try_cast("double"))
    return raw


def cast_problem(name: str, dtype: T.DataType) -> Column:
    """Why a field failed its cast, or null: a non-empty text that did not become a value."""
    raw = F.col(raw_name(name))
    has_text = F.trim(raw) != ""
    failed = has_text & typed_value(raw, dtype).isNull()
    type_name = TYPE_NAMES.get(dtype.typeName(), dtype.typeName())
    return F.when(failed, F.concat(F.lit(f"column {name}: '"), raw, F.lit(f"' is not a valid {type_name}")))


def empty_key_problem(name: str) -> Column:
    """Judged on the text: a key that is present but unparsable is already reported by its cast."""
    is_empty = F.coalesce(F.trim(F.col(raw_name(name))), F.lit("")) == ""
    return F.when(is_empty, F.lit(f"key column {name} is empty"))


def csv_field(raw: Column) -> Column:
    """A field as CSV text: quoted (inner quotes doubled) when it holds a comma, quote or newline."""
    needs_quotes = raw.rlike('[",\r\n]')
    quoted = F.concat(F.lit('"'), F.regexp_replace(raw, '"', '""'), F.lit('"'))
    return F.when(raw.isNull(), F.lit("")).when(needs_quotes, quoted).otherwise(raw)


def record_start_lines(spark: SparkSession, uri: str) -> DataFrame:
    """(record_number, line_number) read from the file's physical lines.

    The CSV reader skips empty lines without a trace, so counting records and their
    embedded newlines drifts after a blank line. A record starts on a non-empty line
    (after the header) that begins outside quotes: an even number of `"` before it
    (an escaped `""` adds two, so it keeps the parity).
    """
    lines = spark.read.text(uri).select(F.col("value").alias("_text"), F.monotonically_increasing_id().alias("_pos"))
    quotes = F.length("_text") - F.length(F.regexp_replace("_text", '"', ""))
    earlier = Window.orderBy("_pos").rowsBetween(Window.unboundedPreceding, -1)
    numbered = lines.select(
        "_text",
        F.row_number().over(Window.orderBy("_pos")).alias("line_number"),
        F.coalesce(F.sum(quotes).over(earlier), F.lit(0)).alias("_quotes_before"),
    )
    is_after_header = F.col("line_number") > 1
    is_outside_quotes = F.col("_quotes_before") % 2 == 0
    is_empty = F.col("_text") == ""
    starts = numbered.where(is_after_header & is_outside_quotes & ~is_empty)
    return starts.select(F.row_number().over(Window.orderBy("line_number")).alias("record_number"), "line_number")


def with_parse_result(
    raw_df: DataFrame, schema: MasterSchema, header: tuple[str, ...], start_lines: DataFrame | None = None
) -> DataFrame:
    """Typed columns, raw_line, line and record numbers, and the parse problems of each record.

    `start_lines` (from `record_start_lines`) gives exact line numbers; without it, or for a
    record it does not list, the line is counted from the records and their embedded newlines.
    """
    rebuilt_line = F.concat_ws(",", *[csv_field(F.col(raw_name(name))) for name in header])
    newlines = F.length("raw_line") - F.length(F.regexp_replace("raw_line", "\n", ""))
    # One partition per file (see read_raw), so an unpartitioned window moves no data.
    earlier = Window.orderBy(ROW_ID).rowsBetween(Window.unboundedPreceding, -1)
    malformed = F.when(F.col(CORRUPT).isNotNull(), F.lit(MALFORMED))
    not_utf8 = F.when(F.col("raw_line").contains(REPLACEMENT_CHARACTER), F.lit(NOT_UTF8))
    cast_problems = [cast_problem(n, d) for n, d in schema.columns if not isinstance(d, T.StringType)]
    typed_df = raw_df.select(
        "*",
        *[typed_value(F.col(raw_name(name)), dtype).alias(name) for name, dtype in schema.columns],
        F.coalesce(F.col(CORRUPT), rebuilt_line).alias("raw_line"),
    )
    # A record spans 1 + its embedded newlines lines; line 1 is the header.
    counted_line = F.col(ROW_ID) + 2 + F.coalesce(F.sum(newlines).over(earlier), F.lit(0))
    parsed_df = typed_df.select(
        "*",
        (F.col(ROW_ID) + 1).alias("record_number"),
        counted_line.alias("line_number"),
        F.concat_ws("; ", malformed, not_utf8, *cast_problems,
                    *[empty_key_problem(k) for k in schema.key]).alias("problems"),
    )
    if start_lines is None:
        return parsed_df
    exact = start_lines.select("record_number", F.col("line_number").alias("_start_line"))
    joined = parsed_df.join(exact, on="record_number", how="left")
    return joined.select(*[F.coalesce("_start_line", "line_number").alias(c) if c == "line_number" else c
                           for c in parsed_df.columns])


def with_status(parsed_df: DataFrame, schema: MasterSchema) -> DataFrame:
    """Status of each record, the winning line of its key, and its key as text."""
    is_unparsable = F.col("problems") != ""
    # The last copy stands for a group of identical lines; an unparsable line never stands for a good one.
    same_content = Window.partitionBy("is_unparsable", *[raw_name(n) for n in schema.column_names])
    is_exact_duplicate = ~F.col("is_unparsable") & (F.col(ROW_ID) != F.max(ROW_ID).over(same_content))
    flagged_df = parsed_df.select("*", is_unparsable.alias("is_unparsable")).select(
        "*", is_exact_duplicate.alias("is_exact_duplicate")
    )
    competes = ~F.col("is_unparsable") & ~F.col("is_exact_duplicate")
    same_key = Window.partitionBy(*schema.key)
    ranked_df = flagged_df.select(
        "*",
        F.max(F.when(competes, F.col(ROW_ID))).over(same_key).alias("winner_row_id"),
        F.max(F.when(competes, F.col("line_number"))).over(same_key).alias("winner_line"),
    )
    status = (
        F.when(F.col("is_unparsable"), F.lit(UNPARSABLE))
        .when(F.col("is_exact_duplicate"), F.lit(DUPLICATE))
        .when(F.col(ROW_ID) != F.col("winner_row_id"), F.lit(SUPERSEDED))
        .otherwise(F.lit(OK))
    )
    key_text = F.concat_ws(", ", *[F.concat(F.lit(f"{k}="), F.col(k).cast("string")) for k in schema.key])
    return ranked_df.select("*", status.alias("status"), key_text.alias("key_text"))
