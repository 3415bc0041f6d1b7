"""Realised performance by vintage, counting only labels that have matured.

A credit outcome (did the loan default within 12 months?) is known months after the
decision. Monitoring therefore groups decisions by **vintage** (the month they were made)
and, at a given as-of time, measures each vintage on the outcomes already observed — a
label with ``observed_at`` after the as-of time is not counted (it would bias the bad rate
down, since defaults surface before "paid" does). Per vintage: decisions, mature labels,
months on book, bad rate, mean predicted P(bad), their ratio (calibration), AUC, KS and
Brier score. AUC and KS come from scikit-learn and SciPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import brier_score_loss, roc_auc_score

from lendml.errors import DataValidationError


def performance_by_vintage(
    frame: pd.DataFrame,
    *,
    as_of: Any,
    score: str = "probability",
    label: str = "label",
    decided_at: str = "time",
    observed_at: str = "observed_at",
    min_labels: int = 30,
) -> pd.DataFrame:
    """One row per vintage (month of ``decided_at``) with its realised performance.

    Parameters
    ----------
    frame
        One row per decision: the predicted P(bad) (``score``), the outcome (``label``,
        1 = bad, missing while unknown), when the decision was made and when the outcome
        became known (``observed_at``, missing while unknown).
    as_of
        The time of the measurement (UTC): outcomes observed after it are not counted.
    min_labels
        AUC and KS need this many mature labels of a vintage (and both outcomes).

    Examples
    --------
    >>> import pandas as pd
    >>> f = pd.DataFrame({
    ...     "time": pd.to_datetime(["2025-01-05", "2025-01-20", "2025-02-03"], utc=True),
    ...     "probability": [0.1, 0.3, 0.2],
    ...     "label": [0, 1, 1],
    ...     "observed_at": pd.to_datetime(["2025-04-05", "2025-04-20", "2025-06-03"], utc=True),
    ... })
    >>> t = performance_by_vintage(f, as_of="2025-05-01", min_labels=1)
    >>> t[["vintage", "decisions", "mature", "bad_rate"]].to_dict("records")[0]["mature"]
    2
    """
    need = [score, label, decided_at, observed_at]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"performance_by_vintage needs the column(s) {missing!r}; got "
            f"{list(map(str, frame.columns))[:20]!r}."
        )
    cut = pd.Timestamp(as_of)
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    decided = pd.to_datetime(frame[decided_at], utc=True)
    observed = pd.to_datetime(frame[observed_at], utc=True)
    y = pd.to_numeric(frame[label], errors="coerce")
    p = pd.to_numeric(frame[score], errors="coerce")
    bad_labels = y.dropna()
    if not bad_labels.isin([0, 1]).all():
        raise DataValidationError(
            f"Labels must be 0 (good), 1 (bad) or missing; got {sorted(bad_labels.unique())[:5]!r}."
        )
    mature = y.notna() & observed.notna() & (observed <= cut) & (decided <= cut)
    vintage = decided.dt.tz_localize(None).dt.to_period("M")
    rows = []
    for v, idx in frame.groupby(vintage.to_numpy(), sort=True).groups.items():
        m = mature.loc[idx].to_numpy()
        yy = y.loc[idx].to_numpy()[m].astype(int)
        pp = p.loc[idx].to_numpy()[m]
        start = v.start_time.tz_localize("UTC")
        row: dict[str, Any] = {
            "vintage": str(v),
            "months_on_book": max(0, (cut.year - start.year) * 12 + cut.month - start.month),
            "decisions": len(idx),
            "mature": int(m.sum()),
            "bad_rate": float(yy.mean()) if len(yy) else np.nan,
            "mean_predicted": float(pp.mean()) if len(pp) else np.nan,
            "auc": np.nan,
            "ks": np.nan,
            "brier": float(brier_score_loss(yy, pp)) if len(yy) else np.nan,
        }
        row["observed_to_expected"] = (
            row["bad_rate"] / row["mean_predicted"] if len(yy) and row["mean_predicted"] else np.nan
        )
        if len(yy) >= min_labels and 0 < yy.sum() < len(yy):
            row["auc"] = float(roc_auc_score(yy, pp))
            row["ks"] = float(stats.ks_2samp(pp[yy == 1], pp[yy == 0]).statistic)
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["performance_by_vintage"]
