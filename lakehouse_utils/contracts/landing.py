"""Landing CSV contract of the seven masters: header in file order, target types, natural keys.

This is the one place the CSV headers are written out: Bronze checks landing files
against it and the generator writes its files from it. Bronze types follow
docs/table_contracts.md: dates are `date`, `True`/`False` are `boolean`, every number
is `double` (the landing writes integral values as `4.0`, and none of the master
numbers is a counter).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pyspark.sql import types as T

_S, _D, _B, _N = T.StringType(), T.DateType(), T.BooleanType(), T.DoubleType()
# Landing files are UTF-8. Spark's readers decode them and put this character where bytes are not UTF-8, so a
# record or line holding it is not the text that was sent (Bronze quarantines it).
REPLACEMENT_CHARACTER = "\ufffd"
# A number of the landing, as text: plain decimal or scientific notation. A bare cast to double would also accept
# NaN and Infinity, which no cost or usage value may be (the master CSVs and the events' `value` both use it).
NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


@dataclass(frozen=True)
class MasterSchema:
    """One landing master: ordered (name, type) columns, its natural key and its grain."""

    source: str
    columns: tuple[tuple[str, T.DataType], ...]
    key: tuple[str, ...]
    grain: str

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def dtype(self, column: str) -> T.DataType:
        return dict(self.columns)[column]

    def struct(self) -> T.StructType:
        """The typed business columns, as Bronze stores them (before the technical columns)."""
        return T.StructType([T.StructField(name, dtype, True) for name, dtype in self.columns])


MASTER_SCHEMAS: dict[str, MasterSchema] = {
    schema.source: schema
    for schema in (
        MasterSchema(
            "customers_orgs",
            (("org_id", _S), ("org_name", _S), ("industry", _S), ("hq_region", _S), ("plan_tier", _S),
             ("is_enterprise", _B), ("signup_date", _D), ("sales_rep", _S), ("lifecycle_stage", _S),
             ("marketing_source", _S), ("nps_score", _N)),
            ("org_id",), "one row per organisation",
        ),
        MasterSchema(
            "users",
            (("user_id", _S), ("org_id", _S), ("email", _S), ("role", _S), ("active", _B),
             ("created_at", _D), ("last_login", _D)),
            ("user_id",), "one row per user",
        ),
        MasterSchema(
            "resources",
            (("resource_id", _S), ("org_id", _S), ("service", _S), ("region", _S), ("created_at", _D),
             ("state", _S), ("tags_json", _S)),
            ("resource_id",), "one row per cloud resource",
        ),
        MasterSchema(
            "support_tickets",
            (("ticket_id", _S), ("org_id", _S), ("category", _S), ("severity", _S), ("created_at", _D),
             ("resolved_at", _D), ("csat", _N), ("sla_breached", _B)),
            ("ticket_id",), "one row per support ticket",
        ),
        MasterSchema(
            "marketing_touches",
            (("touch_id", _S), ("org_id", _S), ("campaign", _S), ("channel", _S), ("timestamp", _D),
             ("clicked", _B), ("converted", _B)),
            ("touch_id",), "one row per marketing touch",
        ),
        MasterSchema(
            "nps_surveys",
            (("org_id", _S), ("survey_date", _D), ("nps_score", _N), ("comment", _S)),
            ("org_id", "survey_date"), "one row per organisation and survey date",
        ),
        MasterSchema(
            "billing_monthly",
            (("invoice_id", _S), ("org_id", _S), ("month", _D), ("subtotal", _N), ("credits", _N),
             ("taxes", _N), ("currency", _S), ("exchange_rate_to_usd", _N)),
            ("invoice_id",), "one row per invoice (organisation and month)",
        ),
    )
}

# Processing order of bronze_batch; orgs first so that a notebook shows the main dimension first.
MASTER_SOURCES: tuple[str, ...] = tuple(MASTER_SCHEMAS)

TECHNICAL_COLUMNS: tuple[tuple[str, T.DataType], ...] = (
    ("ingest_ts", T.TimestampType()),
    ("source_file", _S),
    ("run_id", _S),
)


def csv_header(source: str) -> list[str]:
    """The header line's columns of `<source>.csv`, in file order."""
    return master_schema(source).column_names


def master_schema(source: str) -> MasterSchema:
    if source not in MASTER_SCHEMAS:
        raise ValueError(f"unknown master {source!r}; expected one of {', '.join(MASTER_SOURCES)}")
    return MASTER_SCHEMAS[source]


def header_problems(expected: list[str], found: list[str]) -> list[str]:
    """Why a header does not match the contract; empty when it does.

    The same set of columns in another order is accepted (the reader maps by
    name); a missing, extra or repeated column is a problem.
    """
    expected_counts, found_counts = Counter(expected), Counter(found)
    missing = sorted((expected_counts - found_counts).elements())
    extra = sorted((found_counts - expected_counts).elements())
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if extra:
        problems.append(f"unexpected column(s) {extra}")
    return problems
