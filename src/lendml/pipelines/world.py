"""A lendml project over the synthetic lending world: the demo's, the simulation's, the tests'.

:func:`create_world_project` writes a world (``lendml datasets synth``), the feature
definitions below, and the application spine (applications ⨝ delayed outcomes ⨝ the
protected attributes used for fairness tests only), and applies the definitions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

LENDING_FEATURES = '''\
"""Features of the synthetic lending world (lendml datasets synth)."""

from lendml import (
    Aggregation, Derived, DerivedView, Entity, Feature, FeatureService, FeatureView, Source,
)

borrower = Entity("borrower", key="borrower_id")

transactions = Source.parquet("data/world/transactions", timestamp="tx_at")
bureau = Source.parquet("data/world/bureau", timestamp="snapshot_at")

spending = FeatureView(
    "spending", entity=borrower, source=transactions,
    aggregations=[
        Aggregation("amount", "count", window="30d", name="tx_count_30d"),
        Aggregation("amount", "sum", window="90d", where="direction = 'debit'", name="spend_90d"),
        Aggregation("amount", "sum", window="90d", where="direction = 'credit'", name="income_90d"),
        Aggregation("amount", "mean", window="30d", where="direction = 'debit'", name="avg_spend_30d"),
        Aggregation("amount", "max", window="30d", name="max_amount_30d"),
        Aggregation("amount", "std", window="90d", where="direction = 'debit'", name="std_spend_90d"),
        Aggregation("amount", "count", window="30d", where="category IN ('cash_advance', 'gambling')",
                    name="risky_tx_30d"),
        Aggregation("category", "count_distinct", window="90d", name="categories_90d"),
    ],
)

credit_file = FeatureView(
    "credit_file", entity=borrower, source=bureau, ttl="62d",
    features=[
        Feature("fico"),
        Feature("revolving_utilization", name="utilization"),
        Feature("delinquencies_12m"),
        Feature("inquiries_6m"),
    ],
)

ratios = DerivedView(
    "application_ratios",
    [
        Derived("loan_to_income", "loan_amount / (stated_income * 12)"),
        Derived("spend_to_income_90d", "spend_90d / income_90d"),
        Derived("applied_at_night", "hour(as_of) <= 5"),
    ],
    request_fields={"loan_amount": "number", "stated_income": "number"},
)

credit_v1 = FeatureService("credit_v1", [spending, credit_file, ratios])
'''

SPINE_COLUMNS = [
    "application_id",
    "borrower_id",
    "as_of",
    "loan_amount",
    "stated_income",
    "term_months",
    "defaulted",
    "observed_at",
    "gender",
    "age_group",
    "ethnicity",
]
PROTECTED = ("gender", "age_group", "ethnicity")


def world_spine(world: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per application: request fields, the delayed outcome, protected attributes."""
    world = Path(world)
    apps = pq.read_table(world / "applications").to_pandas()
    outcomes = pq.read_table(world / "outcomes").to_pandas()
    people = pq.read_table(world / "borrowers").to_pandas()
    spine = apps.merge(
        outcomes[["application_id", "defaulted", "observed_at"]], on="application_id"
    ).merge(people[["borrower_id", *PROTECTED]], on="borrower_id")
    return spine.rename(columns={"applied_at": "as_of"})[SPINE_COLUMNS]


def create_world_project(
    root: str | os.PathLike[str],
    *,
    name: str = "lending",
    borrowers: int,
    seed: int = 42,
    months: int = 24,
    shift_month: int | None = 15,
    outcome_horizon_months: int = 3,
) -> tuple[Any, dict[str, Any]]:
    """Init a project at ``root`` over a new synthetic world; return it and the world summary.

    Writes ``data/world/`` (the world), ``features.py``, ``data/spine.parquet`` and
    applies the definitions. ``root`` must be new or empty.
    """
    from lendml.datasets import generate_world
    from lendml.project import Project

    project = Project.init(root, name=name)
    (project.root / "features.py").write_text(LENDING_FEATURES)
    world = project.root / "data" / "world"
    summary = generate_world(
        world,
        borrowers=borrowers,
        seed=seed,
        months=months,
        shift_month=shift_month,
        outcome_horizon_months=outcome_horizon_months,
    )
    project.apply()
    world_spine(world).to_parquet(project.root / "data" / "spine.parquet", index=False)
    return project, summary.to_dict()


__all__ = ["LENDING_FEATURES", "PROTECTED", "create_world_project", "world_spine"]
