"""Hyperparameter tuning with Optuna: TPE, pruning through LightGBM callbacks, shared studies.

The objective is the validation window's AUC (or log loss). Trial 0 is always the model's
default parameters (and, when given, the champion's), so tuning never returns parameters
worse on validation than the defaults it started from. A study lives in memory by default;
with ``storage`` (``sqlite:///tuning.db``, ``postgresql://…``) several workers running the
same command share it (``load_if_exists``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from lendml.errors import ConfigError
from lendml.models import FeatureSchema, Model, model_class
from lendml.training.splits import kfold

log = logging.getLogger(__name__)

SearchSpace = Callable[[optuna.Trial], dict[str, Any]]


def _lightgbm_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.005, 0.1, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 500, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.2, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 100.0, log=True),
        "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
        "min_split_gain": trial.suggest_float("min_split_gain", 0.0, 0.5),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 100.0, log=True),
    }


def _scorecard_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "C": trial.suggest_float("C", 1e-3, 10.0, log=True),
        "min_iv": trial.suggest_float("min_iv", 0.0, 0.05),
    }


def _torch_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
    }


SEARCH_SPACES: dict[str, SearchSpace] = {
    "lightgbm": _lightgbm_space,
    "scorecard": _scorecard_space,
    "torch_mlp": _torch_space,
}


@dataclass(frozen=True)
class TuningResult:
    """The best parameters found and how the study went."""

    best_params: dict[str, Any]
    best_value: float
    metric: str
    n_trials: int
    n_pruned: int
    study: str
    storage: str | None  # the URL with its password masked
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_params": self.best_params,
            "best_value": self.best_value,
            "metric": self.metric,
            "n_trials": self.n_trials,
            "n_pruned": self.n_pruned,
            "study": self.study,
            "storage": self.storage,
            "trials": self.trials,
        }


def _mask(url: str | None) -> str | None:
    """A storage URL without its password (``postgresql://user:***@host/db``)."""
    if url is None or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


# objective → (study direction, the LightGBM metric that early stopping and pruning watch)
METRICS = {
    "auc": ("maximize", "auc"),
    "average_precision": ("maximize", "average_precision"),
    "logloss": ("minimize", "binary_logloss"),
}


def _open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage, retried while other workers create its tables.

    Several workers starting on an empty database race to create Optuna's tables; the
    losers see a unique-violation from the database. They retry after a short wait.
    Errors name the storage with its password masked.
    """
    import time

    from sqlalchemy.exc import SQLAlchemyError

    last: Exception | None = None
    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url)
        except SQLAlchemyError as exc:
            last = exc
            text = str(exc).lower()
            if "unique" not in text and "already exists" not in text:
                break
            time.sleep(0.2 * (attempt + 1))
    detail = str(getattr(last, "orig", None) or type(last).__name__).replace(url, _mask(url) or "")
    first = detail.strip().splitlines()[0] if detail.strip() else ""
    raise ConfigError(
        f"Could not open the tuning storage {_mask(url)!r}: {first}. Check the URL, that the "
        "database is up, and the credentials."
    ) from None


def validation_score(model: Model, X: pd.DataFrame, y: np.ndarray, metric: str) -> float:
    p = model.predict_proba(X)[:, 1]
    if metric == "auc":
        return float(roc_auc_score(y, p))
    if metric == "average_precision":
        return float(average_precision_score(y, p))
    return float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)))


def tune(
    kind: str,
    *,
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
    schema: FeatureSchema,
    base_params: Mapping[str, Any] | None = None,
    warm_start: Mapping[str, Any] | None = None,
    trials: int = 0,
    minutes: float | None = None,
    metric: str = "auc",
    storage: str | None = None,
    study_name: str = "lendml",
    seed: int = 42,
    cv: int = 0,
) -> TuningResult:
    """Search ``kind``'s parameters for the best validation AUC, average precision or log loss.

    ``base_params`` are fixed and overridden by each trial's suggestions; ``warm_start``
    (e.g. the champion's parameters) is evaluated right after the defaults.

    With ``cv`` ≥ 2 a trial is scored by stratified ``cv``-fold cross-validation over the
    training and validation rows together (each fold early-stops on its held-out part),
    not on the validation rows alone: a few thousand validation rows rank 50 trials
    mostly by noise, and the trial that wins on them rarely wins out of sample. Pruning
    then watches the first fold.
    """
    if trials <= 0 and minutes is None:
        raise ConfigError("Tuning needs a budget: trials > 0 or minutes.")
    space = SEARCH_SPACES.get(kind)
    if space is None:
        raise ConfigError(f"No search space for model kind {kind!r}.")
    cls = model_class(kind)
    base = dict(base_params or {})
    if metric not in METRICS:
        raise ConfigError(f"Unknown tuning metric {metric!r}; choose one of {sorted(METRICS)}.")
    direction, lgb_metric = METRICS[metric]
    if kind == "lightgbm":
        base.setdefault("eval_metric", lgb_metric)

    if cv == 1 or cv < 0:
        raise ConfigError(f"tuning cv must be 0 (validation rows) or at least 2; got {cv!r}.")
    if cv:
        X_all = pd.concat([X_train, X_valid])
        y_all = np.concatenate([y_train, y_valid])
        parts = [
            (X_all.iloc[a], y_all[a], X_all.iloc[b], y_all[b])
            for a, b in kfold(y_all, cv, seed=seed)
        ]
    else:
        parts = [(X_train, y_train, X_valid, y_valid)]

    def objective(trial: optuna.Trial) -> float:
        params = {**base, **space(trial)}
        scores, iterations = [], []
        for i, (X_tr, y_tr, X_va, y_va) in enumerate(parts):
            callbacks = []
            if kind == "lightgbm" and i == 0:
                from optuna_integration import LightGBMPruningCallback

                # A shared database gets one report per 10 rounds, not one per round.
                interval = 1 if storage is None else 10
                callbacks.append(
                    LightGBMPruningCallback(
                        trial, lgb_metric, valid_name="valid", report_interval=interval
                    )
                )
            model = cls(**params).fit(
                X_tr, y_tr, X_valid=X_va, y_valid=y_va, schema=schema, callbacks=callbacks
            )
            if hasattr(model, "best_iteration_"):
                iterations.append(int(model.best_iteration_))
            scores.append(validation_score(model, X_va, y_va, metric))
        if iterations:
            trial.set_user_attr("best_iteration", int(np.mean(iterations)))
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=_open_storage(storage) if storage is not None else None,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=30),
        load_if_exists=storage is not None,
    )
    if not study.trials:
        bounds = _space_bounds(space)
        study.enqueue_trial(_clip({**cls().get_params(), **base}, bounds))
        if warm_start:
            study.enqueue_trial(_clip(dict(warm_start), bounds))
    study.optimize(
        objective,
        n_trials=trials or None,
        timeout=minutes * 60 if minutes else None,
        gc_after_trial=False,
    )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ConfigError("No tuning trial completed; raise the budget.")
    best = study.best_trial
    best_params = {**base, **best.params}
    return TuningResult(
        best_params=best_params,
        best_value=float(best.value),
        metric=metric,
        n_trials=len(study.trials),
        n_pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        study=study_name,
        storage=_mask(storage),
        trials=[
            {
                "number": t.number,
                "state": t.state.name,
                "value": None if t.value is None or math.isnan(t.value) else float(t.value),
                "params": t.params,
            }
            for t in study.trials
        ],
    )


def _space_bounds(space: SearchSpace) -> dict[str, tuple[Any, Any]]:
    """The (low, high) of each parameter ``space`` suggests, probed with a recording trial."""
    bounds: dict[str, tuple[Any, Any]] = {}

    class _Recorder:
        def __getattr__(self, attr: str) -> Any:
            if not attr.startswith("suggest_"):
                raise AttributeError(attr)

            def suggest(param: str, low: Any = None, high: Any = None, **_: Any) -> Any:
                bounds[param] = (low, high)
                return low

            return suggest

    space(_Recorder())  # type: ignore[arg-type]
    return bounds


def _clip(params: dict[str, Any], bounds: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """The parameters of ``params`` that the space tunes, clipped into its ranges."""
    out = {}
    for name, (low, high) in bounds.items():
        if name in params and params[name] is not None:
            out[name] = min(max(params[name], low), high)
    return out
