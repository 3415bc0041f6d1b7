"""Realised performance by vintage counts only labels observed by the as-of time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from lendml.errors import DataValidationError
from lendml.evaluation.vintage import performance_by_vintage


def _book(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    decided = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 181, n), unit="D"
    )
    p = rng.beta(2, 12, n)
    y = (rng.random(n) < p).astype(float)
    # a default is known after 3 months, a good loan only after 12
    observed = decided + pd.to_timedelta(np.where(y == 1, 90, 365), unit="D")
    return pd.DataFrame({"time": decided, "probability": p, "label": y, "observed_at": observed})


def test_immature_labels_are_not_counted():
    book = _book()
    as_of = pd.Timestamp("2025-09-01", tz="UTC")
    t = performance_by_vintage(book, as_of=as_of).set_index("vintage")
    assert list(t.index) == [f"2025-{m:02d}" for m in range(1, 7)]
    jan = book[book["time"].dt.month == 1]
    mature = jan[jan["observed_at"] <= as_of]
    assert t.loc["2025-01", "mature"] == len(mature)
    assert t.loc["2025-01", "bad_rate"] == pytest.approx(mature["label"].mean())
    # only defaults have surfaced for these vintages: every mature label is a bad one
    assert t.loc["2025-03", "bad_rate"] == 1.0 and np.isnan(t.loc["2025-03", "auc"])
    assert t.loc["2025-01", "months_on_book"] == 8 and t.loc["2025-06", "months_on_book"] == 3


def test_fully_mature_vintages_match_direct_figures():
    book = _book(seed=1)
    t = performance_by_vintage(book, as_of="2026-12-31").set_index("vintage")
    feb = book[book["time"].dt.month == 2]
    assert t.loc["2025-02", "mature"] == len(feb)
    assert t.loc["2025-02", "auc"] == pytest.approx(roc_auc_score(feb["label"], feb["probability"]))
    assert 0.8 < t.loc["2025-02", "observed_to_expected"] < 1.25  # calibrated by construction
    assert 0 < t.loc["2025-02", "ks"] < 1


def test_bad_input_is_named():
    with pytest.raises(DataValidationError, match="observed_at"):
        performance_by_vintage(_book().drop(columns="observed_at"), as_of="2025-06-01")
    bad = _book().assign(label=2.0)
    with pytest.raises(DataValidationError, match="0 \\(good\\), 1 \\(bad\\)"):
        performance_by_vintage(bad, as_of="2025-06-01")
