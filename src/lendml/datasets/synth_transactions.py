"""Bank and card transactions in the synthetic lending world.

Each borrower is active (has transactions) from ``created_at`` until they churn, a few
months after their last application. Every active month holds a salary, rent or mortgage
and a utility bill on the borrower's usual days, plus Poisson counts of everyday spending,
other income, cash advances and gambling, placed on daily and weekly cycles.

The latent financial stress of a borrower (:attr:`Population.stress`) builds up from
joining to the first application and changes *when* things happen, not how many or how
much:

* the salary arrives later each month (up to ~10 days late by the application);
* discretionary spending bunches in the days right after payday;
* cash advances move to the days just before payday;
* gambling moves to late at night in the weeks before the application.

Counts, sums and means over a 30- or 90-day window barely see this; features that look
at order (days between salaries, spending relative to payday, hour of gambling) do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lendml.datasets.synth_calendar import (
    DAY,
    HOUR,
    Calendar,
    day_start,
    group_positions,
    inverse_cdf_sampler,
    sample_rows,
    weekday,
    wrap_into,
)
from lendml.datasets.synth_population import Population
from lendml.datasets.synth_risk import CASH_ADVANCE_BOOST_AFTER_SHOCK, SPEND_CUT_AFTER_SHOCK

CATEGORIES = (
    "salary",
    "transfer_in",
    "housing",
    "utilities",
    "groceries",
    "dining",
    "transport",
    "shopping",
    "cash_advance",
    "gambling",
)
SALARY, TRANSFER_IN, HOUSING, UTILITIES = 0, 1, 2, 3
GROCERIES, DINING, TRANSPORT, SHOPPING, CASH_ADVANCE, GAMBLING = 4, 5, 6, 7, 8, 9
CREDIT_CATEGORIES = (SALARY, TRANSFER_IN)
FIXED_PER_MONTH = 3  # salary, housing and utilities: one each in a full month

DIRECTIONS = ("debit", "credit")
TX_CHANNELS = ("pos", "online", "atm", "ach")
_CHANNEL_P = np.array(
    [
        [0.0, 0.0, 0.0, 1.0],
        [0.0, 0.15, 0.0, 0.85],
        [0.0, 0.2, 0.0, 0.8],
        [0.0, 0.5, 0.0, 0.5],
        [0.85, 0.15, 0.0, 0.0],
        [0.7, 0.3, 0.0, 0.0],
        [0.6, 0.4, 0.0, 0.0],
        [0.35, 0.65, 0.0, 0.0],
        [0.0, 0.1, 0.9, 0.0],
        [0.1, 0.9, 0.0, 0.0],
    ]
)

# Everyday categories: (monthly count at 8 transactions a month, share of the budget).
_EVERYDAY = {
    TRANSFER_IN: (0.3, 0.0),
    GROCERIES: (2.4, 0.34),
    DINING: (1.2, 0.16),
    TRANSPORT: (1.0, 0.18),
    SHOPPING: (1.0, 0.32),
}
_EVERYDAY_BASE = sum(rate for rate, _ in _EVERYDAY.values())
_AMOUNT_SIGMA = np.array([0.015, 0.8, 0.0, 0.15, 0.5, 0.6, 0.6, 0.9, 0.5, 1.0])
MEAN_CASH_ADVANCE = 300.0
MEAN_GAMBLING = 55.0

# Hour-of-day weights per category; row 10 is gambling late at night.
_HOURS = np.array(
    [
        [
            4,
            8,
            10,
            10,
            8,
            5,
            2,
            1,
            0.5,
            0.3,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.1,
            0.1,
            0.1,
            0.1,
            0.5,
            2,
        ],
        [
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.2,
            0.5,
            1,
            3,
            5,
            6,
            6,
            5,
            5,
            6,
            6,
            5,
            4,
            2,
            1,
            0.5,
            0.3,
            0.2,
            0.1,
        ],
        [
            1,
            2,
            3,
            4,
            5,
            6,
            6,
            4,
            3,
            2,
            1,
            0.5,
            0.3,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.3,
            0.5,
        ],
        [
            1,
            2,
            3,
            4,
            5,
            6,
            6,
            4,
            3,
            2,
            1,
            0.5,
            0.3,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.2,
            0.3,
            0.5,
        ],
        [
            0.1,
            0.05,
            0.05,
            0.05,
            0.05,
            0.1,
            0.4,
            1,
            2,
            3,
            4,
            4.5,
            5,
            4.5,
            4,
            4.5,
            5.5,
            7,
            7.5,
            6,
            4,
            2.5,
            1,
            0.3,
        ],
        [
            0.3,
            0.2,
            0.1,
            0.05,
            0.05,
            0.1,
            0.5,
            2,
            2.5,
            1.5,
            1,
            2.5,
            6,
            5,
            2,
            1,
            1,
            2,
            5,
            6.5,
            5.5,
            3.5,
            1.5,
            0.6,
        ],
        [
            0.3,
            0.2,
            0.1,
            0.1,
            0.2,
            1,
            3,
            6.5,
            6,
            3,
            2,
            2,
            2.5,
            2,
            2,
            3,
            5,
            6.5,
            5.5,
            3,
            2,
            1.5,
            1,
            0.5,
        ],
        [
            0.5,
            0.3,
            0.2,
            0.1,
            0.1,
            0.1,
            0.3,
            0.8,
            1.5,
            2.5,
            3.5,
            4,
            4.5,
            4.5,
            4.5,
            4.5,
            4.5,
            5,
            5.5,
            6,
            6.5,
            6,
            4,
            1.5,
        ],
        [
            1.5,
            1,
            0.6,
            0.4,
            0.3,
            0.3,
            0.5,
            1,
            2,
            3,
            4,
            4.5,
            5,
            5,
            5,
            5,
            5,
            5,
            5,
            5,
            5,
            4.5,
            3.5,
            2.5,
        ],
        [
            0.8,
            0.4,
            0.2,
            0.1,
            0.1,
            0.1,
            0.1,
            0.2,
            0.3,
            0.5,
            0.8,
            1,
            1.5,
            1.5,
            1.5,
            1.5,
            2,
            3,
            4.5,
            6,
            7,
            7.5,
            6.5,
            3,
        ],
        [
            6,
            7,
            6,
            4.5,
            2.5,
            0.5,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.1,
            0.5,
            2,
        ],
    ]
)
_GAMBLING_NIGHT = 10
# Weekday acceptance weights (Monday first), at most 1; fixed-day categories ignore them.
_WEEKDAY = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 0.3, 0.2],
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1],
        [0.75, 0.7, 0.7, 0.75, 0.85, 1, 0.8],
        [0.6, 0.6, 0.65, 0.7, 0.95, 1, 0.85],
        [1, 1, 1, 1, 1, 0.6, 0.5],
        [0.7, 0.7, 0.7, 0.75, 0.85, 1, 0.95],
        [0.8, 0.8, 0.8, 0.85, 1, 0.9, 0.7],
        [0.6, 0.55, 0.6, 0.7, 0.9, 1, 1],
    ]
)

# How stress shows (each at full strength, reached at the first application).
MAX_SALARY_DELAY_DAYS = 10.0
_BURST_BASE, _BURST_STRESS = 0.10, 0.60
_PRE_PAYDAY_BASE, _PRE_PAYDAY_STRESS = 0.12, 0.70
_NIGHT_BASE, _NIGHT_STRESS = 0.04, 0.80
_NIGHT_WINDOW_DAYS = 60.0
_BURST_CATEGORIES = (DINING, SHOPPING, GROCERIES)


@dataclass(frozen=True)
class Transactions:
    """Transactions of one chunk, ordered by month, borrower, then time."""

    borrower: np.ndarray  # index into the chunk's Population
    month: np.ndarray
    tx_at: np.ndarray  # epoch seconds
    amount: np.ndarray
    category: np.ndarray
    channel: np.ndarray

    def __len__(self) -> int:
        return len(self.borrower)

    @property
    def direction(self) -> np.ndarray:
        """1 (credit) for income deposits, 0 (debit) otherwise."""
        return np.isin(self.category, CREDIT_CATEGORIES).astype(np.int8)


def _stress_ramp(pop: Population, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """How far stress has built up at ``t``: 0 at joining, 1 from the first application."""
    span = np.maximum(pop.first_app[b] - pop.created[b], 1)
    return np.clip((t - pop.created[b]) / span, 0.0, 1.0)


def _on_day(
    cal: Calendar, month: np.ndarray, day: np.ndarray, hour_row: int, rng: np.random.Generator
) -> np.ndarray:
    """A time on day ``day`` (1-based) of each month, hour drawn from one profile."""
    n = len(month)
    table = inverse_cdf_sampler(_HOURS[hour_row][None, :])
    hour = sample_rows(table, 24, np.zeros(n, dtype=np.int64), rng.random(n))
    return cal.month_starts[month] + (day - 1) * DAY + hour * HOUR + rng.integers(0, HOUR, n)


def _off_weekend(t: np.ndarray, month_start: np.ndarray) -> np.ndarray:
    """Move a payment due on a weekend to the Friday before, or the Monday after at the
    start of a month."""
    wd = weekday(t)
    back = np.where(wd == 5, -1, np.where(wd == 6, -2, 0)) * DAY
    forward = np.where(wd == 5, 2, np.where(wd == 6, 1, 0)) * DAY
    return np.where(t + back >= month_start, t + back, t + forward)


def build_transactions(
    rng: np.random.Generator,
    cal: Calendar,
    pop: Population,
    *,
    tx_per_borrower_month: float,
) -> Transactions:
    """Draw every transaction of a chunk's borrowers."""
    # One row per active borrower-month.
    first_month = cal.month_of(pop.created)
    last_month = cal.month_of(pop.churn - 1)
    per_borrower = np.maximum(last_month - first_month + 1, 0)
    b, pos = group_positions(per_borrower)
    month = first_month[b] + pos
    m_start, m_end = cal.month_starts[month], cal.month_starts[month + 1]
    lo = np.maximum(pop.created[b], m_start)
    hi = np.minimum(pop.churn[b], m_end)
    frac = (hi - lo) / (m_end - m_start)
    post = cal.is_post_shift(month)
    stress = pop.stress[b] * _stress_ramp(pop, b, (lo + hi) // 2)
    rows = len(b)

    # Salary, rent and utilities: once a month on the borrower's days.
    delay = np.round(MAX_SALARY_DELAY_DAYS * stress + 0.8 * rng.standard_normal(rows))
    payday_dom = np.clip(pop.payday[b] + delay, 1, 28).astype(np.int64)
    payday = _off_weekend(_on_day(cal, month, payday_dom, SALARY, rng), m_start)
    housing = _off_weekend(_on_day(cal, month, pop.housing_day[b], HOUSING, rng), m_start)
    utility = _on_day(cal, month, pop.utility_day[b], UTILITIES, rng)
    fixed_at = np.stack([payday, housing, utility], axis=1)

    n_cat = len(CATEGORIES)
    lam = np.zeros((rows, n_cat))
    everyday_scale = (
        tx_per_borrower_month - FIXED_PER_MONTH - 0.5  # ~0.5 cash advances + gambling a month
    ) / _EVERYDAY_BASE
    for cat, (rate, _share) in _EVERYDAY.items():
        lam[:, cat] = rate * everyday_scale * frac
    cash_rate = pop.cash_rate[b] * np.where(post, CASH_ADVANCE_BOOST_AFTER_SHOCK, 1.0)
    lam[:, CASH_ADVANCE] = cash_rate * frac
    lam[:, GAMBLING] = pop.gamble_rate[b] * frac
    counts = rng.poisson(lam)
    for col, cat in enumerate((SALARY, HOUSING, UTILITIES)):
        counts[:, cat] = (fixed_at[:, col] >= lo) & (fixed_at[:, col] < hi)

    flat = np.repeat(np.arange(rows * n_cat), counts.ravel())
    row, cat = np.divmod(flat, n_cat)
    del flat
    n = len(row)
    r_lo, r_span = lo[row], hi[row] - lo[row]

    # Free-floating transactions: a uniform day, thinned towards the category's weekdays.
    t = r_lo + (rng.random(n) * r_span).astype(np.int64)
    redraw = rng.random(n) >= _WEEKDAY[cat, weekday(t)]
    t[redraw] = r_lo[redraw] + (rng.random(int(redraw.sum())) * r_span[redraw]).astype(np.int64)
    payday_day = day_start(payday[row])
    burst = np.isin(cat, _BURST_CATEGORIES) & (
        rng.random(n) < _BURST_BASE + _BURST_STRESS * stress[row]
    )
    t = np.where(burst, payday_day + rng.integers(0, 4, n) * DAY, t)
    pre_payday = (cat == CASH_ADVANCE) & (
        rng.random(n) < _PRE_PAYDAY_BASE + _PRE_PAYDAY_STRESS * stress[row]
    )
    t = np.where(pre_payday, payday_day - rng.integers(1, 7, n) * DAY, t)

    # Time of day from the category's profile; gambling drifts to late night before the
    # first application.
    bb = b[row]
    days_to_app = (pop.first_app[bb] - t) / DAY
    closeness = np.clip(1.0 - days_to_app / _NIGHT_WINDOW_DAYS, 0.0, 1.0)
    night = (cat == GAMBLING) & (
        rng.random(n) < _NIGHT_BASE + _NIGHT_STRESS * pop.stress[bb] * closeness**2
    )
    profile = np.where(night, _GAMBLING_NIGHT, cat)
    hour = sample_rows(inverse_cdf_sampler(_HOURS), 24, profile, rng.random(n))
    t = day_start(t) + hour * HOUR + rng.integers(0, HOUR, n)
    t = wrap_into(t, r_lo, r_lo + r_span)
    is_fixed = (cat == SALARY) | (cat == HOUSING) | (cat == UTILITIES)
    fixed_col = np.where(cat == SALARY, 0, np.where(cat == HOUSING, 1, 2))
    t = np.where(is_fixed, fixed_at[row, fixed_col], t)
    del days_to_app, closeness, night, profile, hour, burst, pre_payday, redraw

    amount = _amounts(rng, pop, bb, cat, post[row], everyday_scale=everyday_scale)
    channel = sample_rows(inverse_cdf_sampler(_CHANNEL_P), len(TX_CHANNELS), cat, rng.random(n))

    tx_month = month[row]
    key = (tx_month << 46) | (bb << 22) | (t - cal.month_starts[tx_month])
    order = np.argsort(key, kind="stable")
    return Transactions(
        borrower=bb[order],
        month=tx_month[order],
        tx_at=t[order],
        amount=amount[order],
        category=cat[order].astype(np.int8),
        channel=channel[order].astype(np.int8),
    )


def _amounts(
    rng: np.random.Generator,
    pop: Population,
    b: np.ndarray,
    cat: np.ndarray,
    post: np.ndarray,
    *,
    everyday_scale: float,
) -> np.ndarray:
    """Amount of each transaction: income and fixed bills from the borrower's income,
    everyday spending from their budget, so debits / net income ~ their spend ratio."""
    n = len(b)
    net = 0.76 * pop.income[b]
    housing = np.round(pop.income[b] * np.where(pop.home_owner[b], 0.25, 0.28), 0)
    utilities = 0.05 * pop.income[b]
    cash_rate = pop.cash_rate[b] * np.where(post, CASH_ADVANCE_BOOST_AFTER_SHOCK, 1.0)
    spending = pop.spend_ratio[b] * net * np.where(post, SPEND_CUT_AFTER_SHOCK, 1.0)
    everyday = np.maximum(
        spending
        - housing
        - utilities
        - cash_rate * MEAN_CASH_ADVANCE
        - pop.gamble_rate[b] * MEAN_GAMBLING,
        0.1 * net,
    )
    rate = np.ones(len(CATEGORIES))
    share = np.zeros(len(CATEGORIES))
    for c, (r, s) in _EVERYDAY.items():
        rate[c], share[c] = r, s
    sigma = _AMOUNT_SIGMA[cat]
    noise = np.exp(sigma * rng.standard_normal(n) - 0.5 * sigma * sigma)  # mean 1
    base = np.select(
        [
            cat == SALARY,
            cat == TRANSFER_IN,
            cat == HOUSING,
            cat == UTILITIES,
            cat == CASH_ADVANCE,
            cat == GAMBLING,
        ],
        [
            net * (1.0 - pop.shock[b] * post),
            np.full(n, 120.0),
            housing,
            utilities,
            np.full(n, MEAN_CASH_ADVANCE),
            np.full(n, MEAN_GAMBLING),
        ],
        default=everyday * share[cat] / (rate[cat] * everyday_scale),
    )
    amount = base * noise
    amount = np.where(cat == HOUSING, housing, amount)
    amount = np.where(cat == CASH_ADVANCE, np.maximum(np.round(amount / 20.0) * 20.0, 20.0), amount)
    return np.maximum(np.round(amount, 2), 0.01)
