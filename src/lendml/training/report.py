"""The evaluation every training run ends with (the same one ``lendml evaluate`` runs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lendml.evaluation.report import Evaluation, evaluate


def evaluate_predictions(
    y_true: np.ndarray,
    score: np.ndarray,
    *,
    reference_score: np.ndarray | None = None,
    features: pd.DataFrame | None = None,
    reference_features: pd.DataFrame | None = None,
    segments: pd.DataFrame | None = None,
    periods: pd.Series | None = None,
    period: str = "M",
    protected: pd.DataFrame | None = None,
    categorical: list[str] | tuple[str, ...] = (),
    cutoff: float | None = None,
    champion_score: np.ndarray | None = None,
    margin: float = 0.01,
    alpha: float = 0.05,
    info: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Evaluate test-window predictions; every frame is aligned with ``y_true``.

    Without a ``cutoff`` the fair-lending figures use the score's bad-rate quantile: the
    cutoff that would decline as many applicants as there are bads in the test window
    (stated in the report).
    """
    y = np.asarray(y_true, dtype=float)
    p = np.asarray(score, dtype=float)
    if cutoff is None and protected is not None and len(p):
        cutoff = float(np.quantile(p, 1.0 - float(np.mean(y))))
        info = {**dict(info or {}), "cutoff_rule": "declines as many as the test bad rate"}

    def reset(obj: Any) -> Any:
        return obj.reset_index(drop=True) if obj is not None else None

    return evaluate(
        y,
        p,
        reference_score=reference_score,
        features=reset(features),
        reference_features=reset(reference_features),
        segments=reset(segments),
        periods=reset(periods),
        period_freq=period,
        categorical=tuple(categorical),
        protected=reset(protected),
        cutoff=cutoff,
        champion_score=champion_score,
        margin=margin,
        alpha=alpha,
        info=dict(info or {}),
    )
