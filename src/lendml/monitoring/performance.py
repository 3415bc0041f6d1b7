"""Realised performance of served decisions: the prediction log joined to outcomes.

Outcomes arrive months after the decision, in a table with the entity key, the label
(1 = bad) and when it was observed. Each logged decision of the model (champion and canary
roles; shadow scores were never decisions) is joined to its entity's outcome, and
:func:`lendml.evaluation.vintage.performance_by_vintage` measures every vintage on the
outcomes observed by the as-of time only. Declined applicants have no outcome: the figures
describe the approved book (selection bias — see docs/monitoring.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from lendml.errors import DataValidationError
from lendml.evaluation.vintage import performance_by_vintage


def log_performance(
    log: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    key: str,
    label: str,
    observed_at: str,
    as_of: Any,
    version: int | None = None,
    roles: Sequence[str] = ("champion", "canary"),
    min_labels: int = 30,
) -> pd.DataFrame:
    """Performance by vintage of a flattened prediction log (``read_prediction_log``).

    ``outcomes`` holds one row per entity ``key`` (the log's ``entity.<key>``) with
    ``label`` and ``observed_at``; an entity decided several times is joined on each
    decision (the outcome of its loan belongs to its last decision before the outcome —
    keep one decision per loan in the log, e.g. one application id per entity key).

    Raises
    ------
    DataValidationError
        A column is missing, or an entity has more than one outcome.
    """
    column = f"entity.{key}"
    for name, frame, cols in (
        ("prediction log", log, [column, "time", "probability", "role"]),
        ("outcomes", outcomes, [key, label, observed_at]),
    ):
        absent = [c for c in cols if c not in frame.columns]
        if absent:
            raise DataValidationError(
                f"The {name} lacks the column(s) {absent!r}; got "
                f"{list(map(str, frame.columns))[:20]!r}."
            )
    if outcomes[key].duplicated().any():
        dup = outcomes.loc[outcomes[key].duplicated(), key].iloc[:5].tolist()
        raise DataValidationError(
            f"The outcomes hold more than one row for entity key(s) {dup!r}; keep one "
            "outcome per loan."
        )
    rows = log[log["role"].isin(list(roles))]
    if version is not None and "version" in rows.columns:
        rows = rows[rows["version"] == version]
    # keys are compared as text: the log keeps JSON scalars, outcome files may differ
    left = rows.assign(__key__=rows[column].astype(str))
    right = outcomes[[key, label, observed_at]].assign(__key__=outcomes[key].astype(str))
    joined = left.merge(right.drop(columns=[key]), on="__key__", how="left")
    frame = joined.rename(columns={label: "__label__", observed_at: "__observed__"})
    return performance_by_vintage(
        frame,
        as_of=as_of,
        score="probability",
        label="__label__",
        decided_at="time",
        observed_at="__observed__",
        min_labels=min_labels,
    )


__all__ = ["log_performance"]
