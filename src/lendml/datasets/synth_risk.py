"""The truth model of the synthetic lending world: who defaults, and when.

The 12-month default probability of an application is the logistic of four parts:

(a) the application: payment-to-income, term, purpose, channel, an inflated income;
(b) the bureau snapshot it sees: FICO, revolving utilisation, delinquencies, inquiries;
(c) the borrower's transaction habits that window aggregates measure: spending over
    income, cash advances, gambling;
(d) the latent financial stress, which shows only in the *order and timing* of
    transactions (see :mod:`lendml.datasets.synth_transactions`).

After the macro shock the intercept rises and the weights move (leverage, spending and
cash advances matter more, FICO a little less), so a model refit on post-shock data beats
one fitted before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lendml.datasets.synth_bureau import BureauAtApplication
from lendml.datasets.synth_calendar import DAY, add_months, sigmoid
from lendml.datasets.synth_population import Applications, Population


@dataclass(frozen=True)
class RiskWeights:
    """Weights of the truth model in one regime (log-odds per unit)."""

    intercept: float
    payment_to_income: float
    spend_ratio: float
    cash_advances: float
    fico: float
    utilization: float
    income_shock: float
    stress: float


PRE_SHIFT = RiskWeights(
    intercept=-4.35,
    payment_to_income=7.0,
    spend_ratio=2.2,
    cash_advances=0.45,
    fico=-0.011,
    utilization=1.1,
    income_shock=0.0,
    stress=3.0,
)
POST_SHIFT = RiskWeights(
    intercept=-4.50,
    payment_to_income=9.5,
    spend_ratio=3.0,
    cash_advances=0.7,
    fico=-0.006,
    utilization=1.8,
    income_shock=5.0,
    stress=3.4,
)

_TERM_EFFECT = {12: -0.15, 24: 0.0, 36: 0.15, 60: 0.35}
_PURPOSE_EFFECT = np.array([0.20, 0.15, -0.20, -0.15, 0.0, 0.25, 0.40, 0.10])
_CHANNEL_EFFECT = np.array([0.0, 0.05, 0.20, -0.05])

# After the shock incomes fall while spending falls much less: the spend ratio rises.
SPEND_CUT_AFTER_SHOCK = 0.97
CASH_ADVANCE_BOOST_AFTER_SHOCK = 1.7


@dataclass(frozen=True)
class Outcomes:
    """One outcome per application of a chunk."""

    probability: np.ndarray  # 12-month default probability (not written out)
    defaulted: np.ndarray
    default_at: np.ndarray  # epoch seconds; meaningless where defaulted == 0
    observed_at: np.ndarray


def monthly_payment(amount: np.ndarray, annual_rate: np.ndarray, term: np.ndarray) -> np.ndarray:
    """Annuity payment of a loan."""
    r = annual_rate / 12.0
    return amount * r / (1.0 - (1.0 + r) ** (-term.astype(np.float64)))


def effective_spend_ratio(pop: Population, borrower: np.ndarray, post: np.ndarray) -> np.ndarray:
    """Debits over net income as the transactions show them, before or after the shock."""
    after = SPEND_CUT_AFTER_SHOCK / (1.0 - pop.shock[borrower])
    return pop.spend_ratio[borrower] * np.where(post, after, 1.0)


def default_logit(pop: Population, apps: Applications, bureau: BureauAtApplication) -> np.ndarray:
    """Log-odds of a 12-month default for each application."""
    b = apps.borrower
    post = apps.post_shift

    def weight(name: str) -> np.ndarray:
        return np.where(post, getattr(POST_SHIFT, name), getattr(PRE_SHIFT, name))

    pti = monthly_payment(apps.loan_amount, apps.requested_rate, apps.term) / apps.true_income
    term = np.select([apps.term == t for t in _TERM_EFFECT], list(_TERM_EFFECT.values()))
    inflated = np.maximum(np.log(apps.stated_income / apps.true_income), 0.0)
    cash = pop.cash_rate[b] * np.where(post, CASH_ADVANCE_BOOST_AFTER_SHOCK, 1.0)
    application = (
        weight("payment_to_income") * (pti - 0.09)
        + term
        + _PURPOSE_EFFECT[apps.purpose]
        + _CHANNEL_EFFECT[apps.channel]
        + 0.8 * inflated
        - 0.008 * (pop.age[b] - 40)
        - 0.025 * np.minimum(pop.employment_years[b], 15.0)
        - 0.20 * pop.home_owner[b]
    )
    credit_file = (
        weight("fico") * (bureau.fico - 690.0)
        + weight("utilization") * (bureau.utilization - 0.4)
        + 0.30 * np.minimum(bureau.delinquencies_12m, 6.0)
        + 0.07 * np.minimum(bureau.inquiries_6m, 10.0)
    )
    habits = (
        weight("spend_ratio") * (effective_spend_ratio(pop, b, post) - 0.9)
        + weight("cash_advances") * np.log1p(cash)
        + 0.20 * np.log1p(pop.gamble_rate[b])
        + weight("income_shock") * (pop.shock[b] - 0.10) * post
    )
    sequence = weight("stress") * pop.stress[b]
    return weight("intercept") + application + credit_file + habits + sequence


def build_outcomes(
    rng: np.random.Generator,
    pop: Population,
    apps: Applications,
    bureau: BureauAtApplication,
    *,
    horizon_months: int,
) -> Outcomes:
    """Draw whether and when each application defaults within the horizon."""
    n = len(apps)
    p12 = sigmoid(default_logit(pop, apps, bureau))
    p_horizon = 1.0 - (1.0 - p12) ** (horizon_months / 12.0)
    defaulted = (rng.random(n) < p_horizon).astype(np.int32)
    observed_at = add_months(apps.applied, horizon_months)
    horizon_days = (observed_at - apps.applied) / DAY
    # Default means 90+ days past due: rarely before the fourth month of a loan.
    earliest = np.minimum(120.0, horizon_days / 3.0)
    delay = earliest + (horizon_days - earliest) * rng.beta(1.8, 2.4, n)
    default_at = apps.applied + (delay * DAY).astype(np.int64)
    default_at = np.minimum(default_at, observed_at - 1)
    return Outcomes(
        probability=p12, defaulted=defaulted, default_at=default_at, observed_at=observed_at
    )
