"""What Bronze and Silver must produce from the generated events, computed from what was written.

The rule semantics mirror docs/table_contracts.md (event data-quality rule names); they
are applied here independently of the pipeline so tests can compare exact counts.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import numpy as np

from lakehouse_utils.generator.events import METRIC_DOMAIN, format_id

QUARANTINE_RULES = ("event_id_not_null", "event_ts_parses", "org_exists", "resource_exists",
                    "cost_not_below_floor", "metric_in_domain", "schema_version_in_domain", "event_id_unique")
COST_FLOOR = -0.01
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_GENERATED_ID = re.compile(r"evt_[0-9a-z]{12}")


@lru_cache(maxsize=4096)
def _date_exists(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def timestamp_parses(text: object) -> bool:
    """`YYYY-MM-DDTHH:MM:SSZ` with a real date and time (strptime is too slow for millions of rows)."""
    if not isinstance(text, str) or not _TIMESTAMP.fullmatch(text):
        return False
    return _date_exists(text[:10]) and int(text[11:13]) < 24 and int(text[14:16]) < 60 and int(text[17:19]) < 60


def numeric_value(value: object) -> float | None:
    """The Silver `value`: a JSON number, or a JSON string that holds a number; else null."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def failed_rules(event: dict, org_ids: set[str], resource_ids: set[str]) -> list[str]:
    """Names of the Silver quarantine rules this (Bronze-unique) event fails."""
    cost = event.get("cost_usd_increment")
    checks = (
        ("event_id_not_null", event.get("event_id") in (None, "")),
        ("event_ts_parses", not timestamp_parses(event.get("timestamp"))),
        ("org_exists", event.get("org_id") not in org_ids),
        ("resource_exists", event.get("resource_id") not in resource_ids),
        ("cost_not_below_floor", cost is None or cost < COST_FLOOR),
        ("metric_in_domain", event.get("metric") not in METRIC_DOMAIN),
        ("schema_version_in_domain", event.get("schema_version") not in (1, 2)),
    )
    return [name for name, failed in checks if failed]


@dataclass
class EventLedger:
    """Running totals of every line written and of what each later zone must hold."""

    org_ids: set[str]
    resource_ids: set[str]
    lines_total: int = 0
    blank_lines: int = 0
    malformed: Counter = field(default_factory=Counter)
    exact_replays: int = 0
    conflicting_duplicates: int = 0
    bronze_rows: int = 0
    null_event_ids: int = 0
    empty_event_ids: int = 0
    # Generated ids are `evt_` + 12 base-36 digits, kept as integers (8 bytes each, not a
    # 70-byte str): at scale 100 that is 35 MB instead of ~300 MB. Others go in `other_ids`.
    id_codes: array = field(default_factory=lambda: array("q"))
    other_ids: list[str] = field(default_factory=list)
    quarantine_by_rule: Counter = field(default_factory=Counter)
    silver_quarantined_rows: int = 0
    value_not_numeric: int = 0
    unit_imputed: int = 0

    def bronze(self, event: dict) -> None:
        """A line that must become its own Bronze row (first arrival of its event_id)."""
        self.lines_total += 1
        self.bronze_rows += 1
        event_id = event.get("event_id")
        if event_id is None:
            self.null_event_ids += 1
        elif event_id == "":
            self.empty_event_ids += 1
        elif _GENERATED_ID.fullmatch(event_id):
            self.id_codes.append(int(event_id[4:], 36))
        else:
            self.other_ids.append(event_id)
        failed = failed_rules(event, self.org_ids, self.resource_ids)
        if failed:
            self.silver_quarantined_rows += 1
            self.quarantine_by_rule.update(failed)
            return
        value = event.get("value")
        numeric = numeric_value(value)
        if value is not None and numeric is None:
            self.value_not_numeric += 1
        if event.get("unit") is None and numeric is not None:
            self.unit_imputed += 1

    def replay(self) -> None:
        self.lines_total += 1
        self.exact_replays += 1

    def conflict(self) -> None:
        self.lines_total += 1
        self.conflicting_duplicates += 1

    def blank(self) -> None:
        self.lines_total += 1
        self.blank_lines += 1

    def bad_line(self, reason: str) -> None:
        self.lines_total += 1
        self.malformed[reason] += 1

    def summary(self) -> dict:
        malformed = sum(self.malformed.values())
        expected_bronze = self.lines_total - self.blank_lines - malformed - self.exact_replays - self.conflicting_duplicates
        assert expected_bronze == self.bronze_rows, "generator ledger does not reconcile"
        return {
            "lines_total": self.lines_total,
            "blank_lines": self.blank_lines,
            "malformed_lines": malformed,
            "malformed_by_reason": {reason: self.malformed[reason] for reason in sorted(self.malformed)},
            "exact_replays": self.exact_replays,
            "conflicting_duplicates": self.conflicting_duplicates,
            "bronze_rows": self.bronze_rows,
            "expected_bronze_event_ids": len(self.id_codes) + len(self.other_ids),
            "bronze_null_event_ids": self.null_event_ids,
            "bronze_empty_event_ids": self.empty_event_ids,
            "silver_quarantine_by_rule": {rule: self.quarantine_by_rule.get(rule, 0) for rule in QUARANTINE_RULES},
            "silver_quarantined_rows": self.silver_quarantined_rows,
            "silver_rows": self.bronze_rows - self.silver_quarantined_rows,
            "value_not_numeric": self.value_not_numeric,
            "unit_imputed": self.unit_imputed,
        }

    def write_sorted_ids(self, path) -> None:
        """One event_id a line, sorted; base-36 digits sort like their integer codes."""
        codes = np.sort(np.frombuffer(self.id_codes, dtype=np.int64))
        generated = (format_id(int(code)) for code in codes)
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            if not self.other_ids:
                handle.writelines(f"{event_id}\n" for event_id in generated)
                return
            handle.writelines(f"{event_id}\n" for event_id in sorted([*generated, *self.other_ids]))
