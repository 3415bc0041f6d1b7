"""Monthly credit-bureau snapshots in the synthetic lending world.

One snapshot per borrower on the first of every month from the month after they join
(the first month start at or after ``created_at``) to the end of the world. Counts are
rolling windows of monthly events, so they move smoothly; every application to the
lender adds a hard inquiry and, from the next month, a tradeline and its balance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lendml.datasets.synth_calendar import (
    Calendar,
    cumulative_previous_sum,
    group_positions,
    rolling_previous_sum,
)
from lendml.datasets.synth_population import Applications, Population

NULL_UTILIZATION_RATE = 0.02


@dataclass(frozen=True)
class Bureau:
    """Snapshots of one chunk, ordered by borrower then month."""

    borrower: np.ndarray  # index into the chunk's Population
    month: np.ndarray
    snapshot: np.ndarray  # epoch seconds of the first of the month
    fico: np.ndarray
    num_tradelines: np.ndarray
    revolving_utilization: np.ndarray  # NaN where the bureau reports nothing
    delinquencies_12m: np.ndarray
    inquiries_6m: np.ndarray
    total_balance: np.ndarray

    def __len__(self) -> int:
        return len(self.borrower)


@dataclass(frozen=True)
class BureauAtApplication:
    """What the latest snapshot before each application says (the truth model's input)."""

    fico: np.ndarray
    utilization: np.ndarray  # the bureau's value even where the snapshot shows null
    delinquencies_12m: np.ndarray
    inquiries_6m: np.ndarray


def build_bureau(
    rng: np.random.Generator, cal: Calendar, pop: Population, apps: Applications
) -> tuple[Bureau, BureauAtApplication]:
    """Draw every snapshot of a chunk and look up the one each application sees."""
    months = cal.months
    first_month = np.searchsorted(cal.month_starts[:-1], pop.created, side="left")
    per_borrower = np.maximum(months - first_month, 0)
    offsets = np.cumsum(per_borrower) - per_borrower
    b, pos = group_positions(per_borrower)
    month = first_month[b] + pos
    n = len(b)
    post = cal.is_post_shift(month)

    # Applications happen in a month with a snapshot (they come >= 35 days after joining):
    # they count from the next snapshot on, never in the one the application itself sees.
    app_row = offsets[apps.borrower] + apps.month - first_month[apps.borrower]
    app_events = np.bincount(app_row, minlength=n).astype(np.float64)
    loan_events = np.bincount(app_row, weights=apps.loan_amount, minlength=n)

    dq_events = rng.poisson(pop.delinquency_rate[b] * np.where(post, 1.6, 1.0))
    dq_start = rng.poisson(12.0 * pop.delinquency_rate)
    delinquencies = rolling_previous_sum(dq_events, pos, 12) + np.floor(
        dq_start[b] * np.maximum(12 - pos, 0) / 12.0 + 0.5
    )

    # Stressed borrowers shop for credit a little more: the one place the latent stress
    # leaks into an aggregate, so aggregates catch some of it but not most.
    inq_rate = pop.inquiry_rate[b] * np.where(post, 1.3, 1.0) * (1.0 + 0.5 * pop.stress[b])
    inq_events = rng.poisson(inq_rate) + app_events
    inq_start = rng.poisson(6.0 * pop.inquiry_rate)
    inquiries = rolling_previous_sum(inq_events, pos, 6) + np.floor(
        inq_start[b] * np.maximum(6 - pos, 0) / 6.0 + 0.5
    )

    new_accounts = rng.poisson(0.02, n) + app_events
    tradelines = pop.tradelines0[b] + cumulative_previous_sum(new_accounts, pos)

    step = rng.standard_normal(n)
    fico_walk = cumulative_previous_sum(step, pos) + step
    fico = pop.fico0[b] + 3.0 * fico_walk - 14.0 * post - 10.0 * delinquencies - 2.0 * inquiries
    fico = np.clip(np.round(fico), 300, 850).astype(np.int32)

    step = rng.standard_normal(n)
    util_walk = cumulative_previous_sum(step, pos) + step
    utilization = np.clip(
        pop.util0[b] + 0.018 * util_walk + 0.10 * post + 0.05 * (delinquencies > 0), 0.0, 1.5
    )
    shown_util = np.where(rng.random(n) < NULL_UTILIZATION_RATE, np.nan, np.round(utilization, 4))

    balance = (
        pop.installment_balance[b] * np.maximum(1.0 - 0.01 * pos, 0.3)
        + pop.revolving_limit[b] * utilization
        + 0.9 * cumulative_previous_sum(loan_events, pos)
    )

    bureau = Bureau(
        borrower=b,
        month=month,
        snapshot=cal.month_starts[month],
        fico=fico,
        num_tradelines=tradelines.astype(np.int32),
        revolving_utilization=shown_util,
        delinquencies_12m=delinquencies.astype(np.int32),
        inquiries_6m=inquiries.astype(np.int32),
        total_balance=np.round(balance, 0),
    )
    at_app = BureauAtApplication(
        fico=fico[app_row].astype(np.float64),
        utilization=utilization[app_row],
        delinquencies_12m=delinquencies[app_row],
        inquiries_6m=inquiries[app_row],
    )
    return bureau, at_app
