"""Metrics per segment and per period: one-class groups, empty groups, missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lendml.errors import ConfigError
from lendml.evaluation import metrics_by_group, metrics_by_period
from tests.evaluation.naive import auc_pairs, ks_thresholds


def test_group_table_against_naive_metrics(seed):
    rng = np.random.default_rng(seed)
    n = 600
    g = rng.choice(["card", "loan", "bnpl"], n)
    y = (rng.uniform(size=n) < 0.25).astype(int)
    s = np.round(1 / (1 + np.exp(-(y + rng.normal(size=n)))), 2)
    t = metrics_by_group(y, s, g, name="product")
    assert t["product"].tolist() == ["bnpl", "card", "loan"]
    for row in t.itertuples():
        mask = g == row.product
        assert row.n == mask.sum() and row.n_bad == y[mask].sum()
        assert row.auc == pytest.approx(auc_pairs(y[mask], s[mask]))
        assert row.ks == pytest.approx(ks_thresholds(y[mask], s[mask])[0])
        assert row.note == ""


def test_one_class_group_has_nan_auc_and_says_why():
    y = [0, 0, 0, 1, 0, 1]
    s = [0.1, 0.2, 0.3, 0.9, 0.2, 0.8]
    t = metrics_by_group(y, s, ["a", "a", "a", "b", "b", "b"])
    a, b = t.iloc[0], t.iloc[1]
    assert np.isnan(a["auc"]) and np.isnan(a["ks"])
    assert a["note"] == "one class only (no bads): AUC and KS undefined"
    assert b["auc"] == 1.0 and "fewer than 10" in b["note"]
    t2 = metrics_by_group([1, 1, 0, 1], [0.5, 0.6, 0.2, 0.9], ["x", "x", "y", "y"])
    assert t2.iloc[0]["note"] == "one class only (no goods): AUC and KS undefined"


def test_unused_category_is_an_empty_group_and_missing_values_their_own():
    g = pd.Series(pd.Categorical(["a", "a", None, "b"], categories=["a", "b", "c"]))
    t = metrics_by_group([0, 1, 0, 1], [0.1, 0.9, 0.5, 0.8], g, name="region")
    assert t["region"].tolist() == ["a", "b", "c", "(missing)"]
    assert t["n"].tolist() == [2, 1, 0, 1]
    empty = t.iloc[2]
    assert empty["note"] == "no rows" and np.isnan(empty["bad_rate"]) and np.isnan(empty["auc"])


def test_numeric_groups_sort_by_value():
    t = metrics_by_group([0, 1, 0, 1], [0.1, 0.9, 0.5, 0.8], [10, 2, 10, 2])
    assert t["group"].tolist() == ["2", "10"]


def test_too_many_groups_are_refused():
    n = 1500
    with pytest.raises(ConfigError, match=r"1,500 distinct values, more than 1,000.*pd\.cut"):
        metrics_by_group(np.arange(n) % 2, np.linspace(0, 1, n), np.arange(n), name="loan_id")


def test_period_table_lists_empty_months_and_missing_times():
    times = pd.Series(["2024-01-05", "2024-01-20", "2024-04-02", "2024-04-09", None], dtype=object)
    t = metrics_by_period([0, 1, 0, 1, 1], [0.1, 0.9, 0.2, 0.8, 0.5], times)
    assert t["period"].tolist() == ["2024-01", "2024-02", "2024-03", "2024-04", "(missing)"]
    assert t["n"].tolist() == [2, 0, 0, 2, 1]
    assert t.iloc[1]["note"] == "no rows"
    assert t.iloc[0]["auc"] == 1.0


def test_periods_are_utc_and_freq_is_configurable():
    # 23:30 on 31 March in New York is already April in UTC.
    times = pd.Series(
        pd.to_datetime(["2024-03-31 23:30", "2024-01-02 00:00"]).tz_localize("America/New_York")
    )
    t = metrics_by_period([0, 1], [0.1, 0.9], times)
    assert t["period"].tolist() == ["2024-01", "2024-02", "2024-03", "2024-04"]
    assert t["n"].tolist() == [1, 0, 0, 1]
    q = metrics_by_period([0, 1], [0.1, 0.9], times, freq="Q")
    assert q["period"].tolist() == ["2024Q1", "2024Q2"]


def test_bad_period_inputs_are_refused():
    with pytest.raises(ConfigError, match=r"period_freq 'monthly' is not a pandas period"):
        metrics_by_period([0, 1], [0.1, 0.9], ["2024-01-01", "2024-02-01"], freq="monthly")
    with pytest.raises(ConfigError, match="periods has 1 rows but y_true has 2"):
        metrics_by_period([0, 1], [0.1, 0.9], ["2024-01-01"])
    with pytest.raises(ConfigError, match="periods must be timestamps"):
        metrics_by_period([0, 1], [0.1, 0.9], ["soon", "later"])
