"""Evaluate registered models on labelled rows: one model, or a challenger against a champion.

This is what ``lendml evaluate`` runs: models come from the registry (hash-checked, never
unpickled), rows from a ready table; the report is the same one training writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lendml.errors import ConfigError
from lendml.evaluation.report import Evaluation
from lendml.registry.registry import Registry
from lendml.training.report import evaluate_predictions
from lendml.training.trainer import binary_target


@dataclass(frozen=True)
class Assessment:
    """The evaluation and where its files were written."""

    evaluation: Evaluation
    model_ref: str
    champion_ref: str | None
    out_dir: Path
    rows: int


def evaluate_registered(
    registry: Registry,
    model_ref: str,
    frame: pd.DataFrame,
    *,
    label: str,
    positive: Any = 1,
    champion_ref: str | None = None,
    protected: Sequence[str] = (),
    segments: Sequence[str] = (),
    cutoff: float | None = None,
    margin: float = 0.01,
    alpha: float = 0.05,
    out_dir: str | Path,
) -> Assessment:
    """Score ``frame`` with ``model_ref`` (and ``champion_ref``) and write the report.

    Rows whose label is missing are left out (and counted in the report's info).
    """
    if label not in frame.columns:
        raise ConfigError(f"The label column {label!r} is not in the data.")
    missing = [c for c in [*protected, *segments] if c not in frame.columns]
    if missing:
        raise ConfigError(f"Columns {missing!r} are not in the data.")
    y_all = binary_target(frame[label], positive)
    keep = ~np.isnan(y_all)
    rows = frame.loc[keep].reset_index(drop=True)
    y = y_all[keep]
    loaded = registry.load(model_ref)
    score = loaded.model.predict_proba(rows)[:, 1]
    champion_score = None
    if champion_ref is not None:
        champion = registry.load(champion_ref)
        champion_score = champion.model.predict_proba(rows)[:, 1]
    info = loaded.info
    evaluation = evaluate_predictions(
        y,
        score,
        protected=rows[list(protected)] if protected else None,
        segments=rows[list(segments)] if segments else None,
        categorical=loaded.model.schema_.categorical,
        cutoff=cutoff,
        champion_score=champion_score,
        margin=margin,
        alpha=alpha,
        info={
            "model_name": info.name,
            "version": info.version,
            "run_id": info.run_id,
            "model_kind": loaded.model.kind,
            **dict(info.lineage),
            "champion": champion_ref,
            "immature_labels": int((~keep).sum()),
        },
    )
    out = Path(out_dir)
    evaluation.write_json(out / "evaluation.json")
    evaluation.write_html(out / "report.html")
    evaluation.write_model_card(out / "model_card.md")
    return Assessment(evaluation, model_ref, champion_ref, out, len(rows))
