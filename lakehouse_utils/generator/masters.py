"""Synthetic master (CRM / billing) tables shaped like the course landing CSVs.

Every categorical mix is allocated exactly (largest remainder, then shuffled) so the
counts at scale 1 equal the documented ones and tests can use tight tolerances.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from lakehouse_utils.contracts.landing import MASTER_SOURCES, csv_header, master_schema

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
INDUSTRIES = {"Gaming": 12, "Education": 10, "Manufacturing": 10, "Government": 9, "Retail": 9,
              "Healthcare": 8, "Fintech": 7, "E-commerce": 6, "Energy": 5, "Media": 4}
REGIONS = {"ap-northeast": 72, "us-east": 69, "us-west": 61, "sa-east": 57, "ap-south": 55,
           "eu-west": 46, "eu-central": 40}
PLAN_TIERS = {"standard": 41, "pro": 21, "enterprise": 10, "free": 8}
LIFECYCLE = {"active": 54, "at_risk": 11, "churned": 6, "prospect": 6, "lead": 3}
MARKETING_SOURCES = {"event": 21, "organic": 17, "partner": 16, "ads": 14, "referral": 12}
SALES_REPS = {"rep_d": 22, "rep_b": 18, "rep_e": 17, "rep_a": 14, "rep_c": 9}
NAME_FIRST = ["Gamma", "Zenith", "Vertex", "Nimbus", "Omega", "Delta", "Nova", "Alpha", "Beta", "Apex"]
NAME_SECOND = ["Cloud", "Labs", "Tech", "Data", "Digital", "AI"]
ROLES = {"data_engineer": 201, "devops": 162, "developer": 130, "analyst": 113, "ml_engineer": 105, "admin": 89}
SERVICES = {"compute": 116, "storage": 71, "database": 68, "networking": 64, "analytics": 42, "genai": 39}
STATES = {"running": 242, "stopped": 119, "terminated": 39}
TAGS = ["env:dev", "team:ml", "pii:true", "env:prod", "team:core", "costcenter:beta", "costcenter:alpha", "backup:daily"]
CATEGORIES = {"integration": 181, "billing": 180, "availability": 165, "usability": 161, "performance": 158, "security": 155}
SEVERITIES = {"low": 412, "medium": 328, "high": 204, "critical": 56}
CSAT = {"3.0": 242, "4.0": 197, "2.0": 127, "5.0": 95, "1.0": 45, "6.0": 28, "0.0": 11, "7.0": 1, "": 254}
CAMPAIGNS = {"upgrade_enterprise": 271, "webinar_finops": 263, "genai_launch": 252, "welcome": 247,
             "upgrade_pro": 245, "security_week": 222}
CHANNELS = {"event": 401, "email": 385, "ads": 358, "in_app": 356}
COMMENTS = {"Missing features": 20, "Love genAI features": 14, "Complex billing": 13, "Stable but slow": 13,
            "Too expensive": 12, "": 10, "Great support": 10}
CURRENCIES = {"USD": 160, "ARS": 51, "EUR": 29}

# The landing contract is the one place the headers and keys are written out.
HEADERS: dict[str, list[str]] = {source: csv_header(source) for source in MASTER_SOURCES}
KEYS: dict[str, tuple[str, ...]] = {source: master_schema(source).key for source in MASTER_SOURCES}


@dataclass
class Masters:
    """All master rows as lists of CSV fields (strings; '' = null), in file order."""

    rows: dict[str, list[list[str]]] = field(default_factory=dict)
    resources: list[tuple[str, str, str, str]] = field(default_factory=list)  # (resource_id, org, service, region)
    org_ids: list[str] = field(default_factory=list)


def allocate(rng: random.Random, n: int, weights: dict[str, float]) -> list[str]:
    """Exactly proportional labels (largest remainder), shuffled."""
    total = sum(weights.values())
    raw = {label: n * w / total for label, w in weights.items()}
    counts = {label: int(value) for label, value in raw.items()}
    by_remainder = sorted(raw, key=lambda label: (raw[label] - counts[label]), reverse=True)
    for label in by_remainder[: n - sum(counts.values())]:
        counts[label] += 1
    labels = [label for label, count in counts.items() for _ in range(count)]
    rng.shuffle(labels)
    return labels


def flags(rng: random.Random, n: int, true_share: float) -> list[bool]:
    """Exactly round(n * share) True values, shuffled."""
    return [label == "T" for label in allocate(rng, n, {"T": true_share, "F": 1 - true_share})]


def make_ids(rng: random.Random, prefix: str, n: int, taken: set[str]) -> list[str]:
    ids: list[str] = []
    while len(ids) < n:
        candidate = prefix + "".join(rng.choices(ALPHABET, k=8))
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def fmt_num(value: float) -> str:
    """Python's float repr, as in the course CSVs (`4.0`, `1133.34`)."""
    return repr(float(value))


def _month_start(day: date, months_back: int) -> date:
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def _day(anchor: date, rng: random.Random, low: int, high: int) -> date:
    return anchor + timedelta(days=rng.randint(low, high))


def build_masters(rng: random.Random, scale: float, start: date, days: int) -> Masters:
    """All seven master tables. Dates are relative to the event range [start, start + days)."""
    end = start + timedelta(days=days - 1)
    n_orgs = max(8, round(80 * scale))
    taken: set[str] = set()
    masters = Masters()
    masters.org_ids = make_ids(rng, "org_", n_orgs, taken)
    masters.rows["customers_orgs"] = _orgs(rng, masters.org_ids, start)
    masters.rows["users"] = _users(rng, masters.org_ids, 10 * n_orgs, taken, start, end)
    masters.rows["resources"] = _resources(rng, masters.org_ids, 5 * n_orgs, taken, start, end)
    masters.resources = [(r[0], r[1], r[2], r[3]) for r in masters.rows["resources"]]
    masters.rows["support_tickets"] = _tickets(rng, masters.org_ids, max(12, round(1000 * scale)), taken, start, end)
    masters.rows["marketing_touches"] = _touches(rng, masters.org_ids, max(12, round(1500 * scale)), taken, start, end)
    masters.rows["nps_surveys"] = _surveys(rng, masters.org_ids, start, end)
    masters.rows["billing_monthly"] = _billing(rng, masters.org_ids, taken, end)
    return masters


def _orgs(rng: random.Random, org_ids: list[str], start: date) -> list[list[str]]:
    n = len(org_ids)
    industries, regions = allocate(rng, n, INDUSTRIES), allocate(rng, n, REGIONS)
    tiers, stages = allocate(rng, n, PLAN_TIERS), allocate(rng, n, LIFECYCLE)
    sources, reps = allocate(rng, n, MARKETING_SOURCES), allocate(rng, n, SALES_REPS)
    enterprise, nps_null = flags(rng, n, 17 / 80), flags(rng, n, 11 / 80)
    out_of_range = nps_null.index(False)
    rows = []
    for i, org_id in enumerate(org_ids):
        # NPS is mostly -40..85; one out-of-range 101 per dataset is a deliberate quirk.
        nps = "" if nps_null[i] else fmt_num(101 if i == out_of_range else max(-40, min(85, round(rng.gauss(17, 24)))))
        name = f"{rng.choice(NAME_FIRST)} {rng.choice(NAME_SECOND)} {i}"
        rows.append([org_id, name, industries[i], regions[i], tiers[i], str(enterprise[i]),
                     _day(start, rng, -60, -1).isoformat(), reps[i], stages[i], sources[i], nps])
    return rows


def _users(rng, org_ids, n, taken, start, end) -> list[list[str]]:
    ids, roles = make_ids(rng, "user_", n, taken), allocate(rng, n, ROLES)
    active, no_login = flags(rng, n, 728 / 800), flags(rng, n, 139 / 800)
    rows = []
    for i, user_id in enumerate(ids):
        created = _day(start, rng, -60, 39)
        # Some last_login values precede created_at, as in the course copy (a CRM quirk).
        login = min(end, created + timedelta(days=rng.randint(-85, 113)))
        rows.append([user_id, org_ids[i] if i < len(org_ids) else rng.choice(org_ids),
                     f"{user_id}@example.com", roles[i], str(active[i]), created.isoformat(),
                     "" if no_login[i] else login.isoformat()])
    return rows


def _resources(rng, org_ids, n, taken, start, end) -> list[list[str]]:
    ids, services = make_ids(rng, "res_", n, taken), allocate(rng, n, SERVICES)
    regions, states, no_tags = allocate(rng, n, REGIONS), allocate(rng, n, STATES), flags(rng, n, 83 / 400)
    rows = []
    for i, resource_id in enumerate(ids):
        org_id = org_ids[i] if i < len(org_ids) else rng.choice(org_ids)  # every org owns >= 1 resource
        tags = "" if no_tags[i] else json.dumps(rng.sample(TAGS, rng.randint(1, 3)))
        rows.append([resource_id, org_id, services[i], regions[i], _day(start, rng, -60, -10 + (end - start).days)
                     .isoformat(), states[i], tags])
    return rows


def _tickets(rng, org_ids, n, taken, start, end) -> list[list[str]]:
    ids, categories, severities = make_ids(rng, "tkt_", n, taken), allocate(rng, n, CATEGORIES), allocate(rng, n, SEVERITIES)
    csat, open_ticket, breached = allocate(rng, n, CSAT), flags(rng, n, 240 / 1000), flags(rng, n, 95 / 1000)
    rows = []
    for i, ticket_id in enumerate(ids):
        created = _day(start, rng, -55, (end - start).days)
        resolved = "" if open_ticket[i] else (created + timedelta(days=min(31, int(rng.expovariate(1 / 4.3))))).isoformat()
        rows.append([ticket_id, rng.choice(org_ids), categories[i], severities[i], created.isoformat(), resolved,
                     csat[i], str(breached[i])])
    return rows


def _touches(rng, org_ids, n, taken, start, end) -> list[list[str]]:
    ids, campaigns, channels = make_ids(rng, "mkt_", n, taken), allocate(rng, n, CAMPAIGNS), allocate(rng, n, CHANNELS)
    clicked, converted = flags(rng, n, 453 / 1500), flags(rng, n, 144 / 1500)
    return [[touch_id, rng.choice(org_ids), campaigns[i], channels[i], _day(start, rng, -60, (end - start).days)
             .isoformat(), str(clicked[i]), str(converted[i])] for i, touch_id in enumerate(ids)]


def _surveys(rng, org_ids, start, end) -> list[list[str]]:
    surveyed = rng.sample(org_ids, round(len(org_ids) * 60 / 80))
    twice = set(rng.sample(surveyed, round(len(surveyed) * 32 / 60)))
    pairs = []
    for org_id in surveyed:
        offsets = rng.sample(range(-40, (end - start).days + 1), 2 if org_id in twice else 1)
        pairs.extend((org_id, start + timedelta(days=offset)) for offset in sorted(offsets))
    n = len(pairs)
    no_score, comments = flags(rng, n, 19 / 92), allocate(rng, n, COMMENTS)
    rows = []
    for i, (org_id, survey_date) in enumerate(pairs):
        score = "" if no_score[i] else fmt_num(max(-16, min(68, round(rng.gauss(26, 16)))))
        rows.append([org_id, survey_date.isoformat(), score, comments[i]])
    return rows


def _billing(rng, org_ids, taken, end) -> list[list[str]]:
    months = [_month_start(end, back) for back in (2, 1, 0)]
    n = 3 * len(org_ids)
    ids, currencies, no_credit = make_ids(rng, "inv_", n, taken), allocate(rng, n, CURRENCIES), flags(rng, n, 137 / 240)
    negative = flags(rng, n, 8 / 240)
    rates = {"USD": (1.0, 0.05), "EUR": (1.10, 0.045), "ARS": (0.0015, 0.000065)}
    rows = []
    for i, invoice_id in enumerate(ids):
        subtotal = round(abs(rng.gauss(720, 420)) + 20, 2) * (-1 if negative[i] else 1)
        mean, sd = rates[currencies[i]]
        rate = round(min(mean * 1.12, max(mean * 0.9, rng.gauss(mean, sd))), 5)
        credits = "" if no_credit[i] else fmt_num(round(min(80.0, rng.expovariate(1 / 19)), 2))
        rows.append([invoice_id, org_ids[i // 3], months[i % 3].isoformat(), fmt_num(subtotal), credits,
                     fmt_num(round(abs(subtotal) * 0.21, 2)), currencies[i], fmt_num(rate)])
    return rows
