"""Fault injection for the synthetic landing data: what to add, and where.

All faults come from their own seeded RNG, so switching a fault on never changes the
clean rows around it (the same base events are written with or without faults).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lakehouse_utils.generator.events import EventPlan, make_event, to_line
from lakehouse_utils.generator.masters import HEADERS, KEYS, Masters

# per master: (column, new value, fallback when equal) of the re-sent row that must win over the earlier one
CORRECTIONS = {
    "customers_orgs": ("lifecycle_stage", "at_risk", "active"), "users": ("role", "admin", "analyst"),
    "resources": ("state", "terminated", "running"), "support_tickets": ("csat", "6.0", "2.0"),
    "marketing_touches": ("converted", "True", "False"), "nps_surveys": ("nps_score", "42.0", "7.0"),
    "billing_monthly": ("credits", "12.5", "3.25"),
}
# per master: (column, unparsable text) rows; ids are new so they never collide with a real key
UNPARSABLE = {
    "customers_orgs": [("signup_date", "2025-02-30"), ("nps_score", "abc")],
    "users": [("created_at", "2025-02-30"), ("active", "maybe")],
    "resources": [("created_at", "2025-13-01"), ("tags_json", None)],  # None: broken quoting, see below
    "support_tickets": [("created_at", "2025-02-30"), ("csat", "five")],
    "marketing_touches": [("timestamp", "2025-02-30"), ("clicked", "maybe")],
    "nps_surveys": [("survey_date", "2025-02-30"), ("nps_score", "abc")],
    "billing_monthly": [("subtotal", "abc"), ("month", "2025-02-30")],
}
BAD_ROW_KINDS = ("null_event_id", "empty_event_id", "unparsable_timestamp", "unknown_org_id", "unknown_resource_id",
                 "value_not_numeric", "metric_out_of_domain", "schema_version_3", "null_cost")
GARBAGE = ("garbage ### not json", "<html><body>502 Bad Gateway</body></html>", "evt;2025-07-03;org;res")
LATE_DAYS = 7
# index ranges of the bad and malformed events (base events use [0, plan.total), late ones follow them)
BAD_BASE, MALFORMED_BASE = 10**12, 2 * 10**12


@dataclass
class MasterFile:
    """One master CSV as lines to write: field lists, or raw text for rows csv cannot express."""

    entries: list[list[str] | str]
    stats: dict = field(default_factory=dict)


def master_files(rng: random.Random, masters: Masters, duplicates: bool, bad_rows: bool) -> dict[str, MasterFile]:
    return {source: _master_file(rng, source, rows, duplicates, bad_rows) for source, rows in masters.rows.items()}


def _insert_after(rng: random.Random, entries: list, original: object, new_entry: object) -> None:
    position = next(i for i, entry in enumerate(entries) if entry is original)
    entries.insert(rng.randint(position + 1, len(entries)), new_entry)


def _master_file(rng: random.Random, source: str, rows: list[list[str]], duplicates: bool, bad_rows: bool) -> MasterFile:
    header, key_columns = HEADERS[source], KEYS[source]
    entries: list[list[str] | str] = list(rows)
    superseded, duplicated = [], []
    if duplicates:
        picked = rng.sample(rows, 3)
        for original in picked[:2]:  # exact replays of a row
            _insert_after(rng, entries, original, list(original))
            duplicated.append({c: original[header.index(c)] for c in key_columns})
        column, new_value, fallback = CORRECTIONS[source]
        corrected = list(picked[2])
        corrected[header.index(column)] = new_value if corrected[header.index(column)] != new_value else fallback
        _insert_after(rng, entries, picked[2], corrected)
        superseded.append({"key": {c: corrected[header.index(c)] for c in key_columns},
                           "winner": dict(zip(header, corrected, strict=False)),
                           "loser": dict(zip(header, picked[2], strict=False))})
    unparsable = []
    if bad_rows:
        taken = {tuple(row[header.index(c)] for c in key_columns) for row in rows}
        for n, (column, text) in enumerate(UNPARSABLE[source]):
            row = list(rng.choice(rows))
            _give_new_key(row, source, n, taken)
            if text is None:
                # Backslash-escaped quotes instead of doubled ones: the comma inside the
                # unquoted JSON splits it, so the row has one field too many.
                entry: list[str] | str = ",".join(row[:-1] + ['[\\"env:prod\\", \\"pii:true\\"]'])
            else:
                row[header.index(column)] = text
                entry = row
            entries.insert(rng.randint(0, len(entries)), entry)
            unparsable.append({"column": column, "text": text if text is not None else "broken quoting"})
    stats = {
        "data_rows": len(entries), "exact_duplicate_rows": len(duplicated), "superseded_key_rows": len(superseded),
        "unparsable_rows": len(unparsable),
        "expected_bronze_rows": len(entries) - len(duplicated) - len(superseded) - len(unparsable),
        "exact_duplicates": duplicated, "superseded": superseded, "unparsable": unparsable,
    }
    return MasterFile(entries, stats)


def _give_new_key(row: list[str], source: str, n: int, taken: set[tuple[str, ...]]) -> None:
    """Unparsable rows carry a key of their own, so they never compete with a real row."""
    if source == "nps_surveys":
        candidates = (f"2025-01-{day:02d}" for day in range(1, 32))
        row[1] = next(d for d in candidates if (row[0], d) not in taken)
        taken.add((row[0], row[1]))
        return
    prefix = row[0].split("_", 1)[0] + "_"
    row[0] = next(k for k in (f"{prefix}bad{n:02d}{i:03d}" for i in range(1000)) if (k,) not in taken)
    taken.add((row[0],))
    if source == "users":
        row[2] = f"{row[0]}@example.com"


@dataclass
class EventFaults:
    """Extra lines per base file, the whole-file replays, and the special encodings."""

    bom_file: int | None = None
    crlf_file: int | None = None
    capture: dict[int, dict[int, int]] = field(default_factory=dict)  # file -> {position: pool slot}
    inserts: dict[int, list[tuple[str, object]]] = field(default_factory=dict)  # file -> [(kind, payload)]
    replay_files: list[int] = field(default_factory=list)
    late_files: int = 0
    counts: dict = field(default_factory=dict)


def plan_event_faults(rng: random.Random, plan: EventPlan, resources: list, org_ids: list[str], *,
                      duplicates: bool, malformed: bool, late_files: bool, bad_rows: bool) -> EventFaults:
    n_files, n_base = plan.n_files, plan.total
    faults = EventFaults()
    if not (duplicates or malformed or late_files or bad_rows):
        return faults
    if n_files < 4:
        raise ValueError(f"fault injection needs at least 4 event files (got {n_files}); pass files=4 or more")
    if malformed:
        faults.bom_file, faults.crlf_file = 1, 2
    special = {faults.bom_file, faults.crlf_file}
    ordinary = [f for f in range(n_files) if f not in special]
    first_half = [f for f in ordinary if f < n_files // 2]
    second_half = [f for f in ordinary if f >= n_files // 2]

    def add(files: list[int], kind: str, payload: object) -> None:
        faults.inserts.setdefault(rng.choice(files), []).append((kind, payload))

    if duplicates:
        n_replays, n_conflicts = max(3, round(n_base * 0.002)), max(2, round(n_base * 0.001))
        _plan_capture(rng, plan, faults, first_half, n_replays + n_conflicts)
        for slot in range(n_replays + n_conflicts):
            add(second_half, "replay" if slot < n_replays else "conflict", slot)
        faults.replay_files = sorted(rng.sample(ordinary, max(1, round(n_files * 0.03))))
        faults.counts.update(single_replays=n_replays, conflicts=n_conflicts)
    if malformed:
        per_kind, days_text = max(2, round(n_base * 0.0005)), [plan.day_text(d) for d in range(plan.days)]
        for i in range(per_kind):
            line = to_line(make_event(rng, plan, resources, MALFORMED_BASE + i, rng.randrange(plan.days), days_text))
            add(ordinary, "malformed_json", line[: rng.randint(10, len(line) - 2)])
            add(ordinary, "malformed_json", GARBAGE[i % len(GARBAGE)])
            add(ordinary, "not_a_json_object", to_line(list(make_event(
                rng, plan, resources, MALFORMED_BASE + per_kind + i, rng.randrange(plan.days), days_text).values())))
        for _ in range(max(3, round(n_base * 0.001))):
            add(ordinary, "blank", "")
    if bad_rows:
        for kind_and_event in bad_events(rng, plan, resources, set(org_ids), max(2, round(n_base / 15000))):
            add(ordinary, "bad_row", kind_and_event)
    if late_files:
        faults.late_files = max(1, round(n_files * 0.02))
    return faults


def _plan_capture(rng: random.Random, plan: EventPlan, faults: EventFaults, files: list[int], n: int) -> None:
    """Choose distinct earlier events to re-send later; they are captured while their file is written."""
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < n:
        source = rng.choice(files)
        chosen.add((source, rng.randrange(len(plan.file_slots(source)))))
    for slot, (source, position) in enumerate(sorted(chosen)):
        faults.capture.setdefault(source, {})[position] = slot


def _clean_template(rng: random.Random, plan: EventPlan, resources: list, index: int, days_text: list[str]) -> dict:
    """An event with a numeric value, a unit and a non-negative cost, so that one fault is its only fault."""
    while True:
        event = make_event(rng, plan, resources, index, rng.randrange(plan.days), days_text)
        if isinstance(event["value"], float) and event["unit"] is not None and event["cost_usd_increment"] >= 0:
            return event


def bad_events(rng: random.Random, plan: EventPlan, resources: list, org_ids: set[str],
               per_kind: int) -> list[tuple[str, dict]]:
    """`per_kind` events of each BAD_ROW_KINDS kind, each with exactly one fault and a unique id."""
    days_text = [plan.day_text(d) for d in range(plan.days)]
    resource_ids = {resource[0] for resource in resources}
    events = []
    for n, kind in enumerate(kind for kind in BAD_ROW_KINDS for _ in range(per_kind)):
        event = _clean_template(rng, plan, resources, BAD_BASE + n, days_text)
        if kind == "null_event_id":
            event["event_id"] = None
        elif kind == "empty_event_id":
            event["event_id"] = ""
        elif kind == "unparsable_timestamp":
            event["timestamp"] = "not-a-time"
        elif kind == "unknown_org_id":
            event["org_id"] = next(k for k in (f"org_x{i:07d}" for i in range(n, 10**7)) if k not in org_ids)
        elif kind == "unknown_resource_id":
            event["resource_id"] = next(k for k in (f"res_x{i:07d}" for i in range(n, 10**7)) if k not in resource_ids)
        elif kind == "value_not_numeric":
            event["value"] = "N/A"
        elif kind == "metric_out_of_domain":
            event["metric"] = "memory_gb_hours"
        elif kind == "schema_version_3":
            event["schema_version"] = 3
        elif kind == "null_cost":
            event["cost_usd_increment"] = None
        events.append((kind, event))
    return events
