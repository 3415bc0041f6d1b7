"""Quantile bins and group codes shared by gains, calibration, stability and group tables.

Bins are right-closed intervals ``(c[i-1], c[i]]`` between interior cut points taken at the
quantiles of the values (NumPy's default linear interpolation), with open ends, so every
finite value falls in exactly one bin and tied values always share a bin. When ties make
two cut points equal, the duplicate is dropped and fewer bins result: a score that takes
only three values cannot be split into ten bands.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lendml.errors import ConfigError

MISSING = "(missing)"
#: A group column with more distinct values than this is refused: groups are categories.
MAX_GROUPS = 1000


def quantile_cuts(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior cut points at the ``k / n_bins`` quantiles of the finite values, deduplicated."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or n_bins < 2:
        return np.empty(0, dtype=float)
    cuts = np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    cuts = np.unique(cuts)
    # A cut at the maximum would leave an always-empty top bin.
    return cuts[cuts < finite.max()]


def assign(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Bin index of each value for right-closed bins ``(c[i-1], c[i]]`` (NaN not handled)."""
    return np.searchsorted(cuts, values, side="left")


def group_codes(values: Any, *, what: str) -> tuple[np.ndarray, list[str]]:
    """Integer group code per row and the group names, missing values last as ``(missing)``.

    A categorical column keeps its category order, unused categories included (they become
    empty groups); other columns are sorted by value. Names are the values as strings.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    s = s.reset_index(drop=True)
    missing = s.isna().to_numpy()
    if isinstance(s.dtype, pd.CategoricalDtype):
        uniques = list(s.cat.categories)
        codes = s.cat.codes.to_numpy().astype(np.int64)
    else:
        codes, found = pd.factorize(s, use_na_sentinel=True)
        try:
            order = np.argsort(np.asarray(found, dtype=object), kind="stable")
        except TypeError:
            order = np.argsort(np.array([str(v) for v in found], dtype=object), kind="stable")
        uniques = [found[i] for i in order]
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        # Missing rows (code -1) are given their own code below.
        codes = rank[codes] if len(rank) else codes.astype(np.int64)
    if len(uniques) > MAX_GROUPS:
        raise ConfigError(
            f"{what} has {len(uniques):,} distinct values, more than {MAX_GROUPS:,}: groups "
            f"are meant to be categories (e.g. a product, a region, an age band). Band a "
            f"continuous column first (e.g. pd.cut), or pass a coarser column."
        )
    names = [str(u) for u in uniques]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"{what} has distinct values that print the same ({names[:5]!r}...): give the "
            "column one type (e.g. all strings) so each group has one name."
        )
    if missing.any():
        if MISSING in names:
            raise ConfigError(
                f"{what} has both missing values and the literal value {MISSING!r}; rename "
                "that value so missing rows form their own group."
            )
        codes[missing] = len(names)
        names.append(MISSING)
    return codes, names


def split_by_code(codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Row positions of each group, in one stable sort (O(n log n) for all groups)."""
    # Codes fit in 16 bits (at most MAX_GROUPS + 1 groups): NumPy radix-sorts them in O(n).
    order = np.argsort(codes.astype(np.uint16), kind="stable")
    counts = np.bincount(codes, minlength=n_groups)
    return np.split(order, np.cumsum(counts)[:-1])
