"""Reliability curve, ECE and Hosmer–Lemeshow against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from lendml.errors import ConfigError
from lendml.evaluation import (
    calibration_metrics,
    expected_calibration_error,
    hosmer_lemeshow,
    reliability_curve,
)

# Three risk groups of 10 rows: P(bad) 0.1, 0.3, 0.6 with 2, 2 and 7 bads.
S3 = np.array([0.1] * 10 + [0.3] * 10 + [0.6] * 10)
Y3 = np.array([1, 1] + [0] * 8 + [1, 1] + [0] * 8 + [1] * 7 + [0] * 3)


def test_hosmer_lemeshow_hand_computation():
    hl = hosmer_lemeshow(Y3, S3, n_groups=3)
    # (O − E)² / (E (1 − E/n)) per group, by hand:
    by_hand = (2 - 1) ** 2 / (1 * 0.9) + (2 - 3) ** 2 / (3 * 0.7) + (7 - 6) ** 2 / (6 * 0.4)
    assert hl.statistic == pytest.approx(by_hand)  # 2.00397
    assert hl.df == 1 and hl.n_groups == 3
    assert hl.p_value == pytest.approx(chi2.sf(by_hand, 1))
    assert hl.table["observed"].tolist() == [2, 2, 7]
    assert hl.table["expected"].tolist() == pytest.approx([1, 3, 6])


def test_hosmer_lemeshow_ten_groups_has_eight_df(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.6, 5000)
    y = (rng.uniform(size=5000) < p).astype(int)
    hl = hosmer_lemeshow(y, p)
    assert hl.n_groups == 10 and hl.df == 8
    assert hl.table["n"].sum() == 5000
    # Labels drawn from the scores themselves: calibrated, so not rejected at 0.1 %.
    assert hl.p_value > 0.001
    # A score that halves every probability is rejected.
    assert hosmer_lemeshow(y, p / 2).p_value < 1e-6


def test_hosmer_lemeshow_degenerate_group_with_exact_zero_scores():
    y = np.array([0] * 10 + [1, 0] * 5)
    s = np.array([0.0] * 10 + [0.5] * 10)
    hl = hosmer_lemeshow(y, s, n_groups=3)
    # The all-zero group expects 0 bads and has 0: it adds nothing.
    assert np.isfinite(hl.statistic)
    y2 = y.copy()
    y2[0] = 1
    assert hosmer_lemeshow(y2, s, n_groups=3).statistic == np.inf


def test_reliability_curve_and_ece_hand_figures():
    t = reliability_curve(Y3, S3, n_bins=3)
    assert t["n"].tolist() == [10, 10, 10]
    assert t["mean_score"].tolist() == pytest.approx([0.1, 0.3, 0.6])
    assert t["bad_rate"].tolist() == pytest.approx([0.2, 0.2, 0.7])
    assert t["gap"].tolist() == pytest.approx([0.1, -0.1, 0.1])
    assert expected_calibration_error(Y3, S3, n_bins=3) == pytest.approx(0.1)


def test_reliability_bins_are_quantiles(seed):
    rng = np.random.default_rng(seed)
    s = rng.uniform(size=1000)
    y = (rng.uniform(size=1000) < s).astype(int)
    t = reliability_curve(y, s, n_bins=10)
    assert t["n"].tolist() == [100] * 10
    assert t["score_min"].is_monotonic_increasing


def test_perfectly_calibrated_groups_have_zero_ece():
    s = np.array([0.25] * 4 + [0.5] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 0, 0])
    assert expected_calibration_error(y, s, n_bins=2) == pytest.approx(0.0)
    c = calibration_metrics(y, s, n_bins=2, n_groups=3)
    assert c.mean_score == pytest.approx(y.mean())


def test_calibration_refuses_non_probabilities():
    with pytest.raises(ConfigError, match="probability of the bad outcome"):
        calibration_metrics([0, 1], [-0.5, 0.5])


def test_hosmer_lemeshow_needs_three_groups():
    with pytest.raises(ConfigError, match="n_groups must be an integer >= 3; got 2"):
        hosmer_lemeshow(Y3, S3, n_groups=2)
