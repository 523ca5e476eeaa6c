"""Raw JSONL lines of `usage_events_stream` -> classified, typed event rows.

Every raw line yields one row with a `line_kind`: `blank`, `malformed_json`,
`not_a_json_object` or `event`. Only `event` rows carry parsed fields. Works on a
streaming or a static DataFrame with the columns of `LINE_COLUMNS`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse_utils.contracts.bronze import (  # noqa: F401
    BRONZE_EVENTS_COLUMNS,
    BRONZE_EVENTS_SCHEMA,
    BRONZE_PARTITION,
    EVENT_FIELDS,
    RAW_QUARANTINE_SCHEMA,
)

# Bronze's event schemas live in lakehouse_utils.contracts; bronze.stream* import them from here.
from lakehouse_utils.contracts.landing import REPLACEMENT_CHARACTER

KIND_BLANK, KIND_MALFORMED, KIND_NOT_OBJECT, KIND_EVENT = "blank", "malformed_json", "not_a_json_object", "event"
CORRUPT_COLUMN = "_corrupt_record"

# Input of `parse_lines`: one raw line, its file, its 1-based line number in that file and the
# file's modification time (arrival order needs the last three).
LINE_COLUMNS = ("raw_line", "source_file", "line_number", "file_modification_time")

# `value` is a string on purpose: Spark hands a JSON number to a string field as its text
# (normalised to Java's double form: 1E+3 -> "1000.0"), so the value survives whether it
# arrived as 4.0 or "4.0". Unknown extra fields are ignored.
EVENT_JSON_SCHEMA = T.StructType([
    T.StructField("event_id", T.StringType()),
    T.StructField("timestamp", T.StringType()),
    T.StructField("org_id", T.StringType()),
    T.StructField("resource_id", T.StringType()),
    T.StructField("service", T.StringType()),
    T.StructField("region", T.StringType()),
    T.StructField("metric", T.StringType()),
    T.StructField("value", T.StringType()),
    T.StructField("unit", T.StringType()),
    T.StructField("cost_usd_increment", T.DoubleType()),
    T.StructField("schema_version", T.IntegerType()),
    T.StructField("carbon_kg", T.DoubleType()),
    T.StructField("genai_tokens", T.LongType()),
    T.StructField(CORRUPT_COLUMN, T.StringType()),
])
JSON_OPTIONS = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COLUMN}

# JSON field -> parsed column, to re-serialise an event whose raw text was not kept.
_RENAMED = {"timestamp": "timestamp_raw", "value": "value_raw"}
JSON_FIELD_COLUMNS = tuple(
    (f.name, _RENAMED.get(f.name, f.name)) for f in EVENT_JSON_SCHEMA.fields if f.name != CORRUPT_COLUMN
)

HASHED_FIELDS = tuple(name for name, _ in EVENT_FIELDS if name != "event_ts") + ("type_error_line",)

# Byte-order mark and CR: Hadoop's line reader already drops a leading BOM and CRLF, but a
# BOM in the middle of a concatenated file or a lone CR would still break the JSON parser.
_INVISIBLE_EDGES = "\ufeff\r"
_BLANK_CHARACTERS = " \t\r\n\ufeff"
# ISO-8601 forms that the lenient timestamp cast does not take (minute precision).
_EXTRA_TIMESTAMP_PATTERNS = ("yyyy-MM-dd'T'HH:mmXXX", "yyyy-MM-dd'T'HH:mm")


# Hadoop's line reader ends a line at LF, CR or CRLF; a final terminator ends the last line.
_LINE_BREAK = r"\r\n|\r|\n"


def split_files(files: DataFrame) -> DataFrame:
    """Whole files (`value`, `source_file`, `file_modification_time`) -> one row per line, numbered from 1.

    Reading files whole gives every line its exact number in its file, which a streaming
    plan cannot compute otherwise (`monotonically_increasing_id` is not allowed there).
    """
    # A final line break ends the last line, it does not start an empty one: split, then drop the one
    # empty piece after it. Removing the break first with a `$`-anchored regex walked every file twice,
    # and Java's `$` also matches before a final terminator, so a blank last line (`a\n\n`) was lost.
    # Most files have no CR: a one-character pattern takes Java's split fast path, not the regex
    # engine, whose alternation over every character of the file was a quarter of the stream's CPU.
    value = F.col("value")
    split = F.when(value.contains("\r"), F.split(value, _LINE_BREAK, -1)).otherwise(F.split(value, "\n", -1))
    pieces = F.col("_pieces")  # a column of its own: split once, then read three times
    ends_with_break = F.element_at(pieces, -1) == F.lit("")
    # (an empty file splits into one empty piece, dropped the same way: no line)
    lines = F.when(ends_with_break, F.slice(pieces, 1, F.size(pieces) - 1)).otherwise(pieces)
    with_pieces = files.select("source_file", "file_modification_time", split.alias("_pieces"))
    exploded = with_pieces.select("source_file", "file_modification_time",
                                  F.posexplode(lines).alias("_pos", "raw_line"))
    return exploded.select("raw_line", "source_file", (F.col("_pos") + 1).cast(T.LongType()).alias("line_number"),
                           "file_modification_time")


def clean_line(raw: Column) -> Column:
    """The line without a BOM at its start and CRs at its end.

    Trimming a set of characters copies the whole line (Spark indexes every character first); most
    lines have neither at an edge, so two byte comparisons at each end decide first.
    """
    edges = F.lit(_INVISIBLE_EDGES)
    at_an_edge = F.lit(False)
    for character in _INVISIBLE_EDGES:
        at_an_edge = at_an_edge | F.startswith(raw, F.lit(character)) | F.endswith(raw, F.lit(character))
    return F.when(at_an_edge, F.btrim(raw, edges)).otherwise(raw)


def parse_event_time(text: Column) -> Column:
    """UTC timestamp from ISO-8601 text; null when it does not parse.

    The lenient cast takes `Z`, offsets (converted to UTC), fractional seconds, a space
    instead of `T` and a bare date; text without a zone is read in the session time zone,
    which `spark.py` pins to UTC.
    """
    candidates = [text.try_cast(T.TimestampType())]
    candidates += [F.try_to_timestamp(text, F.lit(pattern)) for pattern in _EXTRA_TIMESTAMP_PATTERNS]
    return F.coalesce(*candidates)


CONTENT_HASH_CHARS = 64  # sha2-256 in hex


def content_hash(*columns: str) -> Column:
    """sha2-256 of the fields; a null is encoded apart from every string so (null, 'a') != ('a', null)."""
    parts = [F.coalesce(F.col(name).cast(T.StringType()), F.lit("\u0000")) for name in columns]
    return F.sha2(F.concat_ws("\u001f", *parts), 256)


def line_kind(line: Column, corrupt: Column) -> Column:
    """Classify one cleaned line given Spark's corrupt-record column.

    Spark 4.1 fills the corrupt-record column for truncated JSON, garbage, arrays and
    scalars alike, but also for a valid object with one field of the wrong type (it keeps
    the other fields). `try_parse_json` then tells invalid JSON from valid non-objects; it
    only runs on corrupt lines because CASE evaluates a branch only when it is taken.
    """
    stripped = F.btrim(line, F.lit(_BLANK_CHARACTERS))
    # A line that starts with `{` is not blank: the usual case skips the trim.
    is_blank = ~F.startswith(line, F.lit("{")) & (stripped == F.lit(""))
    is_corrupt = corrupt.isNotNull()
    is_valid_json = F.try_parse_json(stripped).isNotNull()
    is_object_text = F.startswith(stripped, F.lit("{"))
    # Splitting a file into lines decodes it (`REPLACEMENT_CHARACTER` where bytes are not UTF-8): such a line is not
    # the JSON text that was sent (`malformed_json`'s reason names a broken encoding).
    not_utf8 = F.contains(line, F.lit(REPLACEMENT_CHARACTER))
    return (
        F.when(is_blank, F.lit(KIND_BLANK))
        .when(not_utf8, F.lit(KIND_MALFORMED))
        .when(~is_corrupt, F.lit(KIND_EVENT))
        .when(~is_valid_json, F.lit(KIND_MALFORMED))
        .when(~is_object_text, F.lit(KIND_NOT_OBJECT))
        .otherwise(F.lit(KIND_EVENT))  # a valid object with a mistyped field: kept, see type_error_line
    )


def parse_lines(lines: DataFrame) -> DataFrame:
    """One row per raw line: its kind, and the typed event fields when it is an event.

    `raw_line` stays only on non-event lines; a mistyped event keeps it in `type_error_line`.
    """
    line = clean_line(F.col("raw_line"))
    parsed = F.from_json(line, EVENT_JSON_SCHEMA, JSON_OPTIONS)
    with_json = lines.select(*LINE_COLUMNS, line.alias("_line"), parsed.alias("_json"))
    kind = line_kind(F.col("_line"), F.col(f"_json.{CORRUPT_COLUMN}"))
    classified = with_json.select(*LINE_COLUMNS, "_json", kind.alias("line_kind"))
    is_event = F.col("line_kind") == KIND_EVENT

    def field(name: str) -> Column:
        return F.when(is_event, F.col(f"_json.{name}"))

    # The raw text is kept only where no parsed field carries it: it would double the cached batch.
    typed = classified.select(
        F.when(~is_event, F.col("raw_line")).alias("raw_line"), *LINE_COLUMNS[1:], "line_kind",
        field("event_id").alias("event_id"),
        parse_event_time(field("timestamp")).alias("event_ts"),
        field("timestamp").alias("timestamp_raw"),
        *[field(name).alias(name) for name in ("org_id", "resource_id", "service", "region", "metric", "unit")],
        field("value").alias("value_raw"),
        *[field(name).alias(name) for name in ("cost_usd_increment", "schema_version", "carbon_kg", "genai_tokens")],
        field(CORRUPT_COLUMN).alias("type_error_line"),
    )
    return typed.withColumn("content_hash", F.when(is_event, content_hash(*HASHED_FIELDS)))
