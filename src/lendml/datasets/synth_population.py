"""Borrowers and their loan applications in the synthetic lending world.

A borrower is drawn with observable attributes (region, age, income, ...) and hidden
traits that drive everything else: a creditworthiness factor, a spending habit, cash
advance and gambling habits, and a latent *financial stress* level that only shows in the
order of their transactions (see :mod:`lendml.datasets.synth_transactions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lendml.datasets.synth_calendar import DAY, HOUR, Calendar, CategoricalSampler

REGIONS = (
    "northeast",
    "mid_atlantic",
    "southeast",
    "midwest",
    "south_central",
    "mountain",
    "pacific",
    "northwest",
)
_REGION_P = np.array([0.17, 0.12, 0.18, 0.15, 0.12, 0.08, 0.12, 0.06])
_REGION_INCOME = np.array([0.10, 0.06, -0.08, -0.03, -0.07, -0.02, 0.12, 0.03])
# Fraction of income lost in the macro shock: some regions are hit harder.
_REGION_SHOCK = np.array([0.08, 0.09, 0.12, 0.11, 0.13, 0.10, 0.07, 0.09])

GENDERS = ("female", "male", "non_binary")
_GENDER_P = np.array([0.49, 0.49, 0.02])

ETHNICITIES = ("group_a", "group_b", "group_c", "group_d", "group_e")
# Ethnicity depends on region only: any disparity a fairness test finds arrives through
# proxies (region -> income -> risk), never through a direct effect in the truth model.
_ETHNICITY_BY_REGION = np.array(
    [
        [0.62, 0.12, 0.14, 0.08, 0.04],
        [0.52, 0.26, 0.12, 0.07, 0.03],
        [0.50, 0.32, 0.13, 0.03, 0.02],
        [0.72, 0.14, 0.08, 0.04, 0.02],
        [0.40, 0.14, 0.38, 0.04, 0.04],
        [0.66, 0.03, 0.22, 0.04, 0.05],
        [0.42, 0.06, 0.30, 0.18, 0.04],
        [0.74, 0.03, 0.10, 0.09, 0.04],
    ]
)

AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_EDGES = np.array([25, 35, 45, 55, 65])

PURPOSES = (
    "debt_consolidation",
    "credit_card",
    "home_improvement",
    "car",
    "major_purchase",
    "medical",
    "small_business",
    "other",
)
_PURPOSE_P = np.array([0.38, 0.18, 0.10, 0.09, 0.08, 0.06, 0.04, 0.07])
_PURPOSE_P_POST = np.array([0.44, 0.18, 0.07, 0.07, 0.05, 0.08, 0.04, 0.07])
_PURPOSE_SIZE = np.array([1.3, 1.0, 1.6, 1.8, 1.0, 0.7, 2.0, 0.6])

APP_CHANNELS = ("web", "mobile", "broker", "branch")
_APP_CHANNEL_P = np.array([[0.45, 0.35, 0.12, 0.08], [0.42, 0.36, 0.16, 0.06]])

TERMS = np.array([12, 24, 36, 60])
_TERM_P = np.array(
    [
        [0.45, 0.35, 0.18, 0.02],  # under 5k
        [0.15, 0.30, 0.40, 0.15],  # 5k - 15k
        [0.05, 0.15, 0.40, 0.40],  # over 15k
    ]
)

# Hour-of-day weights of applications: lunch and evening peaks, little at night.
_APP_HOURS = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3.5, 5, 6, 6.5, 7, 6.5, 6, 5.5, 5, 5, 5.5, 6.5, 7, 6, 4, 2]
)

_ETHNICITY = CategoricalSampler.from_weights(_ETHNICITY_BY_REGION)
_APP_HOUR = CategoricalSampler.from_weights(_APP_HOURS)
_PURPOSE = CategoricalSampler.from_weights(np.stack([_PURPOSE_P, _PURPOSE_P_POST]))
_TERM = CategoricalSampler.from_weights(_TERM_P)
_APP_CHANNEL = CategoricalSampler.from_weights(_APP_CHANNEL_P)

_MAX_APPS = 3
_APPS_P = np.array([0.04, 0.78, 0.13, 0.05])  # 0, 1, 2 or 3 applications planned


@dataclass(frozen=True)
class Population:
    """One chunk of borrowers: what the tables show and the hidden traits behind it.

    All arrays have one value per borrower; times are epoch seconds (UTC).
    """

    borrower_id: np.ndarray
    created: np.ndarray
    churn: np.ndarray  # end (exclusive) of transaction activity, at most the world's end
    first_app: np.ndarray  # first planned application, possibly after the world's end
    region: np.ndarray
    gender: np.ndarray
    ethnicity: np.ndarray
    age: np.ndarray
    employment_years: np.ndarray
    home_owner: np.ndarray
    income: np.ndarray  # gross monthly income before the shock
    shock: np.ndarray  # fraction of income lost after the shock
    overstatement: np.ndarray  # log(stated / true income) habit
    spend_ratio: np.ndarray  # monthly debits / net income
    cash_rate: np.ndarray  # cash advances a month, before the shock
    gamble_rate: np.ndarray  # gambling transactions a month
    stress: np.ndarray  # latent financial stress in [0, 1]
    payday: np.ndarray  # usual day of month of the salary
    housing_day: np.ndarray
    utility_day: np.ndarray
    fico0: np.ndarray
    util0: np.ndarray
    delinquency_rate: np.ndarray  # new delinquencies a month
    inquiry_rate: np.ndarray  # new credit inquiries a month
    tradelines0: np.ndarray
    revolving_limit: np.ndarray
    installment_balance: np.ndarray

    def __len__(self) -> int:
        return len(self.borrower_id)


@dataclass(frozen=True)
class Applications:
    """The applications of one chunk, ordered by borrower then time."""

    application_id: np.ndarray
    borrower: np.ndarray  # index into the chunk's Population
    applied: np.ndarray
    month: np.ndarray
    post_shift: np.ndarray
    loan_amount: np.ndarray
    term: np.ndarray
    purpose: np.ndarray
    stated_income: np.ndarray
    true_income: np.ndarray
    channel: np.ndarray
    requested_rate: np.ndarray

    def __len__(self) -> int:
        return len(self.application_id)


def _choice(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    return np.searchsorted(np.cumsum(p) / p.sum(), rng.random(size), side="right").astype(np.int8)


def build_population(
    rng: np.random.Generator, cal: Calendar, *, first_id: int, n: int
) -> tuple[Population, np.ndarray, np.ndarray]:
    """Draw ``n`` borrowers with ids from ``first_id``.

    Returns the population and its planned applications inside the world, as two aligned
    arrays: the borrower index and the application time (sorted by borrower, then time).
    """
    start, end = cal.start, cal.end
    created = start + np.floor(rng.random(n) * (end - start)).astype(np.int64)
    region = _choice(rng, _REGION_P, n)
    gender = _choice(rng, _GENDER_P, n)
    ethnicity = _ETHNICITY.sample(rng.random(n), region)
    age = np.clip(18 + rng.gamma(3.0, 6.5, n), 18, 85).astype(np.int32)
    employment = np.round(np.minimum(rng.gamma(1.5, 3.0, n), age - 18.0), 1)

    credit = rng.standard_normal(n)  # hidden creditworthiness factor
    log_income = (
        np.log(4200.0)
        + _REGION_INCOME[region]
        + 0.012 * (np.minimum(age, 50) - 35)
        - 0.0004 * np.maximum(age - 58, 0) ** 2
        + 0.015 * np.minimum(employment, 15)
        + 0.10 * credit
        + 0.36 * rng.standard_normal(n)
    )
    income = np.round(np.clip(np.exp(log_income), 900.0, 60_000.0), -1)
    rel_income = np.log(income / 4200.0)
    home_owner = rng.random(n) < 1.0 / (1.0 + np.exp(0.5 - 0.06 * (age - 35) - 0.8 * rel_income))
    shock = np.clip(_REGION_SHOCK[region] + 0.04 * rng.standard_normal(n), 0.0, 0.35)
    inflates = rng.random(n) < 0.15
    overstatement = np.where(inflates, rng.uniform(0.05, 0.40, n), 0.02 * rng.standard_normal(n))

    spend_ratio = np.clip(
        0.88 + 0.13 * rng.standard_normal(n) - 0.05 * rel_income - 0.04 * credit, 0.5, 1.5
    )
    cash_user = rng.random(n) < 0.25
    cash_rate = np.where(cash_user, rng.gamma(1.5, 0.6, n) * np.exp(-0.3 * credit), 0.02)
    gambler = rng.random(n) < 0.15
    gamble_rate = np.where(gambler, rng.gamma(2.0, 0.8, n), 0.01)
    latent = -0.15 * credit + np.sqrt(1 - 0.15**2) * rng.standard_normal(n)
    stress = 1.0 / (1.0 + np.exp(-2.4 * (latent - 0.9)))

    payday = rng.integers(1, 25, n).astype(np.int64)
    housing_day = rng.integers(1, 6, n).astype(np.int64)
    utility_day = rng.integers(5, 26, n).astype(np.int64)

    fico0 = 695.0 + 45.0 * credit + 25.0 * rng.standard_normal(n)
    util0 = 1.2 / (1.0 + np.exp(0.6 + 0.7 * credit - 0.6 * rng.standard_normal(n)))
    delinquency_rate = 0.012 * np.exp(-0.9 * credit + 0.4 * rng.standard_normal(n))
    inquiry_rate = 0.12 * np.exp(-0.3 * credit + 0.3 * rng.standard_normal(n))
    tradelines0 = 1 + rng.poisson(2.0 + 0.12 * (age - 18))
    revolving_limit = income * rng.lognormal(np.log(1.2) + 0.2 * credit, 0.6)
    installment_balance = income * rng.lognormal(np.log(2.5), 1.0, n)
    installment_balance += home_owner * income * rng.uniform(10.0, 30.0, n)

    # Planned applications: the first comes at least 36 days after joining so that every
    # application has a bureau snapshot and a month of transactions before it.
    n_apps = _choice(rng, _APPS_P, n).astype(np.int64)
    gaps = np.empty((n, _MAX_APPS))
    gaps[:, 0] = 36 * DAY + rng.gamma(2.0, 28.0, n) * DAY
    gaps[:, 1:] = 45 * DAY + rng.gamma(2.0, 55.0, (n, _MAX_APPS - 1)) * DAY
    times = created[:, None] + np.cumsum(gaps, axis=1).astype(np.int64)
    first_app = times[:, 0].copy()
    last_planned = times[np.arange(n), np.maximum(n_apps - 1, 0)]
    churn = last_planned + 10 * DAY + (rng.exponential(75.0, n) * DAY).astype(np.int64)
    churn = np.minimum(churn, end)

    planned = np.arange(_MAX_APPS)[None, :] < n_apps[:, None]
    keep = planned & (times < end)
    app_borrower = np.nonzero(keep)[0]
    app_time = times[keep]

    pop = Population(
        borrower_id=first_id + np.arange(n, dtype=np.int64),
        created=created,
        churn=churn,
        first_app=first_app,
        region=region,
        gender=gender,
        ethnicity=ethnicity.astype(np.int8),
        age=age,
        employment_years=employment,
        home_owner=home_owner,
        income=income,
        shock=shock,
        overstatement=overstatement,
        spend_ratio=spend_ratio,
        cash_rate=cash_rate,
        gamble_rate=gamble_rate,
        stress=stress,
        payday=payday,
        housing_day=housing_day,
        utility_day=utility_day,
        fico0=fico0,
        util0=util0,
        delinquency_rate=delinquency_rate,
        inquiry_rate=inquiry_rate,
        tradelines0=tradelines0,
        revolving_limit=revolving_limit,
        installment_balance=installment_balance,
    )
    return pop, app_borrower, app_time


def age_group(age: np.ndarray) -> np.ndarray:
    """Index into :data:`AGE_GROUPS` for each age."""
    return np.searchsorted(_AGE_EDGES, age, side="right").astype(np.int8)


def build_applications(
    rng: np.random.Generator,
    cal: Calendar,
    pop: Population,
    borrower: np.ndarray,
    planned: np.ndarray,
    *,
    first_id: int,
) -> Applications:
    """Fill in the fields of the planned applications (ids from ``first_id``)."""
    n = len(borrower)
    # Keep the planned day, put the time of day on the applications' daily cycle; the
    # planned time is at least 36 days after joining, so the result is at least 35 days.
    hour = _APP_HOUR.sample(rng.random(n))
    applied = planned - planned % DAY + hour * HOUR + rng.integers(0, HOUR, n)
    applied = np.clip(applied, pop.created[borrower] + 35 * DAY, cal.end - 1)
    month = cal.month_of(applied)
    post = cal.is_post_shift(month)

    true_income = pop.income[borrower] * (1.0 - pop.shock[borrower] * post)
    stated = true_income * np.exp(pop.overstatement[borrower] + 0.03 * rng.standard_normal(n))
    stated_income = np.round(stated, -1)

    purpose = _PURPOSE.sample(rng.random(n), post.astype(np.int64)).astype(np.int8)
    size = _PURPOSE_SIZE[purpose] * (1.0 + 0.05 * post)
    loan = stated_income * rng.lognormal(np.log(2.0), 0.5, n) * size
    loan_amount = np.clip(np.round(loan, -2), 1000.0, 50_000.0)
    band = np.searchsorted(np.array([5000.0, 15000.0]), loan_amount, side="right")
    term_idx = _TERM.sample(rng.random(n), band)
    term = TERMS[term_idx].astype(np.int32)
    channel = _APP_CHANNEL.sample(rng.random(n), post.astype(np.int64)).astype(np.int8)
    rate = (
        0.075
        + 0.0005 * (780.0 - pop.fico0[borrower])
        + 0.04 * pop.util0[borrower]
        + 0.01 * (term == 60)
        + 0.015 * post
        + 0.015 * rng.standard_normal(n)
    )
    requested_rate = np.round(np.clip(rate, 0.05, 0.36), 4)

    return Applications(
        application_id=first_id + np.arange(n, dtype=np.int64),
        borrower=borrower,
        applied=applied,
        month=month,
        post_shift=post,
        loan_amount=loan_amount,
        term=term,
        purpose=purpose,
        stated_income=stated_income,
        true_income=true_income,
        channel=channel,
        requested_rate=requested_rate,
    )
