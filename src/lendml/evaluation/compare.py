"""Champion vs challenger on the same rows: the paired DeLong test of the AUC difference.

Both scores are ranked on the same labelled rows, so their AUCs are correlated; DeLong's
covariance of the structural components (DeLong, DeLong & Clarke-Pearson, 1988; computed
with the fast algorithm of Sun & Xu, 2014) gives the standard error of

    diff = AUC(challenger) − AUC(champion)

and two one-sided z-tests:

* superiority: H0 ``diff ≤ 0`` against H1 ``diff > 0``, p = ``1 − Φ(diff / se)``;
* non-inferiority with margin δ: H0 ``diff ≤ −δ`` against H1 ``diff > −δ``,
  p = ``1 − Φ((diff + δ) / se)``.

Each verdict is ``p < alpha``. The reported interval is the two-sided ``1 − 2·alpha``
interval, whose lower bound is the one-sided ``1 − alpha`` bound the tests use: the
challenger is non-inferior exactly when ``ci_low > −δ`` and superior when ``ci_low > 0``.
The two-sided p-value of H0 ``diff = 0`` is given too.

When the two scores rank every pair the same way (one is a strictly increasing transform
of the other) the difference is exactly 0 with no variance: the two-sided p is 1, the
superiority p is 1, and the challenger is non-inferior for any margin δ > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from lendml.errors import ConfigError
from lendml.evaluation._checks import (
    as_labels,
    as_scores,
    check_both_classes,
    check_fraction,
    jsonable,
)
from lendml.evaluation.metrics import delong_components, delong_covariance


@dataclass(frozen=True)
class AUCComparison:
    """The paired DeLong comparison of a challenger against a champion.

    Attributes
    ----------
    auc_champion, auc_challenger
        The two AUCs on the same rows.
    diff
        ``auc_challenger − auc_champion``.
    se
        DeLong standard error of ``diff``.
    ci_low, ci_high
        Two-sided ``ci_level = 1 − 2·alpha`` interval of ``diff``.
    z
        ``diff / se``.
    p_value
        Two-sided p-value of H0 ``diff = 0``.
    p_superiority
        One-sided p-value of H0 ``diff ≤ 0``.
    p_noninferiority
        One-sided p-value of H0 ``diff ≤ −margin``.
    superior, noninferior
        ``p_superiority < alpha`` and ``p_noninferiority < alpha``.
    correlation
        Correlation of the two AUC estimates.
    """

    n: int
    n_bad: int
    auc_champion: float
    auc_challenger: float
    se_champion: float
    se_challenger: float
    correlation: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    ci_level: float
    z: float
    p_value: float
    p_superiority: float
    p_noninferiority: float
    margin: float
    alpha: float
    superior: bool
    noninferior: bool

    @property
    def verdict(self) -> str:
        """One phrase: ``superior``, ``non-inferior`` or ``inferior or inconclusive``."""
        if self.superior:
            return "superior"
        if self.noninferior:
            return "non-inferior"
        return "inferior or inconclusive"

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, NaN as ``None``."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["verdict"] = self.verdict
        return jsonable(out)


def _one_sided_p(stat: float, se: float) -> float:
    """``1 − Φ(stat / se)``, with the degenerate ``se = 0`` read as certainty."""
    if se > 0:
        return float(norm.sf(stat / se))
    return 0.0 if stat > 0 else 1.0


def compare_auc(
    y_true: Any,
    champion: Any,
    challenger: Any,
    *,
    margin: float = 0.01,
    alpha: float = 0.05,
) -> AUCComparison:
    """Paired DeLong test of ``AUC(challenger) − AUC(champion)`` with a non-inferiority margin.

    Parameters
    ----------
    y_true
        1 = bad, 0 = good, one per row; both classes present.
    champion, challenger
        The two scores on the same rows, in the same order (higher = riskier).
    margin
        δ ≥ 0: the challenger may lose up to this much AUC and still be non-inferior.
    alpha
        Level of each one-sided test.

    Raises
    ------
    ConfigError
        Rows that differ in length, labels not 0/1 (or one class only), NaN scores (their
        count is in the message), a margin outside [0, 0.5) or alpha outside (0, 0.5).

    Examples
    --------
    >>> y = [0, 0, 0, 1, 1, 1]
    >>> r = compare_auc(y, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    >>> r.diff, r.p_value, r.noninferior
    (0.0, 1.0, True)
    """
    y = as_labels(y_true)
    n = len(y)
    a = as_scores(champion, name="champion", n=n)
    b = as_scores(challenger, name="challenger", n=n)
    check_both_classes(y)
    if (
        isinstance(margin, bool)
        or not isinstance(margin, int | float | np.floating)
        or not (0.0 <= margin < 0.5)
    ):
        raise ConfigError(
            f"margin must be an AUC difference in [0, 0.5), e.g. 0.01; got {margin!r}."
        )
    alpha = check_fraction(alpha, name="alpha", low=0.0, high=0.5)
    aucs, v10, v01 = delong_components(y, np.vstack([a, b]))
    cov = delong_covariance(v10, v01)
    var_a, var_b, cov_ab = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    diff = float(aucs[1] - aucs[0])
    var = var_a + var_b - 2.0 * cov_ab
    if not np.isfinite(var):
        raise ConfigError(
            f"The AUC difference has no DeLong variance with {int(y.sum())} bad(s) and "
            f"{n - int(y.sum())} good(s): each class needs at least 2 rows."
        )
    se = float(np.sqrt(max(var, 0.0)))
    # Floating-point noise around an exact tie of the two rankings is not a difference.
    if se < 1e-12:
        se = 0.0
    z_one = float(norm.ppf(1.0 - alpha))
    z = diff / se if se > 0 else (0.0 if diff == 0 else float(np.sign(diff) * np.inf))
    p_two = float(2.0 * norm.sf(abs(z))) if se > 0 else (1.0 if diff == 0 else 0.0)
    p_sup = _one_sided_p(diff, se)
    p_ni = _one_sided_p(diff + float(margin), se)
    denom = np.sqrt(var_a * var_b)
    corr = float(cov_ab / denom) if denom > 0 else float("nan")
    return AUCComparison(
        n=n,
        n_bad=int(y.sum()),
        auc_champion=float(aucs[0]),
        auc_challenger=float(aucs[1]),
        se_champion=float(np.sqrt(max(var_a, 0.0))),
        se_challenger=float(np.sqrt(max(var_b, 0.0))),
        correlation=corr,
        diff=diff,
        se=se,
        ci_low=diff - z_one * se,
        ci_high=diff + z_one * se,
        ci_level=1.0 - 2.0 * alpha,
        z=z,
        p_value=p_two,
        p_superiority=p_sup,
        p_noninferiority=p_ni,
        margin=float(margin),
        alpha=alpha,
        superior=p_sup < alpha,
        noninferior=p_ni < alpha,
    )
