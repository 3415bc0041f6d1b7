"""Training sets against a brute-force point-in-time reference (hypothesis-generated)."""

from __future__ import annotations

import math
import statistics
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lendml import Aggregation, Entity, Feature, FeatureService, FeatureView, Source
from lendml.engines import create_engine
from lendml.features.training_set import build_training_set

T0 = pd.Timestamp("2024-03-01", tz="UTC")
FUNCS = ["count", "sum", "mean", "min", "max", "std", "last", "count_distinct"]


def reference_agg(events: pd.DataFrame, key, as_of, *, fn, window, offset, boundary, where):
    """The documented rule, row by row: (end-w, end] or [end-w, end), end = as_of - offset."""
    end = as_of - offset
    ev = events[events["k"] == key]
    if boundary == "inclusive":
        ev = ev[(ev["ts"] > end - window) & (ev["ts"] <= end)]
    else:
        ev = ev[(ev["ts"] >= end - window) & (ev["ts"] < end)]
    if where:
        ev = ev[ev["v"] > 0]
    vals = [v for v in ev["v"] if not (v is None or (isinstance(v, float) and math.isnan(v)))]
    if fn == "count":
        return len(vals)
    if fn == "sum":
        return float(sum(vals)) if vals else 0.0
    if fn == "count_distinct":
        return len(set(vals))
    if not vals:
        return None
    if fn == "mean":
        return sum(vals) / len(vals)
    if fn == "min":
        return min(vals)
    if fn == "max":
        return max(vals)
    if fn == "std":
        return statistics.stdev(vals) if len(vals) > 1 else None
    if fn == "last":
        valid = ev[ev["v"].notna()]
        latest = valid["ts"].max()
        return max(valid.loc[valid["ts"] == latest, "v"])
    raise AssertionError(fn)


def reference_lookup(events, key, as_of, *, boundary, ttl):
    ev = events[events["k"] == key]
    ev = ev[ev["ts"] <= as_of] if boundary == "inclusive" else ev[ev["ts"] < as_of]
    if ev.empty:
        return None
    row = ev.sort_values("ts").iloc[-1]
    if ttl is not None and row["ts"] < as_of - ttl:
        return None
    v = row["v"]
    return None if pd.isna(v) else v


def close(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return False
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


events_st = st.lists(
    st.tuples(
        st.integers(1, 3),  # key
        st.integers(0, 60 * 24 * 3),  # minutes from T0 (coarse → many ties)
        st.one_of(st.none(), st.integers(-5, 20).map(float)),  # value
    ),
    min_size=0,
    max_size=40,
)
spine_st = st.lists(
    st.tuples(st.integers(1, 4), st.integers(0, 60 * 24 * 4)), min_size=1, max_size=15
)


def _frame(events):
    df = pd.DataFrame(events, columns=["k", "m", "v"])
    df["ts"] = T0 + pd.to_timedelta(df["m"].astype("int64"), unit="min")
    df["k"] = df["k"].astype("int64")
    df["v"] = df["v"].astype("float64")
    return df.drop(columns="m")


@pytest.fixture(scope="module")
def engine():
    eng = create_engine("duckdb")
    yield eng
    eng.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=events_st,
    spine=spine_st,
    boundary=st.sampled_from(["inclusive", "strict"]),
    window_min=st.sampled_from([1, 60, 60 * 24]),
    offset_min=st.sampled_from([0, 30, 60 * 24]),
    where=st.booleans(),
)
def test_window_aggregations_match_reference(
    engine, tmp_path_factory, events, spine, boundary, window_min, offset_min, where
):
    path = tmp_path_factory.mktemp("ev") / "events.parquet"
    ev = _frame(events)
    ev.to_parquet(path)
    window, offset = timedelta(minutes=window_min), timedelta(minutes=offset_min)
    ent = Entity("e", key="k")
    view = FeatureView(
        "v",
        entity=ent,
        source=Source.parquet(str(path), timestamp="ts"),
        boundary=boundary,
        aggregations=[
            Aggregation(
                "v",
                fn,
                window=window,
                offset=offset,
                name=f"f_{fn}",
                where="v > 0" if where else None,
            )
            for fn in FUNCS
        ],
    )
    sp = pd.DataFrame(spine, columns=["k", "m"])
    sp["as_of"] = T0 + pd.to_timedelta(sp["m"].astype("int64"), unit="min")
    sp = sp.drop(columns="m")
    out = build_training_set(engine, FeatureService("s", [view]), sp, resolve_path=str).to_pandas()
    assert len(out) == len(sp)
    assert list(out["k"]) == list(sp["k"])  # spine order and rows preserved
    for i, row in sp.iterrows():
        for fn in FUNCS:
            want = reference_agg(
                ev,
                row["k"],
                row["as_of"],
                fn=fn,
                window=window,
                offset=offset,
                boundary=boundary,
                where=where,
            )
            got = out.loc[i, f"f_{fn}"]
            assert close(got, want), (fn, dict(row), got, want)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=events_st,
    spine=spine_st,
    boundary=st.sampled_from(["inclusive", "strict"]),
    ttl_min=st.sampled_from([None, 60, 60 * 24]),
)
def test_row_lookup_matches_reference(engine, tmp_path_factory, events, spine, boundary, ttl_min):
    ev = _frame(events).drop_duplicates(["k", "ts"])  # snapshot sources: one row per key and time
    path = tmp_path_factory.mktemp("snap") / "snap.parquet"
    ev.to_parquet(path)
    ttl = None if ttl_min is None else timedelta(minutes=ttl_min)
    view = FeatureView(
        "snap",
        entity=Entity("e", key="k"),
        source=Source.parquet(str(path), timestamp="ts"),
        features=[Feature("v", name="latest_v")],
        ttl=ttl,
        boundary=boundary,
    )
    sp = pd.DataFrame(spine, columns=["k", "m"])
    sp["as_of"] = T0 + pd.to_timedelta(sp["m"].astype("int64"), unit="min")
    out = build_training_set(
        engine, FeatureService("s", [view]), sp.drop(columns="m"), resolve_path=str
    ).to_pandas()
    for i, row in sp.iterrows():
        want = reference_lookup(ev, row["k"], row["as_of"], boundary=boundary, ttl=ttl)
        assert close(out.loc[i, "latest_v"], want), (dict(row), out.loc[i, "latest_v"], want)


def test_no_feature_value_is_newer_than_as_of(engine, tmp_path):
    """Property on a large random table: 'last' never returns an event after as-of."""
    rng = np.random.default_rng(7)
    n = 5000
    ev = pd.DataFrame(
        {
            "k": rng.integers(0, 50, n),
            "ts": T0 + pd.to_timedelta(rng.integers(0, 10 * 86400, n), unit="s"),
        }
    )
    ev["event_time_s"] = (ev["ts"] - T0).dt.total_seconds()
    ev.to_parquet(tmp_path / "ev.parquet")
    view = FeatureView(
        "v",
        entity=Entity("e", key="k"),
        source=Source.parquet(str(tmp_path / "ev.parquet"), timestamp="ts"),
        aggregations=[Aggregation("event_time_s", "max", window="30d", name="latest_seen")],
        boundary="strict",
    )
    sp = pd.DataFrame({"k": rng.integers(0, 50, 500)})
    sp["as_of"] = T0 + pd.to_timedelta(rng.integers(0, 11 * 86400, 500), unit="s")
    out = build_training_set(engine, FeatureService("s", [view]), sp, resolve_path=str).to_pandas()
    asof_s = (sp["as_of"] - T0).dt.total_seconds()
    seen = out["latest_seen"]
    assert seen.notna().sum() > 400
    assert (seen[seen.notna()] < asof_s[seen.notna()]).all()
