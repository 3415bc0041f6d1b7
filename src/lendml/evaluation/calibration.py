"""Calibration: does a P(bad) of 5 % mean 5 in 100 go bad?

The reliability curve and the expected calibration error use quantile bins of the score
(equal counts, so every point rests on the same number of rows); the Hosmer–Lemeshow test
uses the same deciles of risk. scikit-learn's ``calibration_curve`` drops empty bins and
returns no counts, and neither scikit-learn nor SciPy has the Hosmer–Lemeshow test, so
both are written here; SciPy gives the chi-squared tail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from lendml.evaluation._binning import assign, quantile_cuts
from lendml.evaluation._checks import (
    as_labels,
    as_scores,
    check_both_classes,
    check_n_bins,
    jsonable,
)


def reliability_curve(y_true: Any, score: Any, *, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted P(bad) against the observed bad rate in quantile bins of the score.

    Returns
    -------
    pandas.DataFrame
        One row per bin, lowest scores first: ``bin``, ``score_min``, ``score_max``,
        ``n``, ``n_bad``, ``mean_score`` (predicted bad rate), ``bad_rate`` (observed)
        and ``gap`` (``bad_rate − mean_score``: positive means the score under-predicts
        risk). Tied scores share a bin, so heavy ties give fewer bins.

    Examples
    --------
    >>> t = reliability_curve([0, 1, 0, 1], [0.2, 0.2, 0.6, 0.6], n_bins=2)
    >>> t[["mean_score", "bad_rate"]].to_numpy().tolist()
    [[0.2, 0.5], [0.6, 0.5]]
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y), probability=True)
    n_bins = check_n_bins(n_bins)
    return _bin_table(y, s, n_bins)


def _bin_table(y: np.ndarray, s: np.ndarray, n_bins: int) -> pd.DataFrame:
    cuts = quantile_cuts(s, n_bins)
    idx = assign(s, cuts)
    k = len(cuts) + 1
    n = np.bincount(idx, minlength=k)
    n_bad = np.bincount(idx, weights=y, minlength=k)
    sum_s = np.bincount(idx, weights=s, minlength=k)
    keep = n > 0
    frame = pd.DataFrame({"idx": idx, "s": s})
    g = frame.groupby("idx", sort=True)["s"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = pd.DataFrame(
            {
                "bin": np.arange(1, int(keep.sum()) + 1),
                "score_min": g.min().reindex(np.arange(k)).to_numpy()[keep],
                "score_max": g.max().reindex(np.arange(k)).to_numpy()[keep],
                "n": n[keep].astype(np.int64),
                "n_bad": n_bad[keep].astype(np.int64),
                "mean_score": (sum_s / n)[keep],
                "bad_rate": (n_bad / n)[keep],
            }
        )
    out["gap"] = out["bad_rate"] - out["mean_score"]
    return out


def expected_calibration_error(y_true: Any, score: Any, *, n_bins: int = 10) -> float:
    """``Σ_b (n_b / N) · |bad_rate_b − mean_score_b|`` over quantile bins of the score.

    Examples
    --------
    >>> round(expected_calibration_error([0, 1, 0, 1], [0.2, 0.2, 0.6, 0.6], n_bins=2), 6)
    0.2
    """
    table = reliability_curve(y_true, score, n_bins=n_bins)
    return _ece(table)


def _ece(table: pd.DataFrame) -> float:
    total = table["n"].sum()
    return float((table["n"] / total * table["gap"].abs()).sum()) if total else float("nan")


@dataclass(frozen=True, eq=False)
class HosmerLemeshow:
    """The Hosmer–Lemeshow goodness-of-fit test over groups of predicted risk.

    Attributes
    ----------
    statistic
        ``Σ_g (O_g − E_g)² / (E_g · (1 − E_g / n_g))``: observed bads ``O`` against
        expected bads ``E = Σ P(bad)`` in each group.
    df
        Degrees of freedom: groups formed minus 2.
    p_value
        ``P(χ²_df ≥ statistic)``; small means the scores are miscalibrated somewhere. With
        hundreds of thousands of rows it rejects even tiny gaps: read it beside the ECE.
    n_groups
        Groups formed (fewer than asked when the score has heavy ties).
    table
        Per group: ``group``, ``n``, ``observed`` bads, ``expected`` bads, ``term``.
    """

    statistic: float
    df: int
    p_value: float
    n_groups: int
    table: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, NaN as ``None``."""
        return jsonable(
            {
                "statistic": self.statistic,
                "df": self.df,
                "p_value": self.p_value,
                "n_groups": self.n_groups,
                "table": self.table,
            }
        )


def hosmer_lemeshow(y_true: Any, score: Any, *, n_groups: int = 10) -> HosmerLemeshow:
    """Hosmer–Lemeshow statistic and p-value (deciles of risk, χ² with groups − 2 df).

    Groups are quantile bins of the score (tied scores share a group). A group whose
    scores are all exactly 0 or all exactly 1 has no variance: it adds 0 if it matches
    its expectation and makes the statistic infinite otherwise.

    Examples
    --------
    >>> hl = hosmer_lemeshow([0, 1, 0, 0, 1, 1], [0.1, 0.1, 0.5, 0.5, 0.9, 0.9], n_groups=3)
    >>> hl.df
    1
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y), probability=True)
    check_both_classes(y)
    n_groups = check_n_bins(n_groups, name="n_groups", low=3)
    bins = _bin_table(y, s, n_groups)
    n = bins["n"].to_numpy(dtype=float)
    observed = bins["n_bad"].to_numpy(dtype=float)
    expected = bins["mean_score"].to_numpy() * n
    var = expected * (1.0 - expected / n)
    diff2 = (observed - expected) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(
            var > 0, diff2 / np.where(var > 0, var, 1.0), np.where(diff2 > 0, np.inf, 0.0)
        )
    statistic = float(term.sum())
    g = len(bins)
    df = g - 2
    p = float(chi2.sf(statistic, df)) if df >= 1 else float("nan")
    table = pd.DataFrame(
        {
            "group": bins["bin"],
            "n": bins["n"],
            "observed": observed,
            "expected": expected,
            "term": term,
        }
    )
    return HosmerLemeshow(statistic, df, p, g, table)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Calibration figures of a P(bad) score.

    Attributes
    ----------
    reliability
        The reliability curve (see :func:`reliability_curve`).
    ece
        Expected calibration error over the same bins.
    hosmer_lemeshow
        The Hosmer–Lemeshow test over deciles of risk.
    mean_score, bad_rate
        Average predicted P(bad) and observed bad rate ("calibration in the large").
    """

    reliability: pd.DataFrame
    ece: float
    hosmer_lemeshow: HosmerLemeshow
    mean_score: float
    bad_rate: float

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, NaN as ``None``."""
        return jsonable(
            {
                "ece": self.ece,
                "mean_score": self.mean_score,
                "bad_rate": self.bad_rate,
                "hosmer_lemeshow": self.hosmer_lemeshow.to_dict(),
                "reliability": self.reliability,
            }
        )


def calibration_metrics(
    y_true: Any, score: Any, *, n_bins: int = 10, n_groups: int = 10
) -> Calibration:
    """Reliability curve, ECE, Hosmer–Lemeshow and calibration-in-the-large.

    Examples
    --------
    >>> c = calibration_metrics([0, 1, 0, 1, 0, 0], [0.2, 0.7, 0.3, 0.6, 0.1, 0.4], n_bins=2)
    >>> round(c.mean_score, 3), round(c.bad_rate, 3)
    (0.383, 0.333)
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y), probability=True)
    check_both_classes(y)
    table = _bin_table(y, s, check_n_bins(n_bins))
    return Calibration(
        reliability=table,
        ece=_ece(table),
        hosmer_lemeshow=hosmer_lemeshow(y, s, n_groups=n_groups),
        mean_score=float(s.mean()),
        bad_rate=float(y.mean()),
    )
