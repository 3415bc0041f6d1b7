"""Calendar and vectorised sampling helpers for the synthetic lending world.

Everything here works on ``int64`` arrays of whole seconds since the Unix epoch (UTC);
the writer converts to ``timestamp[us, tz=UTC]`` only at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY = 86_400
HOUR = 3_600


@dataclass(frozen=True)
class Calendar:
    """The months of a world and where the regime shift falls.

    Parameters
    ----------
    month_starts
        Seconds since the epoch of the first instant of each month, plus the end of the
        last month (``months + 1`` values).
    labels
        ``"YYYY-MM"`` of each month, used as Hive partition values.
    shift_month
        Month index (from 0) of the macro shock, or ``None`` for a world without one.
    """

    month_starts: np.ndarray
    labels: tuple[str, ...]
    shift_month: int | None

    @property
    def start(self) -> int:
        """First second of the world."""
        return int(self.month_starts[0])

    @property
    def end(self) -> int:
        """First second after the world (exclusive end)."""
        return int(self.month_starts[-1])

    @property
    def months(self) -> int:
        """Number of months in the world."""
        return len(self.labels)

    def month_of(self, t: np.ndarray) -> np.ndarray:
        """Month index of each time (times must lie inside the world)."""
        return np.searchsorted(self.month_starts, t, side="right") - 1

    def is_post_shift(self, month: np.ndarray) -> np.ndarray:
        """True where a month index is at or after the shock."""
        if self.shift_month is None:
            return np.zeros(np.shape(month), dtype=bool)
        return np.asarray(month) >= self.shift_month


def build_calendar(start: str, months: int, shift_month: int | None) -> Calendar:
    """The calendar of a world starting on the first day of ``start``'s month."""
    first = np.datetime64(start, "M")
    bounds = first + np.arange(months + 1)
    starts = bounds.astype("datetime64[s]").astype(np.int64)
    labels = tuple(str(m) for m in bounds[:-1])
    return Calendar(month_starts=starts, labels=labels, shift_month=shift_month)


def add_months(t: np.ndarray, months: int) -> np.ndarray:
    """Add calendar months to epoch seconds, clamping the day to the target month's end.

    This is the rule of ``pandas.DateOffset(months=n)``: Jan 31 + 1 month = Feb 28/29.
    """
    t = np.asarray(t, dtype=np.int64)
    days = t // DAY
    time_of_day = t - days * DAY
    d = days.astype("datetime64[D]")
    month = d.astype("datetime64[M]")
    day_in_month = (d - month.astype("datetime64[D]")).astype(np.int64)
    target = month + months
    target_first = target.astype("datetime64[D]")
    month_len = ((target + 1).astype("datetime64[D]") - target_first).astype(np.int64)
    day_in_month = np.minimum(day_in_month, month_len - 1)
    return (target_first.astype(np.int64) + day_in_month) * DAY + time_of_day


def weekday(t: np.ndarray) -> np.ndarray:
    """Day of the week of epoch seconds, Monday = 0 (1970-01-01 was a Thursday)."""
    return (t // DAY + 3) % 7


def day_start(t: np.ndarray) -> np.ndarray:
    """Midnight UTC of the day holding each time."""
    return t - t % DAY


def wrap_into(t: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fold times into ``[lo, hi)`` (modulo the interval), keeping counts unchanged."""
    span = np.maximum(hi - lo, 1)
    return lo + np.mod(t - lo, span)


@dataclass(frozen=True)
class CategoricalSampler:
    """Draws from several small categorical distributions at once, one per row of weights.

    Sampling is a table lookup: each distribution is quantised to
    ``1 / RESOLUTION`` of probability, far below any weight the world uses.
    """

    lookup: np.ndarray  # (distributions, RESOLUTION) category indices

    RESOLUTION = 8192

    @classmethod
    def from_weights(cls, weights: np.ndarray) -> CategoricalSampler:
        """One distribution per row of ``weights`` (a 1-d array is one distribution)."""
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        cdf = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
        mids = (np.arange(cls.RESOLUTION) + 0.5) / cls.RESOLUTION
        index = (mids[None, :, None] >= cdf[:, None, :]).sum(axis=2)
        return cls(lookup=np.minimum(index, w.shape[1] - 1).astype(np.int16))

    def sample(self, u: np.ndarray, which: np.ndarray | int = 0) -> np.ndarray:
        """Category index for uniform draws ``u`` from distribution(s) ``which``."""
        return self.lookup[which, (u * self.RESOLUTION).astype(np.int64)].astype(np.int64)


def group_positions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of the given sizes laid end to end: each row's group and position in it."""
    counts = np.asarray(counts, dtype=np.int64)
    group = np.repeat(np.arange(len(counts)), counts)
    offsets = np.cumsum(counts) - counts
    position = np.arange(int(counts.sum()), dtype=np.int64) - offsets[group]
    return group, position


def rolling_previous_sum(values: np.ndarray, position: np.ndarray, window: int) -> np.ndarray:
    """Sum of the previous ``window`` rows of the same group (the row itself excluded).

    Rows of one group must be contiguous and ordered; ``position`` is each row's index in
    its group (see :func:`group_positions`).
    """
    cs = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    i = np.arange(len(values))
    first = i - np.minimum(position, window)
    return cs[i] - cs[first]


def cumulative_previous_sum(values: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Sum of all earlier rows of the same group (the row itself excluded)."""
    cs = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    i = np.arange(len(values))
    return cs[i] - cs[i - position]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))
