"""PSI / CSI with frozen bins: hand figures, identities, serialization, edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lendml.errors import ConfigError
from lendml.evaluation import Bins, csi, fit_bins, fit_frame_bins, psi


def test_psi_of_a_sample_against_itself_is_zero(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=5000)
    x[::50] = np.nan
    r = psi(fit_bins(x), x)
    assert r.value == 0.0 and r.level == "stable"
    assert len(r.table) == 11  # 10 quantile bins + missing
    assert r.table["ref_count"].sum() == 5000


def test_psi_hand_figure():
    # Reference half/half in two bins; current a quarter / three quarters.
    b = fit_bins([1.0, 1.0, 2.0, 2.0], n_bins=2)
    r = psi(b, [1.0, 2.0, 2.0, 2.0])
    by_hand = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert r.value == pytest.approx(by_hand)  # 0.27465
    assert r.level == "significant"
    assert r.table["bin"].tolist() == ["(-inf, 1.5]", "(1.5, inf]", "(missing)"]
    assert r.table["contribution"].iloc[2] == 0.0  # empty on both sides


def test_psi_empty_bin_uses_the_documented_epsilon():
    b = fit_bins([1.0, 1.0, 2.0, 2.0], n_bins=2)
    r = psi(b, [2.0, 2.0, 2.0, 2.0], epsilon=1e-4)
    by_hand = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5)
    assert r.value == pytest.approx(by_hand)
    assert r.epsilon == 1e-4


def test_current_values_outside_the_reference_range_land_in_the_outer_bins():
    b = fit_bins(np.arange(100.0), n_bins=4)
    counts = b.counts(np.array([-1e9, 1e9, np.nan]))
    assert counts[0] == 1 and counts[-2] == 1 and counts[-1] == 1


def test_numeric_bins_keep_ties_together():
    x = np.array([0.0] * 70 + list(range(1, 31)), dtype=float)
    b = fit_bins(x, n_bins=10)
    assert b.reference_counts[0] == 70  # the zero mass is one bin
    assert b.n_reference == 100


def test_categorical_bins_other_and_missing():
    ref = pd.Series(["a", "a", "b", "c", None], name="grade")
    b = fit_bins(ref)
    assert b.kind == "categorical" and b.name == "grade"
    assert b.labels == ("a", "b", "c", "(other)", "(missing)")
    assert b.reference_counts == (2, 1, 1, 0, 1)
    cur = pd.Series(["a", "z", "z", None, "b"])
    assert b.counts(cur).tolist() == [1, 1, 0, 2, 1]
    r = psi(b, cur)
    assert r.table["cur_count"].tolist() == [1, 1, 0, 2, 1]
    assert r.value > 0.25


def test_categorical_max_levels_pools_rare_levels():
    ref = pd.Series(list("aaaabbbccd"))
    b = fit_bins(ref, max_levels=2)
    assert b.levels == ("a", "b")
    assert b.reference_counts == (4, 3, 3, 0)


def test_bool_and_numeric_codes():
    assert fit_bins(pd.Series([True, False, True])).kind == "categorical"
    b = fit_frame_bins(pd.DataFrame({"code": [1, 2, 2, 3]}), categorical=["code"])["code"]
    assert b.kind == "categorical" and b.levels == ("1", "2", "3")


def test_bins_round_trip_through_json(seed):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(size=1000)
    b = fit_bins(pd.Series(x, name="income"))
    again = Bins.from_dict(json.loads(json.dumps(b.to_dict())))
    assert again == b
    assert psi(again, x[:500]).value == pytest.approx(psi(b, x[:500]).value)
    c = fit_bins(pd.Series(["x", "y", None]))
    assert Bins.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(-1e6, 1e6, allow_nan=False) | st.just(float("nan")), min_size=1, max_size=60
    ),
    st.integers(2, 12),
)
def test_frozen_bins_round_trip_and_self_psi_is_zero(values, n_bins):
    b = fit_bins(np.array(values, dtype=float), n_bins=n_bins)
    assert Bins.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    assert b.n_reference == len(values)
    assert psi(b, np.array(values, dtype=float)).value == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"format": 99}, r"format 99 is not supported"),
        (
            {"format": 1, "kind": "numeric"},
            r"missing the key\(s\) \['cuts', 'levels', 'reference_counts'\]",
        ),
        (
            {
                "format": 1,
                "kind": "numeric",
                "cuts": [1.0],
                "levels": [],
                "reference_counts": [1, 2],
            },
            r"2 reference counts but 3 bins",
        ),
        (
            {
                "format": 1,
                "kind": "numeric",
                "cuts": [2.0, 1.0],
                "levels": [],
                "reference_counts": [1, 1, 1, 0],
            },
            r"strictly increasing cut points; got \(2\.0, 1\.0\)",
        ),
        (
            {"format": 1, "kind": "weird", "cuts": [], "levels": [], "reference_counts": [1, 0]},
            r"kind must be 'numeric' or 'categorical'; got 'weird'",
        ),
        (
            {
                "format": 1,
                "kind": "numeric",
                "cuts": [],
                "levels": [],
                "reference_counts": [1.5, 0],
            },
            r"whole number, got 1\.5",
        ),
    ],
)
def test_malformed_bins_are_refused(data, match):
    with pytest.raises(ConfigError, match=match):
        Bins.from_dict(data)


def test_csi_per_feature_and_missing_columns(seed):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"x": rng.normal(size=2000), "g": rng.choice(list("abc"), 2000)})
    cur = pd.DataFrame({"x": rng.normal(loc=1.0, size=1000), "g": rng.choice(list("abc"), 1000)})
    out = csi(fit_frame_bins(ref), cur)
    assert set(out) == {"x", "g"}
    assert out["x"].level == "significant" and out["g"].level == "stable"
    with pytest.raises(ConfigError, match=r"lacks feature\(s\) \['g'\]"):
        csi(fit_frame_bins(ref), cur[["x"]])


def test_stability_refusals():
    with pytest.raises(ConfigError, match="timestamp"):
        fit_bins(pd.Series(pd.date_range("2024-01-01", periods=3)))
    with pytest.raises(ConfigError, match="empty"):
        fit_bins([])
    with pytest.raises(ConfigError, match="current sample of 'x' is empty"):
        psi(fit_bins(pd.Series([1.0, 2.0], name="x")), [])
    with pytest.raises(ConfigError, match=r"epsilon must be a small positive share.*got 0"):
        psi(fit_bins([1.0, 2.0]), [1.0], epsilon=0)
    with pytest.raises(ConfigError, match="psi needs frozen Bins"):
        psi({"cuts": []}, [1.0])
