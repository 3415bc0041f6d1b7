"""Discrimination metrics against brute-force references, a published example and SciPy."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss

from lendml.errors import ConfigError
from lendml.evaluation import (
    auc_delong,
    discrimination,
    gains_table,
    ks_statistic,
    score_distribution,
)
from tests.evaluation.naive import auc_pairs, delong_structural, ks_thresholds

# Labels of 2..40 rows with both classes, and scores on a coarse grid so ties are common.
labels_and_scores = st.integers(4, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda v: 2 <= sum(v) <= n - 2),
        st.lists(st.integers(0, 8).map(lambda k: k / 8), min_size=n, max_size=n),
    )
)


def _sample(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.3).astype(int)
    s = 1 / (1 + np.exp(-(y * 1.2 + rng.normal(size=n))))
    if ties:
        s = np.round(s, 1)
    return y, s


def test_hanley_mcneil_published_example():
    """Hanley & McNeil (1982), Radiology 143:29, table 1: 109 CT images rated 1..5.

    Published: AUC 0.893 with SE 0.032 by their exponential approximation. DeLong's SE is
    a different (nonparametric) estimator of the same quantity, so it must agree roughly.
    """
    normal = [33, 6, 6, 11, 2]
    abnormal = [3, 2, 2, 11, 33]
    ratings = np.arange(1, 6)
    s = np.concatenate([np.repeat(ratings, normal), np.repeat(ratings, abnormal)]).astype(float)
    y = np.concatenate([np.zeros(58, int), np.ones(51, int)])
    r = auc_delong(y, s)
    assert round(r.auc, 3) == 0.893
    assert r.n_bad == 51 and r.n_good == 58
    assert r.se == pytest.approx(0.032, rel=0.1)
    # and exactly the O(n²) structural-components variance
    _, cov = delong_structural(y, s)
    assert r.se == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_delong_variance_match_brute_force(seed, ties):
    y, s = _sample(seed, n=200, ties=ties)
    r = auc_delong(y, s)
    aucs, cov = delong_structural(y, s)
    assert r.auc == pytest.approx(auc_pairs(y, s), abs=1e-12)
    assert r.auc == pytest.approx(aucs[0], abs=1e-12)
    assert r.se == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-10)
    assert r.ci_low == pytest.approx(r.auc - 1.959963984540054 * r.se, abs=1e-12)
    assert r.ci_high == pytest.approx(r.auc + 1.959963984540054 * r.se, abs=1e-12)
    assert r.gini == pytest.approx(2 * r.auc - 1)


def test_auc_ci_level_follows_alpha(seed):
    y, s = _sample(seed)
    wide, narrow = auc_delong(y, s, alpha=0.01), auc_delong(y, s, alpha=0.2)
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high
    assert wide.ci_level == pytest.approx(0.99)


def test_auc_ci_is_clipped_to_unit_interval():
    r = auc_delong([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert r.auc == 1.0 and r.ci_high == 1.0 and r.ci_low <= 1.0


def test_auc_with_one_bad_has_no_standard_error():
    r = auc_delong([0, 0, 1], [0.1, 0.5, 0.3])
    assert r.auc == 0.5
    assert np.isnan(r.se) and np.isnan(r.ci_low)


@settings(max_examples=60, deadline=None)
@given(labels_and_scores)
def test_auc_equals_pairwise_count_with_ties(data):
    y, s = data
    assert auc_delong(y, s).auc == pytest.approx(auc_pairs(y, s), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(labels_and_scores, st.sampled_from(["exp", "cube", "affine", "logit"]))
def test_auc_invariant_under_strictly_increasing_transforms(data, kind):
    y, s = data
    s = np.asarray(s)
    f = {
        "exp": np.exp,
        "cube": lambda v: (v - 0.3) ** 3,
        "affine": lambda v: 7.0 * v - 2.0,
        "logit": lambda v: np.log((v + 0.01) / (1.01 - v)),
    }[kind]
    a, b = auc_delong(y, s), auc_delong(y, f(s))
    assert b.auc == pytest.approx(a.auc, abs=1e-12)
    assert b.se == pytest.approx(a.se, abs=1e-12)


def test_delong_handles_a_million_rows_fast():
    rng = np.random.default_rng(0)
    n = 1_000_000
    y = (rng.uniform(size=n) < 0.05).astype(np.int8)
    s = rng.normal(size=n) + y
    t0 = time.perf_counter()
    r = auc_delong(y, s)
    elapsed = time.perf_counter() - t0
    assert 0.7 < r.auc < 0.8 and 0 < r.se < 0.01
    # O(n log n): ~0.5 s here; an O(n²) pair count would take hours. Generous for CI noise.
    assert elapsed < 5.0


def test_ks_matches_scipy_and_brute_force(seed):
    y, s = _sample(seed, n=400)
    r = ks_statistic(y, s)
    ref = ks_2samp(s[y == 1], s[y == 0], alternative="less")
    assert r.ks == pytest.approx(ref.statistic, abs=1e-12)
    # Bads score higher here, so the two-sided statistic is the same gap.
    assert r.ks == pytest.approx(ks_2samp(s[y == 1], s[y == 0]).statistic, abs=1e-12)
    best, where = ks_thresholds(y, s)
    assert r.ks == pytest.approx(best, abs=1e-12)
    assert r.score == pytest.approx(where)


@settings(max_examples=40, deadline=None)
@given(labels_and_scores)
def test_ks_matches_threshold_sweep_with_ties(data):
    y, s = data
    best, _ = ks_thresholds(y, s)
    assert ks_statistic(y, s).ks == pytest.approx(best, abs=1e-12)


def test_ks_of_an_inverted_score_is_zero_with_no_threshold():
    r = ks_statistic([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4])
    assert r.ks == 0.0 and np.isnan(r.score)


def test_discrimination_bundle_agrees_with_sklearn(seed):
    y, s = _sample(seed)
    d = discrimination(y, s)
    assert d.auc.auc == pytest.approx(auc_pairs(y, s))
    assert d.gini == pytest.approx(2 * d.auc.auc - 1)
    assert d.gini_ci_low == pytest.approx(2 * d.auc.ci_low - 1)
    assert d.log_loss == pytest.approx(log_loss(y, s))
    assert d.brier == pytest.approx(brier_score_loss(y, s))
    assert d.pr_auc == pytest.approx(average_precision_score(y, s))
    assert d.bad_rate == pytest.approx(y.mean())
    roc = d.roc
    assert roc["fpr"].iloc[0] == 0.0 and roc["fpr"].iloc[-1] == 1.0 and roc["tpr"].iloc[-1] == 1.0
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].is_monotonic_increasing
    assert len(roc) <= 52


def test_log_loss_hand_figure():
    d = discrimination([0, 1], [0.2, 0.6])
    assert d.log_loss == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert d.brier == pytest.approx((0.2**2 + 0.4**2) / 2)


def test_gains_table_hand_case():
    # 10 rows, 4 bads, scores distinct: 5 bands of 2 rows.
    s = np.arange(10) / 10
    y = np.array([0, 0, 0, 0, 1, 0, 1, 0, 1, 1])
    t = gains_table(y, s, n_bins=5)
    assert t["band"].tolist() == [1, 2, 3, 4, 5]
    assert t["n"].tolist() == [2] * 5
    assert t["n_bad"].tolist() == [2, 1, 1, 0, 0]
    assert t["score_min"].iloc[0] == 0.8 and t["score_max"].iloc[-1] == 0.1
    assert t["cum_bads_captured"].tolist() == pytest.approx([0.5, 0.75, 1.0, 1.0, 1.0])
    assert t["lift"].tolist() == pytest.approx([2.5, 1.25, 1.25, 0.0, 0.0])
    assert t["cum_lift"].iloc[-1] == pytest.approx(1.0)
    assert t["cum_share"].iloc[-1] == pytest.approx(1.0)


def test_gains_keep_tied_scores_in_one_band():
    s = np.array([0.1] * 6 + [0.9] * 4)
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 0, 1])
    t = gains_table(y, s, n_bins=10)
    assert t["n"].tolist() == [4, 6]
    assert t["bad_rate"].tolist() == pytest.approx([0.75, 1 / 6])


def test_score_distribution_counts_every_row_by_class(seed):
    y, s = _sample(seed)
    t = score_distribution(y, s, n_bins=15)
    assert len(t) == 15
    assert t["n_good"].sum() == (y == 0).sum() and t["n_bad"].sum() == y.sum()
    assert t["share_good"].sum() == pytest.approx(1.0) and t["share_bad"].sum() == pytest.approx(
        1.0
    )


@pytest.mark.parametrize(
    ("y", "s", "match"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], r"0 \(good\) and 1 \(bad\) only; found \[2\.0\]"),
        (["good", "bad"], [0.1, 0.2], r"0 \(good\) and 1 \(bad\) only; found \['good', 'bad'\]"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], r"1 missing label\(s\).*row\(s\) \[2\].*immature"),
        ([0, 0, 0], [0.1, 0.2, 0.3], r"one class only \(0 bad out of 3 rows\)"),
        (
            [0, 1, 1],
            [0.1, np.nan, np.nan],
            r"2 NaN score\(s\) out of 3, first at row\(s\) \[1, 2\]",
        ),
        ([0, 1, 1], [0.1, 0.2], r"score has 2 rows but y_true has 3"),
        ([0, 1], [0.1, np.inf], r"1 infinite score"),
    ],
)
def test_bad_inputs_are_refused_with_the_value(y, s, match):
    with pytest.raises(ConfigError, match=match):
        auc_delong(y, s)


def test_probability_scores_must_lie_in_unit_interval():
    with pytest.raises(ConfigError, match=r"in \[0, 1\]; got values from 0\.1 to 3\.0"):
        discrimination([0, 1], [0.1, 3.0])


def test_two_column_scores_are_refused():
    with pytest.raises(ConfigError, match=r"shape \(2, 2\).*take column 1"):
        auc_delong([0, 1], [[0.9, 0.1], [0.2, 0.8]])


def test_boolean_labels_are_accepted():
    assert auc_delong(np.array([False, True]), [0.1, 0.9]).auc == 1.0
