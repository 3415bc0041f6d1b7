"""Discrimination: AUC with its DeLong interval, Gini, KS, log loss, Brier, PR-AUC, gains.

Scores are probabilities of the bad outcome (P(default)): higher means riskier, and label
1 means bad. scikit-learn computes the ROC curve, log loss, Brier score and average
precision; the DeLong variance is written here because neither scikit-learn nor SciPy
provides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_curve

from lendml.evaluation._binning import assign, quantile_cuts
from lendml.evaluation._checks import (
    as_labels,
    as_scores,
    check_both_classes,
    check_fraction,
    check_n_bins,
    jsonable,
)

#: The ROC curve kept for plots and JSON: its points at this many evenly spaced FPRs.
ROC_POINTS = 51


# --- DeLong (written by hand: scikit-learn and SciPy have no DeLong variance) -------------


def delong_components(
    y: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong structural components of ``k`` scores on the same rows.

    The fast algorithm of Sun & Xu (2014): three midrank computations per score
    (bads among bads, goods among goods, all rows) give every structural component in
    O(n log n) instead of the O(m·n) pairs of DeLong et al. (1988). Ties count one half.

    Parameters
    ----------
    y
        Labels, 1 = bad; both classes present.
    scores
        Shape ``(k, n)``: one row per score.

    Returns
    -------
    aucs
        Shape ``(k,)``.
    v10
        Shape ``(k, m)``: for each bad, the share of goods it outranks.
    v01
        Shape ``(k, n_good)``: for each good, the share of bads that outrank it.
    """
    pos = y == 1
    m = int(pos.sum())
    n = len(y) - m
    k = scores.shape[0]
    aucs = np.empty(k)
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    for r in range(k):
        x = scores[r, pos]
        z = scores[r, ~pos]
        tx = rankdata(x)
        tz = rankdata(z)
        t_all = rankdata(np.concatenate([x, z]))
        aucs[r] = (t_all[:m].sum() - m * (m + 1) / 2.0) / (m * n)
        v10[r] = (t_all[:m] - tx) / n
        v01[r] = 1.0 - (t_all[m:] - tz) / m
    return aucs, v10, v01


def delong_covariance(v10: np.ndarray, v01: np.ndarray) -> np.ndarray:
    """The ``(k, k)`` DeLong covariance of the AUCs from their structural components."""
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        k = v10.shape[0]
        return np.full((k, k), np.nan)
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return s10 / m + s01 / n


@dataclass(frozen=True)
class AUCResult:
    """The AUC with its DeLong standard error and a normal confidence interval.

    Attributes
    ----------
    auc
        Probability that a random bad scores above a random good (ties count one half).
    se
        DeLong standard error (NaN with fewer than two bads or two goods).
    ci_low, ci_high
        ``auc ± z(1 - alpha/2) · se``, clipped to [0, 1].
    ci_level
        ``1 - alpha``.
    n_bad, n_good
        The class counts the AUC is computed on.
    """

    auc: float
    se: float
    ci_low: float
    ci_high: float
    ci_level: float
    n_bad: int
    n_good: int

    @property
    def gini(self) -> float:
        """``2 · AUC − 1`` (the accuracy ratio)."""
        return 2.0 * self.auc - 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, NaN as ``None``."""
        return jsonable(
            {
                "auc": self.auc,
                "se": self.se,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "ci_level": self.ci_level,
                "n_bad": self.n_bad,
                "n_good": self.n_good,
            }
        )


def _normal_ci(value: float, se: float, alpha: float) -> tuple[float, float]:
    if not np.isfinite(se):
        return float("nan"), float("nan")
    half = float(norm.ppf(1.0 - alpha / 2.0)) * se
    return max(0.0, value - half), min(1.0, value + half)


def auc_delong(y_true: Any, score: Any, *, alpha: float = 0.05) -> AUCResult:
    """AUC with the DeLong standard error and a ``1 - alpha`` confidence interval.

    Parameters
    ----------
    y_true
        1 = bad, 0 = good.
    score
        Higher = riskier (e.g. P(bad)); any finite numbers.
    alpha
        The interval is ``1 - alpha`` two-sided (default 95 %).

    Returns
    -------
    AUCResult

    Raises
    ------
    ConfigError
        Labels not 0/1, NaN scores, lengths that differ, or one class only.

    Examples
    --------
    >>> r = auc_delong([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> r.auc
    0.75
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y))
    check_both_classes(y)
    alpha = check_fraction(alpha, name="alpha", low=0.0, high=1.0)
    aucs, v10, v01 = delong_components(y, s[None, :])
    var = float(delong_covariance(v10, v01)[0, 0])
    se = float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else float("nan")
    auc = float(aucs[0])
    low, high = _normal_ci(auc, se, alpha)
    n_bad = int(y.sum())
    return AUCResult(auc, se, low, high, 1.0 - alpha, n_bad, len(y) - n_bad)


def auc_or_nan(y: np.ndarray, s: np.ndarray) -> float:
    """The AUC by midranks, or NaN when a class is absent (group tables use this)."""
    m = int(y.sum())
    n = len(y) - m
    if m == 0 or n == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - m * (m + 1) / 2.0) / (m * n))


# --- KS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KSResult:
    """Kolmogorov–Smirnov separation: ``max(TPR − FPR)`` and where it occurs.

    Attributes
    ----------
    ks
        The largest gap between the share of bads and the share of goods scoring at or
        above a threshold.
    score
        That threshold: declining every row with ``score >= this`` captures the gap
        (NaN when the gap is 0).
    """

    ks: float
    score: float


def _ks_from_roc(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> KSResult:
    gap = tpr - fpr
    i = int(np.argmax(gap))
    ks = float(gap[i])
    if ks <= 0.0:
        return KSResult(0.0, float("nan"))
    return KSResult(ks, float(thresholds[i]))


def ks_statistic(y_true: Any, score: Any) -> KSResult:
    """KS statistic of a score: the maximum over thresholds of TPR − FPR.

    TPR is the share of bads with ``score >= t``, FPR the share of goods. This equals
    ``scipy.stats.ks_2samp(bad_scores, good_scores, alternative='less').statistic``.

    Examples
    --------
    >>> ks_statistic([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]).ks
    1.0
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y))
    check_both_classes(y)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=True)
    return _ks_from_roc(fpr, tpr, thr)


def ks_or_nan(y: np.ndarray, s: np.ndarray) -> float:
    """The KS statistic, or NaN when a class is absent."""
    m = int(y.sum())
    if m == 0 or m == len(y):
        return float("nan")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=True)
    return _ks_from_roc(fpr, tpr, thr).ks


# --- the bundle ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Discrimination:
    """How well the score ranks bads above goods, plus the probability-based losses.

    Attributes
    ----------
    auc
        AUC with the DeLong interval.
    gini, gini_ci_low, gini_ci_high
        ``2 · AUC − 1`` and its interval.
    ks, ks_score
        KS statistic and the score threshold where it occurs.
    log_loss
        Mean negative log-likelihood of the labels under the scores (lower is better).
    brier
        Mean squared error of the scores against the labels (lower is better).
    pr_auc
        Average precision (area under precision–recall, bads as the positive class);
        compare it with ``bad_rate``, its value for a random score.
    bad_rate
        Share of bads.
    roc
        ROC points (``fpr``, ``tpr``, ``threshold``) at evenly spaced FPRs, for plots.
    """

    auc: AUCResult
    gini: float
    gini_ci_low: float
    gini_ci_high: float
    ks: float
    ks_score: float
    log_loss: float
    brier: float
    pr_auc: float
    bad_rate: float
    roc: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, NaN as ``None``; the ROC points as a list of records."""
        return jsonable(
            {
                "auc": self.auc.to_dict(),
                "gini": self.gini,
                "gini_ci_low": self.gini_ci_low,
                "gini_ci_high": self.gini_ci_high,
                "ks": self.ks,
                "ks_score": self.ks_score,
                "log_loss": self.log_loss,
                "brier": self.brier,
                "pr_auc": self.pr_auc,
                "bad_rate": self.bad_rate,
                "roc": self.roc,
            }
        )


def _roc_table(fpr: np.ndarray, tpr: np.ndarray, thr: np.ndarray) -> pd.DataFrame:
    # For each target FPR the last curve point at or below it: real points, evenly spread.
    grid = np.linspace(0.0, 1.0, ROC_POINTS)
    idx = np.unique(np.searchsorted(fpr, grid, side="right") - 1)
    idx = np.unique(np.concatenate([idx, [len(fpr) - 1]]))
    thresholds = thr[idx].astype(float)
    thresholds[~np.isfinite(thresholds)] = np.nan
    return pd.DataFrame({"fpr": fpr[idx], "tpr": tpr[idx], "threshold": thresholds})


def discrimination(y_true: Any, score: Any, *, alpha: float = 0.05) -> Discrimination:
    """AUC (DeLong CI), Gini, KS, log loss, Brier and PR-AUC of a P(bad) score.

    Parameters
    ----------
    y_true
        1 = bad, 0 = good; both classes present.
    score
        P(bad) in [0, 1].
    alpha
        The AUC and Gini intervals are ``1 - alpha`` two-sided.

    Examples
    --------
    >>> d = discrimination([0, 0, 1, 1, 0, 1], [0.1, 0.3, 0.7, 0.9, 0.2, 0.4])
    >>> round(d.gini, 3)
    1.0
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y), probability=True)
    check_both_classes(y)
    auc = auc_delong(y, s, alpha=alpha)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=True)
    ks = _ks_from_roc(fpr, tpr, thr)
    return Discrimination(
        auc=auc,
        gini=auc.gini,
        gini_ci_low=2.0 * auc.ci_low - 1.0,
        gini_ci_high=2.0 * auc.ci_high - 1.0,
        ks=ks.ks,
        ks_score=ks.score,
        log_loss=float(log_loss(y, s, labels=[0, 1])),
        brier=float(brier_score_loss(y, s)),
        pr_auc=float(average_precision_score(y, s)),
        bad_rate=float(y.mean()),
        roc=_roc_table(fpr, tpr, thr),
    )


# --- gains and distributions --------------------------------------------------------------


def gains_table(y_true: Any, score: Any, *, n_bins: int = 10) -> pd.DataFrame:
    """Gains and lift by score band, band 1 holding the riskiest (highest) scores.

    Bands are cut at the quantiles of the score; tied scores share a band, so with heavy
    ties there are fewer bands of unequal size.

    Returns
    -------
    pandas.DataFrame
        One row per band: ``band``, ``score_min``, ``score_max``, ``n``, ``n_bad``,
        ``bad_rate``, ``share`` (of all rows), ``cum_share``, ``cum_bad_rate``,
        ``cum_bads_captured`` (share of all bads in bands 1..b), ``lift`` (band bad rate
        over the overall bad rate) and ``cum_lift``.

    Examples
    --------
    >>> t = gains_table([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], n_bins=2)
    >>> t["cum_bads_captured"].tolist()
    [1.0, 1.0]
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y))
    check_both_classes(y)
    n_bins = check_n_bins(n_bins)
    cuts = quantile_cuts(s, n_bins)
    n_real = len(cuts) + 1
    band = n_real - assign(s, cuts)  # 1 = highest scores
    frame = pd.DataFrame({"band": band, "y": y, "s": s})
    g = frame.groupby("band", sort=True)
    out = pd.DataFrame(
        {
            "score_min": g["s"].min(),
            "score_max": g["s"].max(),
            "n": g["y"].size(),
            "n_bad": g["y"].sum(),
        }
    ).reset_index()
    total, total_bad = len(y), int(y.sum())
    overall = total_bad / total
    out["bad_rate"] = out["n_bad"] / out["n"]
    out["share"] = out["n"] / total
    out["cum_share"] = out["n"].cumsum() / total
    out["cum_bad_rate"] = out["n_bad"].cumsum() / out["n"].cumsum()
    out["cum_bads_captured"] = out["n_bad"].cumsum() / total_bad
    out["lift"] = out["bad_rate"] / overall
    out["cum_lift"] = out["cum_bad_rate"] / overall
    out["n"] = out["n"].astype(np.int64)
    out["n_bad"] = out["n_bad"].astype(np.int64)
    return out


def score_distribution(y_true: Any, score: Any, *, n_bins: int = 20) -> pd.DataFrame:
    """Histograms of the score by class on common equal-width bins over its range.

    Returns
    -------
    pandas.DataFrame
        ``bin_low``, ``bin_high``, ``n_good``, ``n_bad``, ``share_good`` and ``share_bad``
        (each class's counts over its own total, so the two histograms compare in shape).
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y))
    n_bins = check_n_bins(n_bins, low=1)
    lo, hi = (float(s.min()), float(s.max())) if len(s) else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1e-9
    edges = np.linspace(lo, hi, n_bins + 1)
    good, _ = np.histogram(s[y == 0], bins=edges)
    bad, _ = np.histogram(s[y == 1], bins=edges)
    n_good, n_bad = max(int(good.sum()), 1), max(int(bad.sum()), 1)
    return pd.DataFrame(
        {
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "n_good": good.astype(np.int64),
            "n_bad": bad.astype(np.int64),
            "share_good": good / n_good,
            "share_bad": bad / n_bad,
        }
    )
