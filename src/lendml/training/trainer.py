"""Fit, tune and score one model on a split: the step both training modes share.

:func:`fit_on_split` takes a ready frame (inputs + label), a :class:`~.splits.Split` and a
:class:`ModelPlan`; it tunes on the validation window when a budget is given, fits the
final model on the train window with early stopping on validation, runs k folds inside
the train window when the split has them, and scores every part. Tracking and reports
happen around it (:mod:`lendml.training.run`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from lendml.errors import ConfigError, TrainingError
from lendml.models import FeatureSchema, Model, model_class
from lendml.training.config import PROTECTED_NAME_HINTS
from lendml.training.splits import Split
from lendml.training.tuning import TuningResult, tune

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuningPlan:
    trials: int = 0
    minutes: float | None = None
    storage: str | None = None
    study: str | None = None
    seed: int = 42
    metric: str = "auc"
    warm_start: Mapping[str, Any] | None = None
    cv: int = 0  # >= 2: score trials by k-fold CV over train + valid

    @property
    def enabled(self) -> bool:
        return self.trials > 0 or self.minutes is not None


@dataclass(frozen=True)
class ModelPlan:
    """What to train: the kind, its fixed parameters, the input schema hints, tuning."""

    kind: str = "lightgbm"
    params: Mapping[str, Any] = field(default_factory=dict)
    monotone: Mapping[str, int] = field(default_factory=dict)
    categorical: Sequence[str] | None = None
    tuning: TuningPlan = field(default_factory=TuningPlan)


@dataclass
class FitResult:
    """The fitted model, the parameters it used and its predictions on each part."""

    model: Model
    params: dict[str, Any]
    schema: FeatureSchema
    predictions: dict[str, np.ndarray]
    metrics: dict[str, float]
    tuning: TuningResult | None = None
    folds: list[dict[str, float]] = field(default_factory=list)


def check_inputs(
    inputs: Sequence[str], *, protected: Sequence[str], allow_protected: Sequence[str] = ()
) -> None:
    """Refuse protected attributes as model inputs unless explicitly allowed.

    A declared protected column must not be an input; an input whose name looks like a
    protected characteristic (sex, race, age, marital status, …) must be declared
    protected (then it is kept out of the inputs and used for fairness tests) or allowed.
    """
    allowed = set(allow_protected)
    declared = [c for c in inputs if c in set(protected) and c not in allowed]
    if declared:
        raise ConfigError(
            f"Protected attributes {declared!r} are model inputs. They are for fairness tests "
            "only: drop them from the inputs, or list them under inputs.allow_protected "
            "(--allow-protected) if the law and your policy permit it."
        )
    suspicious = [c for c in inputs if c not in allowed and _looks_protected(c)]
    if suspicious:
        raise ConfigError(
            f"Inputs {suspicious!r} look like protected attributes. Declare them protected "
            "(protected: [...] / --protected COL; they are then used only for fairness tests) "
            "or allow them explicitly (inputs.allow_protected / --allow-protected COL)."
        )


def _looks_protected(name: str) -> bool:
    words = name.lower().replace("-", "_").split("_")
    lowered = name.lower()
    return any(h in words or lowered == h for h in PROTECTED_NAME_HINTS)


def binary_target(values: pd.Series, positive: Any = 1) -> np.ndarray:
    """0/1 floats from a label column (``positive`` marks the bad outcome); NaN stays NaN."""
    if values.isna().all():
        raise TrainingError("The label column has no observed values.")
    present = values.dropna()
    if positive is not None and not (present == positive).any():
        sample = list(present.unique()[:5])
        raise ConfigError(
            f"No label equals the positive value {positive!r}; the label has values such as "
            f"{sample!r}. Set the positive value (--positive / label.positive)."
        )
    out = (values == positive).astype("float64")
    return out.mask(values.isna()).to_numpy(dtype="float64", na_value=np.nan)


def score_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The headline figures of one part (AUC, Gini, log loss, Brier, average precision)."""
    if len(y) == 0:
        return {"n": 0.0}
    if len(np.unique(y)) < 2:
        return {"n": float(len(y)), "bad_rate": float(np.mean(y)) if len(y) else float("nan")}
    auc = float(roc_auc_score(y, p))
    return {
        "n": float(len(y)),
        "bad_rate": float(np.mean(y)),
        "auc": auc,
        "gini": 2 * auc - 1,
        "logloss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15))),
        "brier": float(brier_score_loss(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
    }


def fit_on_split(
    frame: pd.DataFrame,
    y: np.ndarray,
    split: Split,
    plan: ModelPlan,
    *,
    inputs: Sequence[str],
    study_name: str = "lendml",
) -> FitResult:
    """Tune (optionally), fit and score ``plan`` on ``split`` of ``frame``.

    ``y`` holds 0/1 labels aligned with ``frame`` (NaN only on rows the split left out).
    """
    X = frame[list(inputs)]
    schema = FeatureSchema.infer(X, categorical=plan.categorical, monotone=plan.monotone)
    cls = model_class(plan.kind)
    params = dict(plan.params)
    try:
        cls(**params)
    except TypeError as exc:
        valid = sorted(cls().get_params())
        raise ConfigError(
            f"Bad parameter for model kind {plan.kind!r}: {exc}. Valid parameters: {valid}."
        ) from exc

    def part(idx: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        return X.iloc[idx], y[idx]

    X_tr, y_tr = part(split.train)
    X_va, y_va = part(split.valid)
    X_te = X.iloc[split.test]

    tuning = None
    if plan.tuning.enabled:
        tuning = tune(
            plan.kind,
            X_train=X_tr,
            y_train=y_tr,
            X_valid=X_va,
            y_valid=y_va,
            schema=schema,
            base_params=params,
            warm_start=plan.tuning.warm_start,
            trials=plan.tuning.trials,
            minutes=plan.tuning.minutes,
            metric=plan.tuning.metric,
            storage=plan.tuning.storage,
            study_name=plan.tuning.study or study_name,
            seed=plan.tuning.seed,
            cv=plan.tuning.cv,
        )
        params = dict(tuning.best_params)
        log.info("tuning: best validation %s %.5f", tuning.metric, tuning.best_value)

    folds = []
    for i, (tr, te) in enumerate(split.folds):
        fold_model = cls(**params).fit(X.iloc[tr], y[tr], X_valid=X_va, y_valid=y_va, schema=schema)
        fold_metrics = score_metrics(y[te], fold_model.predict_proba(X.iloc[te])[:, 1])
        folds.append({"fold": float(i), **fold_metrics})

    model = cls(**params).fit(X_tr, y_tr, X_valid=X_va, y_valid=y_va, schema=schema)
    predictions = {
        "train": model.predict_proba(X_tr)[:, 1],
        "valid": model.predict_proba(X_va)[:, 1],
        "test": model.predict_proba(X_te)[:, 1],
    }
    metrics: dict[str, float] = {}
    for name, p in predictions.items():
        for key, value in score_metrics(part(getattr(split, name))[1], p).items():
            metrics[f"{name}_{key}"] = value
    if folds:
        aucs = [f["auc"] for f in folds if "auc" in f]
        metrics["cv_auc_mean"] = float(np.mean(aucs))
        metrics["cv_auc_std"] = float(np.std(aucs))
    if hasattr(model, "best_iteration_"):
        metrics["best_iteration"] = float(model.best_iteration_)
    return FitResult(
        model=model,
        params=params,
        schema=schema,
        predictions=predictions,
        metrics=metrics,
        tuning=tuning,
        folds=folds,
    )
