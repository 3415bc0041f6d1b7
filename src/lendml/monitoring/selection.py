"""What the approval holdout measures: bad rates of explored vs policy approvals by band.

The cutoffs approve only applicants below ``approve_below``, so outcomes exist only for
them, and a model learns from and is checked on that book alone. The approval holdout
(``serving.models.<name>.decision.explore``, docs/serving.md) approves a small random
share of the applicants the cutoffs decline or refer, below a ceiling; their outcomes are
the only unbiased view of how those applicants perform. :func:`holdout_bad_rates` puts the
two groups side by side per band of predicted P(bad), with the mean prediction (is the
model right about the applicants it turns away?) and a Wilson interval, and says when the
explored group is too small to read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import numpy as np
import pandas as pd

from lendml.errors import DataValidationError

BANDS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
_Z = 1.959963984540054  # two-sided 95%
_COLUMNS = [
    "band",
    "group",
    "decisions",
    "labelled",
    "bads",
    "bad_rate",
    "bad_rate_low",
    "bad_rate_high",
    "mean_probability",
    "note",
]


def _wilson(bads: int, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = bads / n
    centre = (p + _Z**2 / (2 * n)) / (1 + _Z**2 / n)
    half = _Z * math.sqrt(p * (1 - p) / n + _Z**2 / (4 * n**2)) / (1 + _Z**2 / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def holdout_bad_rates(
    frame: pd.DataFrame,
    *,
    label: str,
    bands: Sequence[float] = BANDS,
    min_labels: int = 30,
    roles: Sequence[str] = ("champion", "canary"),
) -> pd.DataFrame:
    """Bad rate of the explored approvals vs the policy's approvals, per band of P(bad).

    Parameters
    ----------
    frame
        The flattened prediction log (``read_prediction_log(..., flatten=True)``) joined to
        outcomes: ``probability``, ``role``, ``policy_decision``, ``explore`` and ``label``
        (1 bad, 0 good, missing when no mature outcome is known yet: mask labels observed
        after your as-of time, as :func:`~lendml.monitoring.performance.log_performance`
        does).
    label
        The outcome column.
    bands
        Increasing edges of the P(bad) bands (left-closed: ``[0.2, 0.35)``); the last
        band includes its right edge.
    min_labels
        Fewer labelled explored applicants than this in a row gets a note: its bad rate
        is too uncertain to act on (see the interval).
    roles
        The roles that were decisions (shadow scores never were).

    Returns
    -------
    pandas.DataFrame
        One row per band and group (``approved``: approved by the cutoffs; ``explored``:
        approved by the holdout, declined or referred by the cutoffs), then one ``all`` row
        per group: ``decisions``, ``labelled``, ``bads``, ``bad_rate`` with its 95% Wilson
        interval (``bad_rate_low``, ``bad_rate_high``), ``mean_probability`` (of the
        labelled rows) and ``note``. Bands where neither group has a decision are left out.

    Raises
    ------
    DataValidationError
        A column is missing, a label is not 0/1, or the band edges are not increasing.

    Examples
    --------
    >>> log = pd.DataFrame({
    ...     "probability": [0.1, 0.12, 0.5, 0.55], "role": "champion",
    ...     "policy_decision": ["approve", "approve", "decline", "decline"],
    ...     "explore": [False, False, True, True], "defaulted": [0, 1, 1, None],
    ... })
    >>> out = holdout_bad_rates(log, label="defaulted", bands=(0, 0.2, 1), min_labels=2)
    >>> out[["band", "group", "labelled", "bad_rate"]].values.tolist()
    [['[0.0, 0.2)', 'approved', 2, 0.5], ['[0.2, 1.0]', 'explored', 1, 1.0], \
['all', 'approved', 2, 0.5], ['all', 'explored', 1, 1.0]]
    >>> out["note"].iloc[1]
    'fewer than 2 labelled explored applicants: too few to read'
    """
    need = ["probability", "role", "policy_decision", "explore", label]
    absent = [c for c in need if c not in frame.columns]
    if absent:
        raise DataValidationError(
            f"The prediction log lacks the column(s) {absent!r}; pass "
            "read_prediction_log(..., flatten=True) joined to the outcomes column "
            f"{label!r}. Got {list(map(str, frame.columns))[:20]!r}."
        )
    edges = [float(e) for e in bands]
    if len(edges) < 2 or any(b <= a for a, b in pairwise(edges)):
        raise DataValidationError(f"bands must be increasing edges, at least two; got {bands!r}.")
    rows = frame[frame["role"].isin(list(roles))]
    explored = rows["explore"].fillna(False).astype(bool)
    approved = ~explored & (rows["policy_decision"] == "approve")
    y = pd.to_numeric(rows[label], errors="coerce")
    bad_labels = rows[label].notna() & ~y.isin([0, 1])
    if bad_labels.any():
        odd = rows.loc[bad_labels, label].iloc[:5].tolist()
        raise DataValidationError(f"Outcome {label!r} must be 1 (bad) or 0; got {odd!r}.")
    p = rows["probability"].to_numpy(dtype=float)
    # right=False: [a, b); the last band also takes its right edge
    band = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    names = [f"[{a}, {b})" for a, b in pairwise(edges)]
    names[-1] = names[-1][:-1] + "]"
    inside = (p >= edges[0]) & (p <= edges[-1])

    def summary(where: np.ndarray, name: str, group: str) -> dict[str, object]:
        labelled = where & y.notna().to_numpy()
        n, bads = int(labelled.sum()), int(y[labelled].sum())
        low, high = _wilson(bads, n)
        note = ""
        if group == "explored" and n < min_labels:
            note = f"fewer than {min_labels} labelled explored applicants: too few to read"
        return {
            "band": name,
            "group": group,
            "decisions": int(where.sum()),
            "labelled": n,
            "bads": bads,
            "bad_rate": bads / n if n else math.nan,
            "bad_rate_low": low,
            "bad_rate_high": high,
            "mean_probability": float(p[labelled].mean()) if n else math.nan,
            "note": note,
        }

    out = []
    groups = (("approved", approved.to_numpy()), ("explored", explored.to_numpy()))
    for k, name in enumerate(names):
        in_band = inside & (band == k)
        if not any((in_band & g).any() for _, g in groups):
            continue
        out.extend(summary(in_band & g, name, group) for group, g in groups if (in_band & g).any())
    out.extend(summary(inside & g, "all", group) for group, g in groups)
    return pd.DataFrame(out, columns=_COLUMNS)


__all__ = ["BANDS", "holdout_bad_rates"]
