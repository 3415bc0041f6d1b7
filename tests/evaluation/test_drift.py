"""Drift against a frozen training reference: sample-size-aware PSI alerts, KS, JS,
missing rates and unseen categories."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lendml.errors import ConfigError, DataValidationError
from lendml.evaluation.drift import (
    SCORE,
    DriftReference,
    DriftSettings,
    drift_by_window,
    fit_drift_reference,
    measure_drift,
    psi_noise_floor,
)


def _frame(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dti": rng.normal(shift, 1.0, n),
            "income": rng.lognormal(10, 0.5, n),
            "home": rng.choice(["own", "rent", "mortgage"], n, p=[0.3, 0.5, 0.2]),
        }
    )


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    ref = _frame(20_000, rng)
    return fit_drift_reference(ref, score=rng.random(20_000), categorical=["home"])


def test_identical_data_at_small_n_does_not_alert_where_the_fixed_rule_would(reference):
    rng = np.random.default_rng(1)
    fixed_rule, ours = 0, 0
    for _ in range(200):
        res = measure_drift(reference, _frame(100, rng))
        row = res.table.set_index("variable").loc["dti"]
        fixed_rule += row["psi"] >= 0.10
        ours += bool(row["alert_psi"])
    assert fixed_rule > 60  # the 0.1 rule cries wolf on unchanged data at n = 100
    assert ours <= 6  # alpha = 1%: a few at most


def test_the_noise_floor_matches_the_simulated_psi_quantile(reference):
    rng = np.random.default_rng(2)
    bins = reference.variables["dti"].bins
    from lendml.evaluation import psi

    sims = [psi(bins, rng.normal(size=300)).value for _ in range(2000)]
    floor = psi_noise_floor(bins.n_reference, 300, len(bins.reference_counts) - 1, 0.01)
    assert np.quantile(sims, 0.99) == pytest.approx(floor, rel=0.25)


def test_a_real_shift_alerts_with_every_statistic(reference):
    rng = np.random.default_rng(3)
    cur = _frame(3000, rng, shift=0.5)
    res = measure_drift(reference, cur)
    row = res.table.set_index("variable").loc["dti"]
    assert row["alert"] and row["psi_level"] in ("moderate", "significant")
    assert row["ks_pvalue"] < 1e-6 and row["js"] > 0.05
    assert "income" not in res.alerts and "home" not in res.alerts


def test_ks_is_the_two_sample_statistic_within_one_percentile(reference):
    rng = np.random.default_rng(4)
    ref_rows = np.random.default_rng(0).normal(0, 1, 20_000)  # the reference's own draw
    cur = rng.normal(0.2, 1.2, 5000)
    res = measure_drift(reference, _frame(5000, rng).assign(dti=cur))
    ks = res.table.set_index("variable").loc["dti", "ks"]
    exact = stats.ks_2samp(ref_rows, cur).statistic
    assert exact - 0.011 <= ks <= exact + 1e-12


def test_missing_rate_change_and_unseen_levels_alert(reference):
    rng = np.random.default_rng(5)
    cur = _frame(2000, rng)
    cur.loc[:199, "income"] = np.nan  # 10% missing, none in the reference
    cur.loc[:59, "home"] = "squatter"  # 3% a level never seen
    res = measure_drift(reference, cur).table.set_index("variable")
    assert res.loc["income", "alert_missing"] and res.loc["income", "missing_current"] == 0.1
    assert res.loc["home", "alert_unseen"] and res.loc["home", "unseen_levels"] == "squatter"
    assert res.loc["home", "unseen_share"] == pytest.approx(0.03)
    assert not res.loc["dti", "alert"]


def test_score_drift_and_a_json_round_trip(reference):
    rng = np.random.default_rng(6)
    cur = _frame(1000, rng)
    back = DriftReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    a = measure_drift(reference, cur, score=rng.random(1000) ** 2)
    b = measure_drift(back, cur, score=rng.random(1000) ** 2)
    assert a.table.iloc[0]["variable"] == SCORE and a.table.iloc[0]["alert"]
    pd.testing.assert_frame_equal(
        a.table.drop(columns=["psi", "js", "ks", "ks_pvalue"]).iloc[1:],
        b.table.drop(columns=["psi", "js", "ks", "ks_pvalue"]).iloc[1:],
    )
    assert json.loads(json.dumps(a.to_dict()))["alerts"][0] == SCORE


def test_too_few_rows_never_alert(reference):
    res = measure_drift(reference, _frame(20, np.random.default_rng(7), shift=3.0))
    assert res.alerts == []  # min_rows = 50
    assert res.table.set_index("variable").loc["dti", "psi"] > 1


def test_daily_windows_find_the_day_the_shift_starts(reference):
    rng = np.random.default_rng(8)
    days = pd.date_range("2025-01-01", periods=6, freq="D", tz="UTC")
    parts = [_frame(500, rng, shift=0.6 if d >= days[3] else 0.0).assign(t=d) for d in days]
    table = drift_by_window(reference, pd.concat(parts), time_column="t")
    dti = table[table["variable"] == "dti"].set_index("window")
    assert list(dti.index[dti["alert"]]) == list(days[3:])
    weekly = drift_by_window(reference, pd.concat(parts), time_column="t", every="W")
    assert weekly["window"].nunique() == 2  # 2025-01-01 is a Wednesday: two ISO weeks


def test_bad_input_is_refused(reference):
    with pytest.raises(DataValidationError, match="lacks variable"):
        measure_drift(reference, pd.DataFrame({"dti": [1.0]}))
    with pytest.raises(DataValidationError, match="empty"):
        measure_drift(reference, _frame(0, np.random.default_rng(0)))
    with pytest.raises(ConfigError, match="alpha"):
        DriftSettings(alpha=0.7)
    with pytest.raises(ConfigError, match="drift reference"):
        DriftReference.from_dict({"format": 99})
    with pytest.raises(ConfigError, match="every"):
        drift_by_window(reference, _frame(10, np.random.default_rng(0)), time_column="x", every="M")
