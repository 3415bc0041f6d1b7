"""Fair-lending table: hand-built approval rates, AIR, Fisher p, SMD, references, edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import fisher_exact

from lendml.errors import ConfigError
from lendml.evaluation import fair_lending


def _two_groups():
    """Group A: 80 of 100 approved; group B: 50 of 100 approved (cutoff 0.5)."""
    s = np.array([0.1] * 80 + [0.9] * 20 + [0.2] * 50 + [0.7] * 50)
    protected = pd.DataFrame({"sex": ["A"] * 100 + ["B"] * 100})
    return s, protected


def test_two_group_hand_case():
    s, protected = _two_groups()
    r = fair_lending(s, protected, cutoff=0.5)
    t = r.table.set_index("group")
    assert t.loc["A", "approval_rate"] == 0.8 and t.loc["B", "approval_rate"] == 0.5
    assert bool(t.loc["A", "is_reference"]) and r.references == {"sex": "A"}
    assert t.loc["A", "air"] == 1.0 and np.isnan(t.loc["A", "fisher_p"])
    assert t.loc["B", "air"] == pytest.approx(0.625)
    assert bool(t.loc["B", "air_flag"]) and not bool(t.loc["A", "air_flag"])
    expected_p = fisher_exact([[50, 50], [80, 20]]).pvalue
    assert t.loc["B", "fisher_p"] == pytest.approx(expected_p)
    # SMD with the pooled SD, by hand
    a, b = s[:100], s[100:]
    pooled = np.sqrt((99 * a.var(ddof=1) + 99 * b.var(ddof=1)) / 198)
    assert t.loc["B", "smd"] == pytest.approx((b.mean() - a.mean()) / pooled)
    assert t.loc["A", "smd"] == 0.0
    assert r.flagged["group"].tolist() == ["B"]
    assert "approve when score < cutoff" in r.decision_rule


def test_approval_is_strictly_below_the_cutoff():
    r = fair_lending([0.5, 0.49, 0.5, 0.51], pd.DataFrame({"g": ["x", "x", "y", "y"]}), cutoff=0.5)
    assert r.table["n_approved"].tolist() == [1, 0]


def test_configured_reference_group():
    s, protected = _two_groups()
    r = fair_lending(s, protected, cutoff=0.5, reference_groups={"sex": "B"})
    t = r.table.set_index("group")
    assert t.loc["A", "air"] == pytest.approx(1.6) and not t["air_flag"].any()


def test_missing_values_form_a_group_that_is_never_the_reference():
    s = np.array([0.1] * 10 + [0.1] * 8 + [0.9] * 2 + [0.1] * 5 + [0.9] * 5)
    sex = [None] * 10 + ["F"] * 10 + ["M"] * 10
    r = fair_lending(s, pd.DataFrame({"sex": sex}), cutoff=0.5)
    t = r.table.set_index("group")
    assert list(t.index) == ["F", "M", "(missing)"]
    assert t.loc["(missing)", "approval_rate"] == 1.0  # highest, yet not the reference
    assert r.references["sex"] == "F"
    assert "missing protected value" in t.loc["(missing)", "note"]
    assert t.loc["(missing)", "air"] == pytest.approx(1.25)
    with pytest.raises(ConfigError, match=r"cannot be '\(missing\)'"):
        fair_lending(
            s, pd.DataFrame({"sex": sex}), cutoff=0.5, reference_groups={"sex": "(missing)"}
        )


def test_empty_and_small_groups_and_labels():
    age = pd.Categorical(["18-25"] * 5 + ["26-40"] * 40, categories=["18-25", "26-40", "65+"])
    s = np.r_[np.full(5, 0.2), np.linspace(0.05, 0.95, 40)]
    y = np.r_[np.zeros(5, int), (np.arange(40) % 3 == 0).astype(int)]
    r = fair_lending(s, pd.DataFrame({"age_band": age}), cutoff=0.5, y_true=y)
    t = r.table.set_index("group")
    assert t.loc["65+", "n"] == 0 and t.loc["65+", "note"] == "no rows"
    assert np.isnan(t.loc["65+", "air"]) and not t.loc["65+", "air_flag"]
    assert "small group (n < 30)" in t.loc["18-25", "note"]
    assert np.isnan(t.loc["18-25", "auc"]) and "one class only" in t.loc["18-25", "note"]
    assert 0 < t.loc["26-40", "auc"] <= 1 and t.loc["26-40", "n_bad"] == 14


def test_without_cutoff_only_score_gaps_are_reported():
    s, protected = _two_groups()
    r = fair_lending(s, protected, cutoff=None)
    t = r.table.set_index("group")
    assert t["approval_rate"].isna().all() and t["air"].isna().all() and not t["air_flag"].any()
    # Reference: the lowest mean score (A: 0.26 against B: 0.45).
    assert r.references == {"sex": "A"} and t.loc["B", "smd"] > 0


def test_several_attributes_each_get_their_reference():
    s, protected = _two_groups()
    protected["age_band"] = ["young", "old"] * 100
    r = fair_lending(s, protected, cutoff=0.5)
    assert r.table["attribute"].tolist() == ["sex", "sex", "age_band", "age_band"]
    assert set(r.references) == {"sex", "age_band"}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=30),
    st.floats(0.05, 0.95),
)
def test_air_of_identical_groups_is_one(scores, cutoff):
    s = np.array(scores * 2)
    protected = pd.DataFrame({"g": ["a"] * len(scores) + ["b"] * len(scores)})
    r = fair_lending(s, protected, cutoff=cutoff)
    other = r.table[~r.table["is_reference"]].iloc[0]
    if (s < cutoff).any():
        assert other["air"] == pytest.approx(1.0)
        assert not other["air_flag"]
        assert other["fisher_p"] == pytest.approx(1.0)
    else:
        assert np.isnan(other["air"]) and "approves no one" in other["note"]
    assert other["smd"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reference_groups": {"race": "x"}}, r"attribute\(s\) \['race'\] that protected lacks"),
        (
            {"reference_groups": {"sex": "Z"}},
            r"reference group 'Z' of 'sex' has no rows; its groups are \['A', 'B'\]",
        ),
        ({"cutoff": "0.5"}, r"cutoff must be a number \(a P\(bad\)\); got '0.5'"),
        ({"air_threshold": 1.5}, r"air_threshold must be in \(0, 1\]; got 1.5"),
    ],
)
def test_fairness_refusals(kwargs, match):
    s, protected = _two_groups()
    kwargs = {"cutoff": 0.5, **kwargs}
    with pytest.raises(ConfigError, match=match):
        fair_lending(s, protected, **kwargs)


def test_protected_rows_must_match():
    with pytest.raises(ConfigError, match="protected has 1 rows but score has 2"):
        fair_lending([0.1, 0.2], pd.DataFrame({"sex": ["F"]}), cutoff=0.5)
