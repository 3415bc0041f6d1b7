"""Champion vs challenger: paired DeLong test against the O(n²) reference, verdicts, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from lendml.errors import ConfigError
from lendml.evaluation import compare_auc
from tests.evaluation.naive import delong_structural


def _pair(seed: int, n: int = 300, gap: float = 0.0):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.3).astype(int)
    common = rng.normal(size=n)
    champion = y * 1.0 + common + rng.normal(scale=0.8, size=n)
    challenger = y * (1.0 + gap) + common + rng.normal(scale=0.8, size=n)
    return y, np.round(champion, 1), np.round(challenger, 1)  # rounded: ties on purpose


def test_difference_se_matches_structural_components(seed):
    y, a, b = _pair(seed, n=200)
    r = compare_auc(y, a, b, margin=0.02)
    aucs, cov = delong_structural(y, np.vstack([a, b]))
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert r.auc_champion == pytest.approx(aucs[0]) and r.auc_challenger == pytest.approx(aucs[1])
    assert r.diff == pytest.approx(aucs[1] - aucs[0])
    assert r.se == pytest.approx(se, rel=1e-10)
    assert r.correlation == pytest.approx(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))
    assert r.p_value == pytest.approx(2 * norm.sf(abs(r.diff) / se))
    assert r.p_superiority == pytest.approx(norm.sf(r.diff / se))
    assert r.p_noninferiority == pytest.approx(norm.sf((r.diff + 0.02) / se))
    assert r.ci_level == pytest.approx(0.90)
    assert r.ci_low == pytest.approx(r.diff - norm.ppf(0.95) * se)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(4, 40).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(
                lambda v: 2 <= sum(v) <= n - 2
            ),
            st.lists(st.integers(0, 9), min_size=n, max_size=n),
        )
    ),
    st.sampled_from(["same", "exp", "affine"]),
)
def test_identical_rankings_give_no_difference_and_p_one(data, kind):
    y, s = data
    s = np.asarray(s, dtype=float)
    other = {"same": s, "exp": np.exp(s), "affine": 3 * s + 1}[kind]
    r = compare_auc(y, s, other)
    assert r.diff == 0.0 and r.se == 0.0
    assert r.p_value == 1.0 and r.p_superiority == 1.0
    assert not r.superior and r.noninferior  # margin 0.01 > 0
    assert r.verdict == "non-inferior"


def test_clearly_better_challenger_is_superior(seed):
    y, a, b = _pair(seed, n=4000, gap=1.0)
    r = compare_auc(y, a, b)
    assert r.diff > 0.03 and r.superior and r.noninferior and r.verdict == "superior"


def test_clearly_worse_challenger_is_not_noninferior(seed):
    y, a, b = _pair(seed, n=4000, gap=-0.6)
    r = compare_auc(y, a, b, margin=0.01)
    assert r.diff < -0.03 and not r.noninferior and not r.superior
    assert r.verdict == "inferior or inconclusive"


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(-0.5, 0.5), st.floats(0.0, 0.05), st.floats(0.01, 0.2))
def test_verdicts_agree_with_the_interval(seed, gap, margin, alpha):
    y, a, b = _pair(seed, n=150, gap=gap)
    r = compare_auc(y, a, b, margin=margin, alpha=alpha)
    if abs(r.ci_low + margin) > 1e-9:
        assert r.noninferior == (r.ci_low > -margin)
    if abs(r.ci_low) > 1e-9:
        assert r.superior == (r.ci_low > 0)


def test_refusals_name_the_problem():
    y = [0, 1, 0, 1]
    with pytest.raises(ConfigError, match="challenger has 3 rows but y_true has 4"):
        compare_auc(y, [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match=r"0 \(good\) and 1 \(bad\) only; found \[2\.0\]"):
        compare_auc([0, 1, 2, 1], [0.1] * 4, [0.2] * 4)
    with pytest.raises(ConfigError, match=r"challenger has 2 NaN score\(s\) out of 4"):
        compare_auc(y, [0.1, 0.2, 0.3, 0.4], [0.1, np.nan, 0.3, np.nan])
    with pytest.raises(ConfigError, match=r"champion has 1 NaN score"):
        compare_auc(y, [np.nan, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(
        ConfigError, match=r"margin must be an AUC difference in \[0, 0.5\).*got -0.01"
    ):
        compare_auc(y, [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], margin=-0.01)
    with pytest.raises(ConfigError, match=r"one class only"):
        compare_auc([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ConfigError, match="each class needs at least 2 rows"):
        compare_auc([0, 0, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
