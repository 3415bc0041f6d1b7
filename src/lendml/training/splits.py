"""Train / validation / test splits: out-of-time by default, with label-maturity gaps.

The out-of-time rule, for windows ``train_from ≤ t < valid_from ≤ t < test_from ≤ t ≤ test_until``
and a gap ``g`` (the label's maturity unless set):

* a train row needs ``t < valid_from − g`` and its label observed by ``valid_from``;
* a validation row needs ``valid_from ≤ t < test_from − g`` and its label observed by
  ``test_from``;
* a test row needs ``test_from ≤ t`` (``≤ test_until``) and a label observed at all.

A row's label is observed at its ``observed_at`` when the data has one, else at ``t + g``.
Rows left out by each rule are counted by reason, so the report says how many and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from lendml.core.timeutil import to_utc_timestamp
from lendml.errors import ConfigError, TrainingError


@dataclass(frozen=True)
class Split:
    """Row positions of each part, the windows that define them and what was left out."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    windows: dict[str, dict[str, str | None]] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    folds: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "sizes": self.sizes(),
            "windows": self.windows,
            "excluded": self.excluded,
            "folds": len(self.folds),
        }


def _naive_utc(value: Any) -> Any:
    """UTC datetime64[us] without a zone (numpy compares those fast and safely)."""
    if isinstance(value, pd.Timestamp):
        return value.tz_convert("UTC").tz_localize(None).to_datetime64()
    series = pd.to_datetime(value, utc=True)
    return series.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else ts.isoformat()


def out_of_time_split(
    times: pd.Series,
    labels: pd.Series,
    *,
    train_from: Any = None,
    valid_from: Any = None,
    test_from: Any = None,
    test_until: Any = None,
    valid_fraction: float = 0.15,
    test_fraction: float = 0.15,
    gap: timedelta = timedelta(0),
    observed_at: pd.Series | None = None,
) -> Split:
    """Split rows by their as-of ``times`` (UTC timestamps) into out-of-time windows.

    Without ``valid_from``/``test_from`` the windows start at the time quantiles that leave
    the latest ``test_fraction`` of rows for test and the ``valid_fraction`` before them for
    validation (rows sharing a timestamp stay together).

    Raises
    ------
    ConfigError
        The windows are out of order.
    TrainingError
        A part ends up empty.
    """
    t = pd.to_datetime(times, utc=True)
    if t.isna().any():
        raise ConfigError(
            f"The split's time column has {int(t.isna().sum())} missing values; "
            "every row needs an as-of time."
        )
    if gap < timedelta(0):
        raise ConfigError(f"The split gap must not be negative; got {gap!r}.")
    tf = to_utc_timestamp(train_from) if train_from is not None else None
    tu = to_utc_timestamp(test_until) if test_until is not None else None
    # Fractions count rows whose label is known: unlabelled recent rows would otherwise
    # leave the test window empty.
    labelled = t[labels.notna().to_numpy()]
    if labelled.empty:
        raise TrainingError("No row has an observed label; nothing to train or test on.")
    if test_from is None:
        test_from = labelled.quantile(1.0 - test_fraction)
    test_ts = to_utc_timestamp(test_from)
    if valid_from is None:
        valid_from = labelled.quantile(1.0 - test_fraction - valid_fraction)
    valid_ts = to_utc_timestamp(valid_from)
    if not valid_ts < test_ts:
        raise ConfigError(
            f"valid_from ({valid_ts.isoformat()}) must be before test_from ({test_ts.isoformat()})."
        )
    if tf is not None and not tf < valid_ts:
        raise ConfigError(
            f"train_from ({tf.isoformat()}) must be before valid_from ({valid_ts.isoformat()})."
        )
    observed = pd.to_datetime(observed_at, utc=True) if observed_at is not None else t + gap
    has_label = labels.notna().to_numpy()
    tv, ov = _naive_utc(t), _naive_utc(observed)
    gap64 = np.timedelta64(int(gap.total_seconds() * 1e6), "us")
    v64, s64 = _naive_utc(valid_ts), _naive_utc(test_ts)

    excluded: dict[str, int] = {}
    keep = np.ones(len(t), dtype=bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        hit = mask & keep
        if hit.any():
            excluded[reason] = excluded.get(reason, 0) + int(hit.sum())
        keep[hit] = False

    if tf is not None:
        drop(tv < _naive_utc(tf), "before_train_from")
    if tu is not None:
        drop(tv > _naive_utc(tu), "after_test_until")
    drop(~has_label, "label_not_observed")
    in_train = tv < v64
    in_valid = (tv >= v64) & (tv < s64)
    in_test = tv >= s64
    drop(in_train & (tv >= v64 - gap64), "gap_before_valid")
    drop(in_valid & (tv >= s64 - gap64), "gap_before_test")
    observed_ok = ~pd.isna(ov)
    drop(in_train & ~(observed_ok & (ov <= v64)), "label_immature_at_valid_from")
    drop(in_valid & ~(observed_ok & (ov <= s64)), "label_immature_at_test_from")

    split = Split(
        train=np.flatnonzero(in_train & keep),
        valid=np.flatnonzero(in_valid & keep),
        test=np.flatnonzero(in_test & keep),
        windows={
            "train": {"from": _iso(tf) or _iso(t.min()), "until": _iso(valid_ts - gap)},
            "valid": {"from": _iso(valid_ts), "until": _iso(test_ts - gap)},
            "test": {"from": _iso(test_ts), "until": _iso(tu) or _iso(t.max())},
        },
        excluded=excluded,
    )
    _require_rows(split)
    return split


def time_holdout_split(
    times: pd.Series,
    labels: pd.Series,
    *,
    test_from: Any,
    valid_fraction: float = 0.15,
    gap: timedelta = timedelta(0),
    seed: int = 42,
) -> Split:
    """Test = rows from ``test_from`` on; validation = recent training rows, drawn at random.

    For a ready table whose time column is coarse (a year, a month), where a validation
    window by time would be too blunt.
    """
    t = times
    if not pd.api.types.is_numeric_dtype(t):
        t = pd.to_datetime(times, utc=True)
        bound: Any = to_utc_timestamp(test_from)
        lower = bound - gap
    else:
        try:
            bound = float(test_from)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"--test-from {test_from!r} must be a number like the time column's values."
            ) from exc
        if gap:
            raise ConfigError("A gap needs a timestamp time column, not a number.")
        lower = bound
    if t.isna().any():
        raise ConfigError(f"The time column has {int(t.isna().sum())} missing values.")
    has_label = labels.notna().to_numpy()
    tv = t.to_numpy()
    test = np.flatnonzero((tv >= bound) & has_label)
    rest = np.flatnonzero((tv < lower) & has_label)
    excluded = {}
    if (n := int(((tv >= lower) & (tv < bound)).sum())) > 0:
        excluded["gap_before_test"] = n
    if (n := int((~has_label).sum())) > 0:
        excluded["label_not_observed"] = n
    # Validation comes from the most recent training rows (closest in time to the test
    # part), drawn at random within them because a coarse time column ties many rows.
    n_valid = max(1, round(valid_fraction * len(rest)))
    order = np.argsort(-tv[rest], kind="stable")
    recent = rest[order[: min(len(rest), 2 * n_valid)]]
    _, valid = holdout(recent, labels.to_numpy()[recent], 0.5, seed)
    train = np.setdiff1d(rest, valid)
    split = Split(
        train=train,
        valid=valid,
        test=test,
        windows={
            "train": {"from": str(t.min()), "until": f"before {test_from}"},
            "valid": {"from": "random half of the latest training rows", "until": None},
            "test": {"from": str(test_from), "until": str(t.max())},
        },
        excluded=excluded,
    )
    _require_rows(split)
    return split


def random_split(
    labels: pd.Series, *, valid_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 42
) -> Split:
    """A stratified random train / valid / test split (when time order does not matter)."""
    y = labels.to_numpy()
    observed = np.flatnonzero(~pd.isna(y))
    rest, test = holdout(observed, y[observed], test_fraction, seed)
    train, valid = holdout(rest, y[rest], valid_fraction / (1 - test_fraction), seed + 1)
    excluded = {"label_not_observed": len(y) - len(observed)} if len(observed) < len(y) else {}
    split = Split(train=train, valid=valid, test=test, windows={}, excluded=excluded)
    _require_rows(split)
    return split


def holdout(
    positions: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random (train, valid) positions out of ``positions``."""
    stratify = y if len(np.unique(y)) > 1 and min(np.bincount(y.astype(int))) >= 2 else None
    train, valid = train_test_split(
        positions, test_size=fraction, random_state=seed, stratify=stratify
    )
    return np.sort(train), np.sort(valid)


def kfold(
    y: np.ndarray, k: int, *, groups: np.ndarray | None = None, seed: int = 42
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Stratified (and, with ``groups``, grouped: no group in two folds) k-fold positions."""
    if k < 2:
        raise ConfigError(f"K-fold needs at least 2 folds; got {k!r}.")
    if np.bincount(y.astype(int), minlength=2).min() < k:
        raise TrainingError(f"Fewer rows of the rarer class than folds ({k}); use fewer folds.")
    splitter: Any
    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(y)), y, groups)
    else:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(y)), y)
    return tuple((np.asarray(a), np.asarray(b)) for a, b in parts)


def with_folds(split: Split, y: np.ndarray, k: int, groups: np.ndarray | None, seed: int) -> Split:
    """``split`` plus k folds inside its train part (positions into the whole frame)."""
    train_y = y[split.train]
    train_groups = groups[split.train] if groups is not None else None
    parts = kfold(train_y, k, groups=train_groups, seed=seed)
    folds = tuple((split.train[a], split.train[b]) for a, b in parts)
    return Split(split.train, split.valid, split.test, split.windows, split.excluded, folds)


def _require_rows(split: Split) -> None:
    empty = [name for name, n in split.sizes().items() if n == 0]
    if empty:
        raise TrainingError(
            f"The split leaves no rows in {', '.join(empty)} "
            f"(sizes {split.sizes()}, windows {split.windows}, left out {split.excluded}). "
            "Move valid_from/test_from or shorten the gap."
        )
