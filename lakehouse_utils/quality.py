"""Data-quality rules as data, and the one engine that applies them to any table.

A `Rule` states what a *passing* row looks like (a Spark SQL boolean expression, a
Column builder, or a reference to a key of another table) and what happens to a row
that fails it:

- `quarantine`: the row leaves the table and goes to quarantine with `rule`/`reason`;
- `flag`: the row stays and its flag column is set to true;
- `impute`: the row stays, `columns[0]` gets the rule's `fix` and the flag is set.

Semantics shared by every table: a predicate that evaluates to NULL counts as a
failure (so predicates say explicitly what to do with nulls), and every predicate
sees the row as it came in, before any imputation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

ACTIONS = ("quarantine", "flag", "impute")
Predicate = str | Callable[[], Column]


class RuleDefinitionError(ValueError):
    """A rule list is inconsistent (unknown action, missing flag/fix, duplicate name...)."""


@dataclass(frozen=True)
class Rule:
    """One data-quality rule. `predicate` is TRUE for a row that passes."""

    name: str
    table: str
    columns: tuple[str, ...]
    action: str
    description: str
    predicate: Predicate | None = None
    reference: tuple[str, str] | None = None  # (table, key): columns[0] must exist in it
    flag: str | None = None  # flag column set when the rule fails (flag / impute)
    fix: Predicate | None = None  # impute: new value of columns[0]
    # Uniqueness: `columns` is the key and the first row by this SQL order passes; rows with a null or
    # blank key pass (the not-null rule owns them). Given instead of predicate and reference.
    unique_order: str | None = None
    # For a uniqueness rule on a large table whose keys rarely repeat: one narrow job looks for a
    # repeated key first, and only if there is one does the ranking window (a sort of every row) run.
    check_repeats_first: bool = False


@dataclass
class QualityCounts:
    """What one `apply_rules` call did: input rows, quarantined rows, failures per rule."""

    rows_in: int
    quarantined: int
    by_rule: dict[str, int]
    actions: dict[str, str] = field(default_factory=dict)
    cached: DataFrame | None = field(default=None, repr=False)  # the persisted rows when persist=True
    also: dict = field(default_factory=dict)  # the caller's extra aggregates, computed by the same job

    @property
    def valid(self) -> int:
        return self.rows_in - self.quarantined

    def by_action(self) -> dict[str, dict[str, int]]:
        """{"quarantine": {rule: n}, "flag": {...}, "impute": {...}} for reports."""
        grouped: dict[str, dict[str, int]] = {action: {} for action in ACTIONS}
        for name, failures in self.by_rule.items():
            grouped[self.actions[name]][name] = failures
        return grouped

    def release(self) -> None:
        """Drop the cache that `apply_rules(..., persist=True)` kept for the valid/quarantine frames."""
        if self.cached is not None:
            self.cached.unpersist()
            self.cached = None


def validate_rules(rules: list[Rule], references: dict[str, DataFrame] | None = None) -> None:
    """Reject a rule list that the engine could not apply unambiguously."""
    seen: set[str] = set()
    for rule in rules:
        where = f"rule {rule.name!r} ({rule.table})"
        if rule.name in seen:
            raise RuleDefinitionError(f"{where}: duplicate rule name")
        seen.add(rule.name)
        if rule.action not in ACTIONS:
            raise RuleDefinitionError(f"{where}: action {rule.action!r} is not one of {ACTIONS}")
        if sum(part is not None for part in (rule.predicate, rule.reference, rule.unique_order)) != 1:
            raise RuleDefinitionError(f"{where}: give exactly one of predicate, reference or unique_order")
        if rule.check_repeats_first and rule.unique_order is None:
            raise RuleDefinitionError(f"{where}: check_repeats_first applies to a uniqueness rule (unique_order)")
        if rule.action != "quarantine" and not rule.flag:
            raise RuleDefinitionError(f"{where}: a {rule.action} rule needs a flag column")
        if rule.action == "impute" and (rule.fix is None or not rule.columns):
            raise RuleDefinitionError(f"{where}: an impute rule needs columns[0] and a fix")
        if rule.reference is not None and rule.reference[0] not in (references or {}):
            raise RuleDefinitionError(f"{where}: reference table {rule.reference[0]!r} was not supplied")


def _as_column(expression: Predicate) -> Column:
    return F.expr(expression) if isinstance(expression, str) else expression()


def _pass_col(rule: Rule) -> str:
    return f"__dq_pass_{rule.name}"


def _with_reference_matches(df: DataFrame, rules: list[Rule], references: dict[str, DataFrame]) -> DataFrame:
    """Left-join the distinct keys of each referenced table; a match marks the row as passing."""
    for rule in rules:
        if rule.reference is None:
            continue
        table, key = rule.reference
        key_alias, match_alias = f"__dq_key_{rule.name}", f"__dq_ref_{rule.name}"
        # distinct() keeps the join 1:1, so a reference can never multiply rows
        lookup = (
            references[table]
            .select(F.col(key).alias(key_alias))
            .distinct()
            .withColumn(match_alias, F.lit(True))
        )
        df = df.join(F.broadcast(lookup), F.col(rule.columns[0]) == F.col(key_alias), how="left").drop(key_alias)
    return df


def _blank_key(rule: Rule) -> str:
    """SQL: some key column of a uniqueness rule is null or blank (such rows never compete)."""
    return " OR ".join(f"{k} IS NULL OR trim(CAST({k} AS STRING)) = ''" for k in rule.columns)


def _first_of_key(rule: Rule) -> str:
    return f"row_number() OVER (PARTITION BY {', '.join(rule.columns)} ORDER BY {rule.unique_order}) = 1"


def _keys_repeat(df: DataFrame, rule: Rule) -> bool:
    """Does any non-blank key of `rule` occur twice in `df`? One job over the key columns only."""
    return max_key_count(df.filter(f"NOT ({_blank_key(rule)})"), rule.columns) > 1


def _passes(rule: Rule, keys_unique: set[str]) -> Column:
    if rule.reference is not None:
        return F.col(f"__dq_ref_{rule.name}").isNotNull()
    if rule.unique_order is not None:
        if rule.name in keys_unique:
            return F.lit(True)  # no key repeats: every row is the first of its key
        return F.coalesce(F.expr(f"({_blank_key(rule)}) OR {_first_of_key(rule)}"), F.lit(False))
    return F.coalesce(_as_column(rule.predicate), F.lit(False))


def _annotate(df: DataFrame, rules: list[Rule], references: dict[str, DataFrame], check_repeats: bool = True
              ) -> DataFrame:
    """Input columns plus one pass column per rule and the quarantine verdict."""
    keys_unique = {rule.name for rule in rules
                   if check_repeats and rule.check_repeats_first and not _keys_repeat(df, rule)}
    joined = _with_reference_matches(df, rules, references)
    with_passes = joined.select(*df.columns, *[_passes(rule, keys_unique).alias(_pass_col(rule)) for rule in rules])
    blocking = [rule for rule in rules if rule.action == "quarantine"]
    failed_names = [F.when(~F.col(_pass_col(r)), F.lit(r.name)) for r in blocking]
    failed_reasons = [F.when(~F.col(_pass_col(r)), F.lit(r.description)) for r in blocking]
    return with_passes.select(
        "*",
        F.concat_ws(",", *failed_names).alias("rule") if blocking else F.lit("").alias("rule"),
        F.concat_ws("; ", *failed_reasons).alias("reason") if blocking else F.lit("").alias("reason"),
    ).withColumn("__dq_quarantined", F.col("rule") != F.lit(""))


def _apply_fixes(df: DataFrame, rules: list[Rule]) -> DataFrame:
    """Flag and impute rules, in list order, on the rows that stay."""
    assigned: set[str] = set()
    for rule in rules:
        failed = ~F.col(_pass_col(rule))
        if rule.action == "impute":
            target = rule.columns[0]
            df = df.withColumn(target, F.when(failed, _as_column(rule.fix)).otherwise(F.col(target)))
        if rule.action in ("flag", "impute"):
            # several rules may share one flag: it is true when any of them failed
            df = df.withColumn(rule.flag, (F.col(rule.flag) | failed) if rule.flag in assigned else failed)
            assigned.add(rule.flag)
    return df


def _count(annotated: DataFrame, rules: list[Rule], also: dict[str, Column] | None = None) -> QualityCounts:
    """One aggregation job: total rows, quarantined rows, failures of every rule, and `also`.

    A quarantine rule counts every row failing it; a flag or impute rule counts only
    the rows it actually marked, i.e. the rows that stay in the table.
    """
    kept = ~F.col("__dq_quarantined")

    def failures(rule: Rule) -> Column:
        failed = ~F.col(_pass_col(rule))
        counted = failed if rule.action == "quarantine" else failed & kept
        return F.sum(F.when(counted, 1).otherwise(0)).alias(rule.name)

    row = annotated.agg(
        F.count(F.lit(1)).alias("__rows"),
        F.sum(F.when(F.col("__dq_quarantined"), 1).otherwise(0)).alias("__quarantined"),
        *[failures(rule) for rule in rules],
        *[aggregate.alias(f"__also_{name}") for name, aggregate in (also or {}).items()],
    ).first()
    return QualityCounts(
        rows_in=int(row["__rows"]),
        quarantined=int(row["__quarantined"] or 0),
        by_rule={r.name: int(row[r.name] or 0) for r in rules},
        actions={r.name: r.action for r in rules},
        also={name: row[f"__also_{name}"] for name in also or {}},
    )


def apply_rules(
    df: DataFrame, rules: list[Rule], references: dict[str, DataFrame] | None = None, persist: bool = False,
    count: bool = True, also: dict[str, Column] | None = None, check_repeats: bool = True,
) -> tuple[DataFrame, DataFrame, QualityCounts | None]:
    """Split `df` by `rules` into (valid rows with flags/fixes, quarantined rows, counts).

    The quarantine keeps the input columns unchanged plus `rule` (every failed
    quarantine rule, comma-separated) and `reason` (their descriptions). With
    `persist=True` the checked rows are cached by the counting job, so that writing
    both outputs does not evaluate the rules again; call `counts.release()` after.
    `count=False` skips the counting job (counts are then None): for callers that report no
    counts, such as the live layer, whose every micro-batch would otherwise pay one more job.
    `also` adds the caller's own aggregates over the checked rows to the counting job (read them
    from `counts.also`), so that a figure the caller needs costs no job of its own.
    `check_repeats=False` skips the look for a repeated key of `check_repeats_first` rules (one job)
    and ranks with the window as written: for small frames, such as a live micro-batch.
    """
    if persist and not count:
        raise ValueError("apply_rules(persist=True) needs count=True: the counting job fills the cache")
    references = references or {}
    validate_rules(rules, references)
    annotated = _annotate(df, rules, references, check_repeats)
    if persist:
        annotated = annotated.persist(StorageLevel.MEMORY_AND_DISK)
    counts = _count(annotated, rules, also) if count else None
    if counts is not None:
        counts.cached = annotated if persist else None
    flag_columns = [r.flag for r in rules if r.flag and r.flag not in df.columns]
    kept = _apply_fixes(annotated.filter(~F.col("__dq_quarantined")), rules)
    valid = kept.select(*df.columns, *dict.fromkeys(flag_columns))
    quarantine = annotated.filter(F.col("__dq_quarantined")).select(*df.columns, "rule", "reason")
    return valid, quarantine, counts


def max_key_count(df: DataFrame, keys) -> int:
    """How often the most repeated value of `keys` occurs in `df` (0 when empty), in one job.

    The largest count per key, not `limit(1)` of the repeated keys: a limit that finds nothing
    scans the partitions in rounds, one job each, and finding nothing is the usual case.
    """
    return df.groupBy(*keys).count().agg(F.max("count")).first()[0] or 0


def repeated_keys(df: DataFrame, keys, limit: int = 5) -> list[tuple[tuple, int]]:
    """Up to `limit` values of `keys` that occur more than once in `df`, with their counts.

    Silver and Gold check this before a join on `keys`, which would otherwise multiply rows.
    One job when no key repeats (the usual case); the examples are looked up only when one does.
    """
    if max_key_count(df, keys) <= 1:
        return []
    rows = df.groupBy(*keys).count().filter(F.col("count") > 1).limit(limit).collect()
    return [(tuple(row[key] for key in keys), row["count"]) for row in rows]


def rules_for(rules: list[Rule], table: str) -> list[Rule]:
    """The rules of one table, in catalogue order."""
    selected = [rule for rule in rules if rule.table == table]
    if not selected:
        raise RuleDefinitionError(f"no rules are defined for table {table!r}")
    return selected


# ---------------------------------------------------------------------------
# The rule catalogue: every Silver rule of every table, as data.
# ---------------------------------------------------------------------------

METRIC_UNITS = {"requests": "count", "cpu_hours": "hours", "storage_gb_hours": "gb_hours"}
SCHEMA_VERSIONS = (1, 2)
COST_FLOOR_USD = -0.01
NPS_RANGE = (-100, 100)
CSAT_SCALE = (1, 5)  # the usual 1-5 CSAT; the data's 0, 6 and 7 are out of scale (ADR 050)
SEVERITIES = ("low", "medium", "high", "critical")
CURRENCIES = ("USD", "EUR", "ARS")


def _sql_list(values) -> str:
    return ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in values)


def _finite(column: str) -> str:
    return f"NOT isnan({column}) AND abs({column}) < double('Infinity')"


def _key_present(table: str, key: str) -> Rule:
    return Rule(f"{key}_not_null", table, (key,), "quarantine", f"{key} is null or empty",
                predicate=f"{key} IS NOT NULL AND trim({key}) <> ''")


def _key_unique(table: str, keys: tuple[str, ...], order: str = "ingest_ts, source_file",
                check_repeats_first: bool = False) -> Rule:
    """Keep the first row per key (by `order`); rows with a null or blank key pass this rule."""
    name = f"{keys[0]}_unique" if len(keys) == 1 else f"{table}_key_unique"
    return Rule(name, table, keys, "quarantine",
                f"another row with the same {', '.join(keys)} was kept (earliest {order})",
                unique_order=order, check_repeats_first=check_repeats_first)


def _org_exists(table: str) -> Rule:
    return Rule("org_exists", table, ("org_id",), "quarantine", "org_id is not a known organisation (customers_orgs)",
                reference=("customers_orgs", "org_id"))


def _nps_in_range(table: str) -> Rule:
    low, high = NPS_RANGE
    return Rule("nps_in_range", table, ("nps_score",), "impute",
                f"nps_score outside {low}..{high}: set to null, row kept",
                predicate=f"nps_score IS NULL OR nps_score BETWEEN {low} AND {high}",
                flag="is_nps_out_of_range", fix="CAST(NULL AS DOUBLE)")


_UNIT_FROM_METRIC = "CASE metric " + " ".join(f"WHEN '{m}' THEN '{u}'" for m, u in METRIC_UNITS.items()) + " END"

EVENT_RULES: list[Rule] = [
    _key_present("usage_events", "event_id"),
    Rule("event_ts_parses", "usage_events", ("timestamp_raw",), "quarantine",
         "timestamp is missing or not an ISO-8601 instant", predicate="event_ts IS NOT NULL"),
    _org_exists("usage_events"),
    Rule("resource_exists", "usage_events", ("resource_id",), "quarantine",
         "resource_id is not a known resource (resources)", reference=("resources", "resource_id")),
    # JSON NaN/Infinity parse as doubles and Spark orders NaN above every number, so finiteness is explicit
    Rule("cost_not_below_floor", "usage_events", ("cost_usd_increment",), "quarantine",
         f"cost_usd_increment is null, not a finite number, or below {COST_FLOOR_USD}",
         predicate=f"cost_usd_increment >= {COST_FLOOR_USD} AND {_finite('cost_usd_increment')}"),
    Rule("metric_in_domain", "usage_events", ("metric",), "quarantine",
         f"metric is not one of {', '.join(METRIC_UNITS)}", predicate=f"metric IN ({_sql_list(METRIC_UNITS)})"),
    Rule("schema_version_in_domain", "usage_events", ("schema_version",), "quarantine",
         "schema_version is not 1 or 2", predicate=f"schema_version IN ({_sql_list(SCHEMA_VERSIONS)})"),
    # Bronze holds one row per event_id by construction (the stream's dedupe): the window, which sorts
    # every row, runs only if a repeat is found (ADR 090.13).
    _key_unique("usage_events", ("event_id",), order="ingest_ts, source_file, content_hash", check_repeats_first=True),
    Rule("value_numeric", "usage_events", ("value_raw",), "flag", "value is present but not a number: set to null",
         predicate="value_raw IS NULL OR value IS NOT NULL", flag="is_value_not_numeric"),
    Rule("carbon_kg_finite", "usage_events", ("carbon_kg",), "impute",
         "carbon_kg is NaN or infinite: set to null (unknown), row kept",
         predicate=f"carbon_kg IS NULL OR {_finite('carbon_kg')}", flag="is_carbon_not_finite",
         fix="CAST(NULL AS DOUBLE)"),
    Rule("unit_present_when_value", "usage_events", ("unit", "value", "metric"), "impute",
         "unit is missing while value is present: imputed from the metric",
         predicate="unit IS NOT NULL OR value IS NULL", flag="is_unit_imputed", fix=_UNIT_FROM_METRIC),
]


def cost_spike_rule(threshold: float) -> Rule:
    """`cost_spike` depends on the data (p99 x factor), so it is built once the threshold is known."""
    return Rule("cost_spike", "usage_events", ("cost_usd_increment",), "flag",
                f"cost_usd_increment above the spike threshold {threshold:.4f} (p99 x factor)",
                predicate=lambda: F.col("cost_usd_increment") <= F.lit(float(threshold)), flag="is_cost_spike")


MASTER_RULES: list[Rule] = [
    _key_present("customers_orgs", "org_id"),
    _key_unique("customers_orgs", ("org_id",)),
    _nps_in_range("customers_orgs"),
    _key_present("users", "user_id"),
    _key_unique("users", ("user_id",)),
    _org_exists("users"),
    _key_present("resources", "resource_id"),
    _key_unique("resources", ("resource_id",)),
    _org_exists("resources"),
    Rule("tags_parse", "resources", ("tags_json",), "flag", "tags_json is not a JSON array of strings: tags left null",
         predicate="tags_json IS NULL OR trim(tags_json) = '' OR tags IS NOT NULL", flag="is_tags_unparsable"),
    _key_present("support_tickets", "ticket_id"),
    _key_unique("support_tickets", ("ticket_id",)),
    _org_exists("support_tickets"),
    Rule("created_date_not_null", "support_tickets", ("created_at",), "quarantine",
         "created_at is missing, so the ticket has no date", predicate="created_date IS NOT NULL"),
    Rule("severity_in_domain", "support_tickets", ("severity",), "quarantine",
         f"severity is not one of {', '.join(SEVERITIES)}", predicate=f"severity IN ({_sql_list(SEVERITIES)})"),
    Rule("csat_in_scale", "support_tickets", ("csat",), "impute",
         f"csat outside the {CSAT_SCALE[0]}-{CSAT_SCALE[1]} scale: set to null, ticket kept",
         predicate=f"csat IS NULL OR csat BETWEEN {CSAT_SCALE[0]} AND {CSAT_SCALE[1]}",
         flag="is_csat_out_of_scale", fix="CAST(NULL AS DOUBLE)"),
    _key_present("billing_monthly", "invoice_id"),
    _key_unique("billing_monthly", ("invoice_id",)),
    _org_exists("billing_monthly"),
    Rule("amounts_present", "billing_monthly", ("month", "subtotal", "taxes"), "quarantine",
         "month, subtotal or taxes is missing",
         predicate="month IS NOT NULL AND subtotal IS NOT NULL AND taxes IS NOT NULL"),
    Rule("currency_in_domain", "billing_monthly", ("currency",), "quarantine",
         f"currency is not one of {', '.join(CURRENCIES)}", predicate=f"currency IN ({_sql_list(CURRENCIES)})"),
    Rule("credits_non_negative", "billing_monthly", ("credits",), "quarantine", "credits is negative",
         predicate="credits IS NULL OR credits >= 0"),
    Rule("fx_rate_positive", "billing_monthly", ("exchange_rate_to_usd",), "quarantine",
         "exchange_rate_to_usd is missing or not positive for a currency converted with its rate",
         predicate="currency <> 'EUR' OR exchange_rate_to_usd > 0"),
    Rule("credits_present", "billing_monthly", ("credits",), "impute", "credits is empty: no credits, set to 0",
         predicate="credits IS NOT NULL", flag="is_credits_defaulted", fix="CAST(0 AS DOUBLE)"),
    # FX rule (ADR 050): a USD amount is already in USD, whatever rate the row carries
    Rule("usd_rate_is_one", "billing_monthly", ("fx_rate_applied",), "impute",
         "USD invoice with an exchange rate other than 1: 1.0 applied",
         predicate="currency <> 'USD' OR exchange_rate_to_usd = 1.0", flag="is_usd_rate_overridden",
         fix="CAST(1.0 AS DOUBLE)"),
    # FX rule (ADR 050): ARS amounts have USD magnitudes, the ~0.0015 rate would shrink them 650-fold
    Rule("ars_amounts_in_usd", "billing_monthly", ("fx_rate_applied",), "impute",
         "ARS invoice whose amounts are USD-sized: rate ignored, 1.0 applied",
         predicate="currency <> 'ARS'", flag="is_ars_rate_ignored", fix="CAST(1.0 AS DOUBLE)"),
    Rule("subtotal_non_negative", "billing_monthly", ("subtotal",), "flag", "negative subtotal (adjustment or refund)",
         predicate="subtotal >= 0", flag="is_adjustment"),
    _org_exists("nps_surveys"),
    Rule("survey_date_not_null", "nps_surveys", ("survey_date",), "quarantine", "survey_date is missing",
         predicate="survey_date IS NOT NULL"),
    _key_unique("nps_surveys", ("org_id", "survey_date")),
    _nps_in_range("nps_surveys"),
    _key_present("marketing_touches", "touch_id"),
    _key_unique("marketing_touches", ("touch_id",)),
    _org_exists("marketing_touches"),
]


def quarantine_frame(quarantine_df: DataFrame, source_columns: list[str], run_id: str) -> DataFrame:
    """Quarantine table layout: the source columns, `rule`, `reason`, this run's id and time.

    The source row's own `run_id` (the run that wrote it upstream) is kept as `source_run_id`.
    """
    kept = [F.col(c) if c != "run_id" else F.col("run_id").alias("source_run_id") for c in source_columns]
    return quarantine_df.select(
        *kept, "rule", "reason", F.lit(run_id).alias("run_id"), F.current_timestamp().alias("quarantined_at")
    )
