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


def same_entity(events: pd.DataFrame, key, key_cols=("k",)) -> pd.DataFrame:
    """The events of one entity: every key column equal; a null key part matches nothing."""
    parts = (key,) if len(key_cols) == 1 else tuple(key)
    mask = np.ones(len(events), dtype=bool)
    for col, value in zip(key_cols, parts, strict=True):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return events.iloc[0:0]
        mask &= (events[col] == value).fillna(False).to_numpy(dtype=bool)
    return events[mask]


def reference_agg(
    events: pd.DataFrame, key, as_of, *, fn, window, offset, boundary, where, key_cols=("k",)
):
    """The documented rule, row by row: (end-w, end] or [end-w, end), end = as_of - offset.

    ``key`` is the entity's key value, or a tuple of values for ``key_cols``.
    """
    end = as_of - offset
    ev = same_entity(events, key, key_cols)
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


def reference_lookup(events, key, as_of, *, boundary, ttl, key_cols=("k",)):
    ev = same_entity(events, key, key_cols)
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


# ------------------------------------------------------------------ composite entity keys
# An account is (bank, acct): few values of each, so the same bank with another account,
# and the same account number at another bank, are common; a null account number is an
# event (or spine row) of no entity.

BANKS = st.integers(1, 2)
ACCTS = st.sampled_from(["a", "b", None])
composite_events_st = st.lists(
    st.tuples(
        BANKS,
        ACCTS,
        st.integers(0, 60 * 24 * 3),
        st.one_of(st.none(), st.integers(-5, 20).map(float)),
    ),
    min_size=0,
    max_size=40,
)
composite_spine_st = st.lists(
    st.tuples(st.integers(1, 3), ACCTS, st.integers(0, 60 * 24 * 4)), min_size=1, max_size=15
)
ACCOUNT = Entity("account", key=("bank", "acct"))


def _composite_frame(events):
    df = pd.DataFrame(events, columns=["bank", "acct", "m", "v"])
    df["ts"] = T0 + pd.to_timedelta(df["m"].astype("int64"), unit="min")
    df["bank"] = df["bank"].astype("int64")
    df["acct"] = df["acct"].astype("string")  # a typed column even when every value is null
    df["v"] = df["v"].astype("float64")
    return df.drop(columns="m")


def _composite_spine(spine):
    sp = pd.DataFrame(spine, columns=["bank", "acct", "m"])
    sp["acct"] = sp["acct"].astype("string")
    sp["as_of"] = T0 + pd.to_timedelta(sp["m"].astype("int64"), unit="min")
    return sp.drop(columns="m")


def _key(row) -> tuple:
    return (row["bank"], None if pd.isna(row["acct"]) else row["acct"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=composite_events_st,
    spine=composite_spine_st,
    boundary=st.sampled_from(["inclusive", "strict"]),
    window_min=st.sampled_from([1, 60, 60 * 24]),
    offset_min=st.sampled_from([0, 30]),
)
def test_composite_key_aggregations_match_reference(
    engine, tmp_path_factory, events, spine, boundary, window_min, offset_min
):
    path = tmp_path_factory.mktemp("ck") / "events.parquet"
    ev = _composite_frame(events)
    ev.to_parquet(path)
    window, offset = timedelta(minutes=window_min), timedelta(minutes=offset_min)
    view = FeatureView(
        "v",
        entity=ACCOUNT,
        source=Source.parquet(str(path), timestamp="ts"),
        boundary=boundary,
        aggregations=[
            Aggregation("v", fn, window=window, offset=offset, name=f"f_{fn}") for fn in FUNCS
        ],
    )
    sp = _composite_spine(spine)
    out = build_training_set(engine, FeatureService("s", [view]), sp, resolve_path=str).to_pandas()
    assert len(out) == len(sp)
    assert list(out["bank"]) == list(sp["bank"])  # spine order and rows preserved
    for i, row in sp.iterrows():
        for fn in FUNCS:
            want = reference_agg(
                ev,
                _key(row),
                row["as_of"],
                fn=fn,
                window=window,
                offset=offset,
                boundary=boundary,
                where=False,
                key_cols=("bank", "acct"),
            )
            got = out.loc[i, f"f_{fn}"]
            assert close(got, want), (fn, dict(row), got, want)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=composite_events_st,
    spine=composite_spine_st,
    boundary=st.sampled_from(["inclusive", "strict"]),
    ttl_min=st.sampled_from([None, 60, 60 * 24]),
)
def test_composite_key_row_lookup_matches_reference(
    engine, tmp_path_factory, events, spine, boundary, ttl_min
):
    ev = _composite_frame(events).drop_duplicates(["bank", "acct", "ts"])
    path = tmp_path_factory.mktemp("cksnap") / "snap.parquet"
    ev.to_parquet(path)
    ttl = None if ttl_min is None else timedelta(minutes=ttl_min)
    view = FeatureView(
        "snap",
        entity=ACCOUNT,
        source=Source.parquet(str(path), timestamp="ts"),
        features=[Feature("v", name="latest_v")],
        ttl=ttl,
        boundary=boundary,
    )
    sp = _composite_spine(spine)
    out = build_training_set(engine, FeatureService("s", [view]), sp, resolve_path=str).to_pandas()
    assert len(out) == len(sp)
    for i, row in sp.iterrows():
        want = reference_lookup(
            ev, _key(row), row["as_of"], boundary=boundary, ttl=ttl, key_cols=("bank", "acct")
        )
        assert close(out.loc[i, "latest_v"], want), (dict(row), out.loc[i, "latest_v"], want)


def test_composite_key_never_groups_by_one_column(engine, tmp_path):
    """Same bank with another account, same account at another bank, all at one time."""
    ev = pd.DataFrame(
        {
            "bank": [1, 1, 2, 2, 1],
            "acct": ["a", "b", "a", "a", None],
            "ts": [T0] * 5,
            "v": [1.0, 10.0, 100.0, 1000.0, 5.0],
        }
    )
    ev.to_parquet(tmp_path / "ev.parquet")
    src = Source.parquet(str(tmp_path / "ev.parquet"), timestamp="ts")
    windows = FeatureView(
        "w",
        entity=ACCOUNT,
        source=src,
        aggregations=[
            Aggregation("v", "sum", window="1d", name="total"),
            Aggregation("*", "count", window="1d", name="n"),
            Aggregation("v", "last", window="1d", name="last_v"),
        ],
    )
    rows = FeatureView(
        "r",
        entity=ACCOUNT,
        source=Source.parquet(str(tmp_path / "ev.parquet"), timestamp="ts"),
        features=[Feature("v", name="row_v")],
    )
    sp = pd.DataFrame(
        {
            "bank": [1, 1, 2, 2, 1, 3],
            "acct": ["a", "b", "a", "b", None, "a"],
            "as_of": [T0, T0, T0, T0, T0, T0],
        }
    )
    out = build_training_set(
        engine, FeatureService("s", [windows]), sp, resolve_path=str
    ).to_pandas()
    assert out["total"].tolist() == [1.0, 10.0, 1100.0, 0.0, 0.0, 0.0]
    assert out["n"].tolist() == [1, 1, 2, 0, 0, 0]
    assert out["last_v"].tolist()[:3] == [1.0, 10.0, 1000.0]  # a tie: the largest value
    assert out["last_v"].isna().tolist()[3:] == [True, True, True]
    unique = sp.iloc[[0, 1, 3, 4, 5]].reset_index(drop=True)  # (2, "a") has a tie: unspecified
    got = build_training_set(engine, FeatureService("s", [rows]), unique, resolve_path=str)
    assert got.to_pandas()["row_v"].tolist()[:2] == [1.0, 10.0]
    assert got.to_pandas()["row_v"].isna().tolist()[2:] == [True, True, True]
