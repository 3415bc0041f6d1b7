"""Metrics per segment (a column of categories) and per time period.

Each table has one row per group: ``n``, ``n_bad``, ``bad_rate``, ``mean_score``, ``auc``,
``ks`` and a ``note``. A group with one class only has no AUC or KS: they are NaN (not an
error) and the note says why; a group with no rows (an unused category, a month with no
applications) is listed with ``n = 0``. Missing group values form a ``(missing)`` group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lendml.core.timeutil import utc_series
from lendml.errors import ConfigError, TimeZoneError
from lendml.evaluation._binning import MISSING, group_codes, split_by_code
from lendml.evaluation._checks import as_labels, as_scores
from lendml.evaluation.metrics import auc_or_nan, ks_or_nan

#: Fewer bads or goods than this in a group makes its AUC too noisy to read alone.
SMALL_CLASS = 10


def group_note(n: int, n_bad: int) -> str:
    """Why a group's AUC is missing or fragile ('' when it is neither)."""
    if n == 0:
        return "no rows"
    n_good = n - n_bad
    if n_bad == 0:
        return "one class only (no bads): AUC and KS undefined"
    if n_good == 0:
        return "one class only (no goods): AUC and KS undefined"
    if min(n_bad, n_good) < SMALL_CLASS:
        return f"fewer than {SMALL_CLASS} bads or goods: AUC is noisy"
    return ""


def _table(
    y: np.ndarray, s: np.ndarray, codes: np.ndarray, names: list[str], column: str
) -> pd.DataFrame:
    rows = []
    for name, pos in zip(names, split_by_code(codes, len(names)), strict=True):
        yg, sg = y[pos], s[pos]
        n, n_bad = len(yg), int(yg.sum())
        rows.append(
            {
                column: name,
                "n": n,
                "n_bad": n_bad,
                "bad_rate": n_bad / n if n else float("nan"),
                "mean_score": float(sg.mean()) if n else float("nan"),
                "auc": auc_or_nan(yg, sg),
                "ks": ks_or_nan(yg, sg) if n else float("nan"),
                "note": group_note(n, n_bad),
            }
        )
    out = pd.DataFrame(
        rows, columns=[column, "n", "n_bad", "bad_rate", "mean_score", "auc", "ks", "note"]
    )
    return out.astype({"n": np.int64, "n_bad": np.int64})


def metrics_by_group(y_true: Any, score: Any, groups: Any, *, name: str = "group") -> pd.DataFrame:
    """n, bad rate, mean score, AUC and KS for each group of a categorical column.

    Parameters
    ----------
    y_true
        1 = bad, 0 = good.
    score
        Higher = riskier.
    groups
        One group label per row (a Series, array or list); a categorical column keeps its
        category order and lists unused categories with ``n = 0``.
    name
        Heading of the group column in the table.

    Examples
    --------
    >>> t = metrics_by_group([0, 1, 0, 0], [0.1, 0.9, 0.2, 0.3], ["a", "a", "b", "b"])
    >>> t[["group", "n", "auc"]].to_numpy().tolist()
    [['a', 2, 1.0], ['b', 2, nan]]
    >>> t["note"].iloc[1]
    'one class only (no bads): AUC and KS undefined'
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y))
    g = groups if isinstance(groups, pd.Series) else pd.Series(np.asarray(groups, dtype=object))
    if len(g) != len(y):
        raise ConfigError(
            f"The group column {name!r} has {len(g):,} rows but y_true has {len(y):,}: every "
            "input must describe the same rows, in the same order."
        )
    codes, names = group_codes(g, what=f"The group column {name!r}")
    return _table(y, s, codes, names, name)


def check_period_freq(freq: str) -> str:
    """A pandas period alias such as ``M``, ``Q``, ``W`` or ``D``."""
    try:
        pd.Period("2024-01-01", freq=freq)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"period_freq {freq!r} is not a pandas period frequency; use e.g. 'M' (month), "
            "'Q' (quarter), 'W' (week) or 'D' (day)."
        ) from exc
    return freq


def metrics_by_period(y_true: Any, score: Any, times: Any, *, freq: str = "M") -> pd.DataFrame:
    """The same table per calendar period of a time column (UTC; default by month).

    Every period between the first and the last is listed, empty ones with ``n = 0``, so
    the table reads as a time series. Missing times form a ``(missing)`` row at the end.

    Examples
    --------
    >>> t = metrics_by_period([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8],
    ...                       ["2024-01-05", "2024-01-20", "2024-03-02", "2024-03-09"])
    >>> t["period"].tolist(), t["n"].tolist()
    (['2024-01', '2024-02', '2024-03'], [2, 0, 2])
    """
    y = as_labels(y_true)
    s = as_scores(score, n=len(y))
    freq = check_period_freq(freq)
    t = times if isinstance(times, pd.Series) else pd.Series(np.asarray(times))
    t = t.reset_index(drop=True)
    if len(t) != len(y):
        raise ConfigError(
            f"periods has {len(t):,} rows but y_true has {len(y):,}: every input must "
            "describe the same rows, in the same order."
        )
    try:
        utc = utc_series(t, column="periods")
    except TimeZoneError as exc:
        raise ConfigError(f"periods must be timestamps: {exc}") from exc
    missing = utc.isna().to_numpy()
    naive = utc.dt.tz_localize(None)
    periods = naive.dt.to_period(freq)
    present = periods[~missing]
    if len(present):
        span = pd.period_range(present.min(), present.max(), freq=freq)
        if len(span) > 1000:
            raise ConfigError(
                f"periods spans {len(span):,} periods of {freq!r}, more than 1,000; use a "
                "coarser period_freq (e.g. 'M' or 'Q')."
            )
        codes = np.full(len(y), len(span), dtype=np.int64)
        ordinals = np.asarray(present.array.asi8) - span[0].ordinal
        codes[~missing] = ordinals
        names = [str(p) for p in span]
    else:
        codes = np.zeros(len(y), dtype=np.int64)
        names = []
    if missing.any():
        names.append(MISSING)
        codes[missing] = len(names) - 1
    return _table(y, s, codes, names, "period")
