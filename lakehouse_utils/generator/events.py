"""Synthetic usage events shaped like the course's `usage_events_stream/*.jsonl`.

Each file is generated independently from its own seed, so memory stays flat at any
scale. Event slots are spread over files with an affine permutation of the global
event index (step ≈ golden ratio × total): every day keeps exactly `per_day` events,
and every file holds events from the whole date range (files are not in time order).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from datetime import date, timedelta

from lakehouse_utils.generator.masters import ALPHABET

# USD per unit of `value`, measured per service on the course copy (the course cost
# ignores the metric: a cpu_hours event costs value × the same rate as a request).
SERVICE_RATE = {"compute": 0.0845, "storage": 0.0215, "database": 0.0535, "networking": 0.0107,
                "analytics": 0.074, "genai": 0.122}
METRICS = (("requests", "count", 0.452), ("cpu_hours", "hours", 0.699), ("storage_gb_hours", "gb_hours", 1.0))
METRIC_DOMAIN = frozenset(metric for metric, _, _ in METRICS)
VALUE_AS_NUMBER, VALUE_AS_STRING = 0.9494, 0.9797  # cumulative: number 95 %, string 3 %, null 2 %
UNIT_NULL = 0.048
SPIKE, NEGATIVE = 0.003, 0.005
CARBON_PER_UNIT = 0.0002
ID_SPACE = 36 ** 12
ID_MULTIPLIER = 0x9E3779B97F4A7C15 % ID_SPACE | 1  # odd and (checked below) not a multiple of 3
assert ID_MULTIPLIER % 3 and ID_MULTIPLIER % 2
_TRIPLETS = ["".join((a, b, c)) for a in ALPHABET for b in ALPHABET for c in ALPHABET]


def format_id(code: int) -> str:
    """`evt_` + the 12 base-36 digits of `code` (0 <= code < 36**12)."""
    high, low = divmod(code, 36 ** 6)
    return "evt_" + _TRIPLETS[high // 46656] + _TRIPLETS[high % 46656] + _TRIPLETS[low // 46656] + _TRIPLETS[low % 46656]


@dataclass(frozen=True)
class EventPlan:
    """Where every base event goes: files, slots, days and ids."""

    seed: int
    start: date
    days: int
    per_day: int
    n_files: int
    step: int
    shift: int
    id_shift: int

    @classmethod
    def create(cls, seed: int, start: date, days: int, per_day: int, n_files: int) -> EventPlan:
        rng = random.Random(f"{seed}:plan")
        total = days * per_day
        step = max(1, int(total * 0.6180339887))
        while math.gcd(step, total) != 1:
            step += 1
        return cls(seed, start, days, per_day, n_files, step, rng.randrange(total), rng.randrange(ID_SPACE))

    @property
    def total(self) -> int:
        return self.days * self.per_day

    @property
    def v1_days(self) -> int:
        """schema_version 1 for the first quarter of the range (15 of 60 days), 2 after."""
        return self.days // 4

    def file_slots(self, file_index: int) -> range:
        return range(file_index * self.total // self.n_files, (file_index + 1) * self.total // self.n_files)

    def event_index(self, slot: int) -> int:
        return (self.step * slot + self.shift) % self.total

    def event_id(self, index: int) -> str:
        """16 chars `evt_` + 12 base-36 digits; a bijection of the index, so ids never collide."""
        return format_id((ID_MULTIPLIER * index + self.id_shift) % ID_SPACE)

    def day_text(self, day: int) -> str:
        return (self.start + timedelta(days=day)).isoformat()


def file_rng(seed: int, kind: str, file_index: int) -> random.Random:
    return random.Random(f"{seed}:{kind}:{file_index}")


def _true_value(rng: random.Random, metric: str) -> float:
    if metric == "requests":
        return float(max(1, round(rng.gauss(120, 11))))
    if metric == "cpu_hours":
        return round(max(0.0, rng.gauss(1.9, 1.55)), 4)
    return round(max(0.0, rng.gauss(10.4, 8.3)), 4)


def make_event(rng: random.Random, plan: EventPlan, resources: list, index: int, day: int, days_text: list[str]) -> dict:
    """One event; key order is the course's (v2 adds carbon_kg, then genai_tokens for genai)."""
    resource_id, org_id, service, region = resources[int(rng.random() * len(resources))]
    draw = rng.random()
    metric, unit = next((m, u) for m, u, cumulative in METRICS if draw < cumulative)
    true_value = _true_value(rng, metric)
    cost = true_value * SERVICE_RATE[service] * max(0.3, rng.gauss(1.0, 0.11))
    draw = rng.random()
    if draw < SPIKE:
        cost *= rng.uniform(8, 25)
    elif draw < SPIKE + NEGATIVE:
        cost = -cost
    draw = rng.random()
    value = true_value if draw < VALUE_AS_NUMBER else (str(true_value) if draw < VALUE_AS_STRING else None)
    minute = rng.randrange(1440)
    version = 1 if day < plan.v1_days else 2
    event = {
        "event_id": plan.event_id(index),
        "timestamp": f"{days_text[day]}T{minute // 60:02d}:{minute % 60:02d}:00Z",
        "org_id": org_id, "resource_id": resource_id, "service": service, "region": region,
        "metric": metric, "value": value, "unit": None if rng.random() < UNIT_NULL else unit,
        "cost_usd_increment": round(cost, 4), "schema_version": version,
    }
    if version == 2:
        # The course writes the integer 0 when there is nothing to convert, a float otherwise.
        event["carbon_kg"] = 0 if value is None or true_value == 0 else round(true_value * CARBON_PER_UNIT, 6)
        if service == "genai":
            event["genai_tokens"] = max(0, int(rng.gauss(820, 450)))
    return event


def base_events(plan: EventPlan, resources: list, file_index: int) -> list[dict]:
    """The clean events of one file, always the same for (seed, file_index)."""
    rng = file_rng(plan.seed, "events", file_index)
    days_text = [plan.day_text(day) for day in range(plan.days)]
    events = []
    for slot in plan.file_slots(file_index):
        index = plan.event_index(slot)
        events.append(make_event(rng, plan, resources, index, index // plan.per_day, days_text))
    return events


def to_line(event: dict) -> str:
    """`json.dumps` defaults give the course's `"key": value, ` spacing."""
    return json.dumps(event)


def _json_scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)  # what json.dumps writes for int and finite float


def event_line(event: dict) -> str:
    """Same text as `to_line` for events from `make_event` (plain ASCII strings), ~5x faster."""
    head = (f'{{"event_id": "{event["event_id"]}", "timestamp": "{event["timestamp"]}", '
            f'"org_id": "{event["org_id"]}", "resource_id": "{event["resource_id"]}", '
            f'"service": "{event["service"]}", "region": "{event["region"]}", "metric": "{event["metric"]}", '
            f'"value": {_json_scalar(event["value"])}, "unit": {_json_scalar(event["unit"])}, '
            f'"cost_usd_increment": {event["cost_usd_increment"]!r}, "schema_version": {event["schema_version"]}')
    if "carbon_kg" not in event:
        return head + "}"
    tail = f', "genai_tokens": {event["genai_tokens"]}}}' if "genai_tokens" in event else "}"
    return f'{head}, "carbon_kg": {event["carbon_kg"]!r}{tail}'
