"""An independent pandas computation of every Gold mart and of the three anomaly methods.

Inputs are the Silver tables the faulty generated dataset produced (`faulty_chain`, run
once per session); each oracle recomputes its mart with plain pandas/Decimal code from
the business rules (docs/data_dictionary.md, ADR 050/060), never with the project's
Spark functions, and the Gold mart must match it row for row. Money of the revenue mart
is compared in exact decimals, to the cent.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest

METHODS = (("zscore", "is_anomaly_zscore"), ("mad", "is_anomaly_mad"), ("percentile", "is_anomaly_pctl"))
CENT, MONEY_TOLERANCE = Decimal("0.01"), 1.01e-4  # usage costs: Silver rounds double sums to 4 decimals


@pytest.fixture(scope="module")
def lake(spark, faulty_chain):
    paths, _, _ = faulty_chain

    def read(zone: str, table: str) -> pd.DataFrame:
        return spark.read.parquet(getattr(paths, zone)(table)).toPandas()

    return read


def _exact(value) -> Decimal:
    """A double as the decimal it prints as (what Spark's round() starts from)."""
    return Decimal(repr(float(value)))


def _rounded(value, places: str) -> Decimal:
    return _exact(value).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def _sorted_sets(values) -> list:
    return sorted(values) if values is not None else []


def _same(actual, expected) -> bool:
    missing = [v is None or (isinstance(v, float) and np.isnan(v)) for v in (actual, expected)]
    return all(missing) if any(missing) else bool(actual == expected)


def _assert_frames(actual: pd.DataFrame, expected: pd.DataFrame, keys: list[str], close: tuple[str, ...] = ()):
    """Same keys, same values (floats in `close` to MONEY_TOLERANCE, others exactly)."""
    actual, expected = actual.set_index(keys).sort_index(), expected.set_index(keys).sort_index()
    assert list(actual.index) == list(expected.index), "different keys"
    assert len(expected) > 0
    for column in expected.columns:
        left, right = actual[column], expected[column]
        if column in close:
            assert np.allclose(left.astype(float), right.astype(float), rtol=0, atol=MONEY_TOLERANCE,
                               equal_nan=True), column
        else:
            mismatched = [(k, a, e) for k, a, e in zip(expected.index, left, right, strict=True) if not _same(a, e)]
            assert not mismatched, (column, mismatched[:3])


# ---------- usage: org_daily_usage_by_service and genai_tokens_by_org_date from Silver events ----------

def _daily_from_events(events: pd.DataFrame) -> pd.DataFrame:
    events = events.assign(**{m: events["value"].where(events["metric"] == m) for m in
                              ("requests", "cpu_hours", "storage_gb_hours")})
    grouped = events.groupby(["org_id", "usage_date", "service"])
    return pd.DataFrame({
        "daily_cost_usd": grouped["cost_usd_increment"].apply(lambda s: float(sum(map(_exact, s)))),
        "requests": grouped["requests"].sum(), "cpu_hours": grouped["cpu_hours"].sum(),
        "storage_gb_hours": grouped["storage_gb_hours"].sum(),
        "genai_tokens": grouped["genai_tokens"].sum().astype("int64"),
        "event_count": grouped.size().astype("int64"),
    }).reset_index()


def test_org_daily_usage_equals_pandas_from_silver_events(lake):
    expected = _daily_from_events(lake("silver", "usage_events"))
    orgs = lake("silver", "customers_orgs")[["org_id", "org_name", "industry", "plan_tier", "hq_region"]]
    silver_daily = lake("silver", "org_service_daily")
    silver_daily["anomaly_methods"] = [[name for name, flag in METHODS if row[flag]] for _, row in silver_daily.iterrows()]
    flags = silver_daily[["org_id", "usage_date", "service", "is_anomaly", "anomaly_methods"]]
    expected = expected.merge(orgs, on="org_id", how="left").merge(flags, on=["org_id", "usage_date", "service"])
    expected["usage_month"] = pd.to_datetime(expected["usage_date"]).dt.strftime("%Y-%m")
    actual = lake("gold", "org_daily_usage_by_service")[list(expected.columns)]
    actual["anomaly_methods"] = actual["anomaly_methods"].map(list)
    _assert_frames(actual, expected, ["org_id", "usage_date", "service"],
                   close=("daily_cost_usd", "requests", "cpu_hours", "storage_gb_hours"))


def test_genai_mart_equals_pandas_from_silver_events(lake):
    events = lake("silver", "usage_events")
    genai = _daily_from_events(events[events["service"] == "genai"])
    expected = genai.rename(columns={"genai_tokens": "total_tokens", "daily_cost_usd": "estimated_cost_usd",
                                     "event_count": "genai_event_count"})
    expected = expected[["org_id", "usage_date", "total_tokens", "estimated_cost_usd", "genai_event_count"]]
    actual = lake("gold", "genai_tokens_by_org_date")[list(expected.columns)]
    _assert_frames(actual, expected, ["org_id", "usage_date"], close=("estimated_cost_usd",))


# ---------- revenue with the FX rule, in exact decimals ----------

def test_revenue_equals_decimal_recomputation_with_the_fx_rule(lake):
    billing = lake("silver", "billing_monthly")
    expected = {}
    for _, invoice in billing.iterrows():
        # ADR 050: USD is already USD; ARS amounts are USD-sized (rate ignored); EUR converts at its rate.
        rate = 1.0 if invoice["currency"] in ("USD", "ARS") else float(invoice["exchange_rate_to_usd"])
        credits = 0.0 if pd.isna(invoice["credits"]) else invoice["credits"]
        usd = {name: _rounded(float(invoice[amount]) * rate, "0.01")
               for name, amount in (("subtotal_usd", "subtotal"), ("taxes_usd", "taxes"))}
        usd["credits_usd"] = _rounded(credits * rate, "0.01")
        usd["net_usd"] = (usd["subtotal_usd"] - usd["credits_usd"] + usd["taxes_usd"]).quantize(CENT)
        key = (invoice["org_id"], invoice["month"].replace(day=1))
        total = expected.setdefault(key, {name: Decimal(0) for name in usd} | {"invoice_count": 0, "currencies": set()})
        for name, amount in usd.items():
            total[name] += amount
        total["invoice_count"] += 1
        total["currencies"].add(invoice["currency"])
    actual = {(r["org_id"], r["month"]): r for _, r in lake("gold", "revenue_by_org_month").iterrows()}
    assert set(actual) == set(expected) and expected
    for key, total in expected.items():
        row = actual[key]
        for name in ("subtotal_usd", "credits_usd", "taxes_usd", "net_usd"):
            assert _rounded(row[name], "0.01") == total[name], (key, name, row[name], total[name])
        assert row["invoice_count"] == total["invoice_count"], key
        assert row["is_refund"] == (total["subtotal_usd"] < 0), key
        currencies = total["currencies"]
        assert row["currency"] == (next(iter(currencies)) if len(currencies) == 1 else "MIXED"), key


# ---------- tickets, by org and by severity ----------

def _ticket_rollup(tickets: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    tickets = tickets.assign(
        severity=tickets["severity"].str.strip().str.lower().fillna("unknown"),
        category=tickets["category"].str.strip().str.lower().fillna("unknown"))
    rows = []
    for key, group in tickets.groupby(keys, dropna=False):
        csat = group["csat"].dropna()
        breaches = int(group["sla_breached"].fillna(False).astype(bool).sum())
        rows.append(dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)) | {
            "tickets_opened": len(group), "critical_count": int((group["severity"] == "critical").sum()),
            "sla_breach_count": breaches, "sla_breach_rate": breaches / len(group),
            "mean_csat": csat.mean() if len(csat) else None, "csat_responses": len(csat),
            "open_count": int(group["is_open"].fillna(False).astype(bool).sum()),
            "categories": dict(sorted(group["category"].value_counts().items())),
            "org_ids": sorted(group["org_id"].unique()),
        })
    return pd.DataFrame(rows)


def _as_plain(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["categories"] = frame["categories"].map(lambda m: dict(sorted(dict(m).items())))
    for column in ("sla_breach_rate", "mean_csat"):
        frame[column] = frame[column].map(lambda v: None if pd.isna(v) else round(float(v), 12))
    return frame


def test_tickets_by_org_date_equals_pandas(lake):
    expected = _ticket_rollup(lake("silver", "support_tickets"), ["org_id", "created_date", "severity"])
    expected = _as_plain(expected.drop(columns="org_ids"))
    actual = _as_plain(lake("gold", "tickets_by_org_date")[list(expected.columns)])
    _assert_frames(actual, expected, ["org_id", "created_date", "severity"])


def test_tickets_by_date_severity_equals_pandas(lake):
    expected = _ticket_rollup(lake("silver", "support_tickets"), ["created_date", "severity"])
    expected["org_count"] = expected["org_ids"].map(len)
    expected = _as_plain(expected)
    actual = _as_plain(lake("gold", "tickets_by_date_severity")[list(expected.columns)])
    actual["org_ids"] = actual["org_ids"].map(list)
    _assert_frames(actual, expected, ["created_date", "severity"])


# ---------- top services over 14 days ----------

def test_top_services_14d_equals_a_window_by_window_recomputation(lake):
    daily = lake("silver", "org_service_daily")
    last_day = daily["usage_date"].max()
    rows = []
    for org, series in daily.groupby("org_id"):
        as_of_dates = sorted({d + timedelta(days=k) for d in series["usage_date"] for k in range(14)
                              if d + timedelta(days=k) <= last_day})
        for as_of in as_of_dates:
            window = series[(series["usage_date"] > as_of - timedelta(days=14)) & (series["usage_date"] <= as_of)]
            totals = window.groupby("service").agg(cost=("daily_cost_usd", "sum"), requests=("requests", "sum"))
            ranked = sorted(totals.iterrows(), key=lambda item: (-round(item[1]["cost"], 6), item[0]))
            rows += [{"org_id": org, "as_of_date": as_of, "rank": rank, "service": service,
                      "cost_14d_usd": values["cost"], "requests_14d": values["requests"],
                      "window_start": as_of - timedelta(days=13)}
                     for rank, (service, values) in enumerate(ranked, start=1)]
    expected = pd.DataFrame(rows)
    actual = lake("gold", "top_services_14d")[list(expected.columns)]
    _assert_frames(actual, expected, ["org_id", "as_of_date", "rank"], close=("cost_14d_usd", "requests_14d"))


# ---------- the three anomaly methods, and the anomaly mart ----------

def _anomaly_oracle(daily: pd.DataFrame) -> pd.DataFrame:
    """z-score and MAD per (org, service) series, percentile per service (ADR 050 thresholds)."""
    out = daily[["org_id", "usage_date", "service", "daily_cost_usd"]].copy()
    cost = out["daily_cost_usd"]
    by_series = out.groupby(["org_id", "service"])["daily_cost_usd"]
    std = by_series.transform(lambda s: s.std(ddof=1))
    out["z_score"] = ((cost - by_series.transform("mean")) / std).where(std > 0)
    median = by_series.transform("median")
    deviation = (cost - median).abs()
    mad = deviation.groupby([out["org_id"], out["service"]]).transform("median")
    mean_ad = deviation.groupby([out["org_id"], out["service"]]).transform("mean")
    out["mad_score"] = np.where(mad > 0, 0.6745 * (cost - median) / mad.where(mad > 0),
                                np.where(mean_ad > 0, (cost - median) / (1.2533 * mean_ad.where(mean_ad > 0)), np.nan))
    out["baseline_cost_usd"] = median
    by_service = out.groupby("service")["daily_cost_usd"]
    size = by_service.transform("size")
    out["pct_rank"] = ((by_service.rank(method="min") - 1) / (size - 1)).where(size > 1, 0.0)
    cutoff = by_service.transform(lambda s: np.percentile(s, 99))
    out["is_anomaly_zscore"] = out["z_score"].abs() > 3.0
    out["is_anomaly_mad"] = pd.Series(out["mad_score"]).abs() > 3.5
    out["is_anomaly_pctl"] = cost > cutoff
    out["anomaly_votes"] = out[["is_anomaly_zscore", "is_anomaly_mad", "is_anomaly_pctl"]].sum(axis=1)
    out["is_anomaly"] = out["anomaly_votes"] >= 2
    return out


def test_anomaly_methods_on_pipeline_output_equal_pandas(lake):
    daily = lake("silver", "org_service_daily")
    expected = _anomaly_oracle(daily)
    assert expected["is_anomaly_pctl"].any()  # the faulty data has cost outliers: the flags are exercised
    columns = ["org_id", "usage_date", "service", "z_score", "mad_score", "pct_rank", "baseline_cost_usd",
               "is_anomaly_zscore", "is_anomaly_mad", "is_anomaly_pctl", "anomaly_votes", "is_anomaly"]
    scores = ("z_score", "mad_score", "pct_rank", "baseline_cost_usd")
    _assert_frames(daily[columns], expected[columns], ["org_id", "usage_date", "service"], close=scores)


def test_cost_anomaly_mart_equals_the_flagged_rows_of_the_oracle(lake):
    oracle = _anomaly_oracle(lake("silver", "org_service_daily"))
    flagged = oracle[oracle["is_anomaly_zscore"] | oracle["is_anomaly_mad"] | oracle["is_anomaly_pctl"]].copy()
    flagged["anomaly_methods"] = [[name for name, flag in METHODS if row[flag]] for _, row in flagged.iterrows()]
    flagged["method_scores"] = [
        {name: row[score] for name, score in (("zscore", "z_score"), ("mad", "mad_score"), ("percentile", "pct_rank"))
         if not pd.isna(row[score])} for _, row in flagged.iterrows()]
    mart = lake("gold", "cost_anomaly_mart")
    assert len(mart) == len(flagged) > 0
    mart["anomaly_methods"] = mart["anomaly_methods"].map(list)
    keys = ["org_id", "usage_date", "service"]
    columns = [*keys, "daily_cost_usd", "anomaly_votes", "is_anomaly", "anomaly_methods"]
    _assert_frames(mart[columns], flagged[columns], keys, close=("daily_cost_usd",))
    scores = mart.set_index(keys)["method_scores"].map(dict)
    for key, expected in flagged.set_index(keys)["method_scores"].items():
        assert scores[key].keys() == expected.keys(), key
        assert all(abs(scores[key][k] - v) <= 1e-9 for k, v in expected.items()), key
