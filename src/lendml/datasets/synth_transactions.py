"""Bank and card transactions in the synthetic lending world.

Each borrower is active (has transactions) from ``created_at`` until they churn, a few
months after their last application. Every active month holds a salary, rent or mortgage
and a utility bill on the borrower's usual days, plus Poisson counts of everyday purchases,
other income, transfers out, cash advances and gambling, placed on daily and weekly
cycles.

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
    CategoricalSampler,
    day_start,
    group_positions,
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
    "transfer_out",
    "cash_advance",
    "gambling",
)
SALARY, TRANSFER_IN, HOUSING, UTILITIES, GROCERIES, DINING = 0, 1, 2, 3, 4, 5
TRANSPORT, SHOPPING, TRANSFER_OUT, CASH_ADVANCE, GAMBLING = 6, 7, 8, 9, 10
CREDIT_CATEGORIES = (SALARY, TRANSFER_IN)
FIXED_CATEGORIES = (SALARY, HOUSING, UTILITIES)  # one each in a full month

DIRECTIONS = ("debit", "credit")
TX_CHANNELS = ("pos", "online", "atm", "ach")
# Channel shares (pos, online, atm, ach) per category.
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
        [0.0, 0.6, 0.0, 0.4],
        [0.0, 0.1, 0.9, 0.0],
        [0.1, 0.9, 0.0, 0.0],
    ]
)

# Monthly counts at the default 8 transactions a month; scaled with the rate.
_EVERYDAY_RATE = {
    TRANSFER_IN: 0.3,
    GROCERIES: 2.0,
    DINING: 1.1,
    TRANSPORT: 0.9,
    SHOPPING: 0.8,
    TRANSFER_OUT: 0.8,
}
_EVERYDAY_BASE = sum(_EVERYDAY_RATE.values())
_HABIT_RATE = 0.5  # cash advances + gambling in an average month
# Typical amount of one purchase (mean), before the borrower's income and habits.
_PURCHASE = {GROCERIES: 70.0, DINING: 30.0, TRANSPORT: 40.0, SHOPPING: 75.0}
_AMOUNT_SIGMA = np.array([0.015, 0.8, 0.0, 0.15, 0.5, 0.6, 0.6, 0.9, 0.5, 0.5, 1.0])
MEAN_TRANSFER_IN = 120.0
MEAN_CASH_ADVANCE = 300.0
MEAN_GAMBLING = 55.0


def _daily(*bumps: tuple[float, float, float], floor: float = 0.05) -> np.ndarray:
    """Hour-of-day weights: a floor plus (peak hour, width in hours, height) bumps."""
    hours = np.arange(24)
    weights = np.full(24, floor)
    for peak, width, height in bumps:
        distance = np.minimum(np.abs(hours - peak), 24 - np.abs(hours - peak))
        weights += height * np.exp(-0.5 * (distance / width) ** 2)
    return weights


# One hour profile per category; the last row is gambling late at night.
_HOURS = np.stack(
    [
        _daily((3, 1.5, 1.0)),  # salary: overnight payroll batch
        _daily((11, 3, 1.0), (15, 2, 0.8)),  # transfer_in
        _daily((5, 2, 1.0)),  # housing: early-morning autopay
        _daily((5, 2, 1.0)),  # utilities
        _daily((11, 2, 0.6), (18, 2, 1.0)),  # groceries
        _daily((8, 1, 0.35), (12.5, 1, 0.9), (19.5, 1.5, 1.0)),  # dining
        _daily((8, 1.2, 1.0), (17.5, 1.5, 0.9)),  # transport: commutes
        _daily((13, 3, 0.7), (20, 2, 1.0)),  # shopping
        _daily((10, 2, 0.8), (20, 2.5, 1.0)),  # transfer_out
        _daily((14, 4, 1.0), (22, 2, 0.5)),  # cash_advance
        _daily((21, 2, 1.0)),  # gambling, evenings
        _daily((2, 1.2, 1.0), floor=0.01),  # gambling, late at night
    ]
)
_GAMBLING_NIGHT = len(CATEGORIES)
_HOUR = CategoricalSampler.from_weights(_HOURS)
_CHANNEL = CategoricalSampler.from_weights(_CHANNEL_P)
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
        [1, 1, 1, 1, 1, 0.5, 0.4],
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
_BURST_CATEGORIES = (GROCERIES, DINING, SHOPPING)


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
    hour = _HOUR.sample(rng.random(n), hour_row)
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
    scale = _everyday_scale(tx_per_borrower_month)
    lam = np.zeros((rows, n_cat))
    for cat, rate in _EVERYDAY_RATE.items():
        lam[:, cat] = rate * scale * frac
    lam[:, CASH_ADVANCE] = _cash_rate(pop, b, post) * frac
    lam[:, GAMBLING] = pop.gamble_rate[b] * frac
    counts = rng.poisson(lam)
    for col, cat in enumerate(FIXED_CATEGORIES):
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
    hour = _HOUR.sample(rng.random(n), profile)
    t = day_start(t) + hour * HOUR + rng.integers(0, HOUR, n)
    t = wrap_into(t, r_lo, r_lo + r_span)
    for col, fixed in enumerate(FIXED_CATEGORIES):
        is_fixed = cat == fixed
        t[is_fixed] = fixed_at[row[is_fixed], col]
    del days_to_app, closeness, night, profile, hour, burst, pre_payday, redraw

    base = _typical_amounts(pop, b, post, scale=scale)[row, cat]
    sigma = _AMOUNT_SIGMA[cat]
    amount = base * np.exp(sigma * rng.standard_normal(n) - 0.5 * sigma * sigma)  # mean 1
    del base, sigma
    cash = cat == CASH_ADVANCE
    amount[cash] = np.maximum(np.round(amount[cash] / 20.0) * 20.0, 20.0)
    amount = np.maximum(np.round(amount, 2), 0.01)
    channel = _CHANNEL.sample(rng.random(n), cat)

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


def _everyday_scale(tx_per_borrower_month: float) -> float:
    """Factor on the everyday counts so a full month averages the requested rate."""
    return (tx_per_borrower_month - len(FIXED_CATEGORIES) - _HABIT_RATE) / _EVERYDAY_BASE


def _cash_rate(pop: Population, b: np.ndarray, post: np.ndarray) -> np.ndarray:
    return pop.cash_rate[b] * np.where(post, CASH_ADVANCE_BOOST_AFTER_SHOCK, 1.0)


def _typical_amounts(
    pop: Population, b: np.ndarray, post: np.ndarray, *, scale: float
) -> np.ndarray:
    """Mean amount of each category (columns) in each borrower-month (rows).

    Income and bills follow the borrower's income; purchases have everyday sizes; what
    is left of the month's spending goes out as transfers (card payments, other
    accounts), so debits / net income follows the borrower's spend ratio however many
    transactions a month there are.
    """
    income = pop.income[b]
    net = 0.76 * income
    housing = np.round(income * np.where(pop.home_owner[b], 0.25, 0.28), 0)
    utilities = 0.05 * income
    spending = pop.spend_ratio[b] * net * np.where(post, SPEND_CUT_AFTER_SHOCK, 1.0)
    left = np.maximum(
        spending
        - housing
        - utilities
        - _cash_rate(pop, b, post) * MEAN_CASH_ADVANCE
        - pop.gamble_rate[b] * MEAN_GAMBLING,
        0.1 * net,
    )
    habit = (income / 4200.0) ** 0.3 * pop.spend_ratio[b] / 0.88
    purchases = sum(_EVERYDAY_RATE[c] * scale * size for c, size in _PURCHASE.items())
    # Purchases take at most 70% of what is left; transfers out take the rest.
    purchase_factor = habit * np.minimum(1.0, 0.7 * left / (purchases * habit))

    typical = np.empty((len(b), len(CATEGORIES)))
    typical[:, SALARY] = net * (1.0 - pop.shock[b] * post)
    typical[:, TRANSFER_IN] = MEAN_TRANSFER_IN
    typical[:, HOUSING] = housing
    typical[:, UTILITIES] = utilities
    for c, size in _PURCHASE.items():
        typical[:, c] = size * purchase_factor
    typical[:, TRANSFER_OUT] = (left - purchases * purchase_factor) / (
        _EVERYDAY_RATE[TRANSFER_OUT] * scale
    )
    typical[:, CASH_ADVANCE] = MEAN_CASH_ADVANCE
    typical[:, GAMBLING] = MEAN_GAMBLING
    return typical
