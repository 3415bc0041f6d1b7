"""Tracked training runs: fit, evaluate, record everything, and rebuild a run exactly.

Both ways of training end here:

* :func:`train_service_frame` — a point-in-time training set from a feature service
  (``lendml train --config train.yaml``, ``Project.train``);
* :func:`train_table` — a ready CSV/Parquet table (``lendml train --data PATH``).

Each run records in MLflow the parameters, every metric, the lineage tags (feature service
and version, training-set fingerprint, data windows, code version), the model artifact
(code-free, hash-checked), the evaluation (JSON, HTML report, model card) and a *recipe*
(``lendml-train.json``): the resolved inputs and final parameters from which
:func:`refit_from_recipe` rebuilds the same model — ``lendml train --reproduce RUN_ID``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lendml.core.timeutil import parse_duration
from lendml.errors import ConfigError
from lendml.models import Model, read_artifact
from lendml.models.artifact import MANIFEST
from lendml.registry import tags
from lendml.registry.tracking import Tracker
from lendml.training.config import TrainConfig
from lendml.training.data import (
    TableFit,
    TableSpec,
    file_fingerprint,
    fit_table,
    read_table,
    refit_final,
)
from lendml.training.reference import model_metadata
from lendml.training.report import evaluate_predictions
from lendml.training.splits import Split, out_of_time_split, random_split, with_folds
from lendml.training.trainer import (
    FitResult,
    ModelPlan,
    TuningPlan,
    binary_target,
    check_inputs,
    fit_on_split,
)

log = logging.getLogger(__name__)

RECIPE = "lendml-train.json"
# Lineage tags every run carries (the registry copies them onto model versions).
TAG_FEATURE_SERVICE = tags.FEATURE_SERVICE_TAG
TAG_FEATURE_SERVICE_VERSION = tags.FEATURE_SERVICE_VERSION_TAG
TAG_TRAINING_SET = tags.TRAINING_SET_FINGERPRINT_TAG
TAG_MODEL_KIND = tags.MODEL_KIND_TAG
TAG_DATA_WINDOWS = tags.DATA_WINDOWS_TAG
TAG_MODE = "lendml.train_mode"
TAG_DATA = "lendml.data_sha256"


@dataclass
class TrainResult:
    """What a training run produced."""

    run_id: str
    name: str
    model: Model
    params: dict[str, Any]
    metrics: dict[str, float]
    auc: float
    split: dict[str, Any]
    tuning: dict[str, Any] | None = None
    folds: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    report_dir: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every figure, JSON-ready; ``auc`` is the test AUC (or the mean fold test AUC)."""
        return _clean(
            {
                "auc": self.auc,
                "run_id": self.run_id,
                "name": self.name,
                "model_kind": self.model.kind,
                "params": self.params,
                "metrics": self.metrics,
                "split": self.split,
                "folds": self.folds,
                "tuning": self.tuning,
                "evaluation": self.evaluation,
                "report": str(self.report_dir / "report.html") if self.report_dir else None,
            }
        )


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy scalars → Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _flat_params(prefix: str, obj: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flat_params(f"{name}.", value, out)
        else:
            out[name] = value
    return out


def _record(
    run: Any,
    *,
    fit: FitResult,
    metrics: Mapping[str, float],
    recipe: Mapping[str, Any],
    evaluation: Any,
    report_dir: Path,
    metadata: Mapping[str, Any],
) -> None:
    run.log_params(_flat_params("model.", fit.params, {}))
    run.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
    run.log_model(fit.model, artifact_path="model", metadata=metadata)
    run.log_dict(_clean(dict(recipe)), RECIPE)
    if fit.tuning is not None:
        run.log_dict(_clean(fit.tuning.to_dict()), "tuning.json")
    if evaluation is not None:
        evaluation.write_json(report_dir / "evaluation.json")
        evaluation.write_html(report_dir / "report.html")
        evaluation.write_model_card(report_dir / "model_card.md")
        run.log_artifacts(report_dir, "report")


# --------------------------------------------------------------------------- table mode


def train_table(
    path: str | Path,
    spec: TableSpec,
    plan: ModelPlan,
    *,
    tracker: Tracker,
    name: str,
    experiment: str = "lendml",
    report_dir: str | Path | None = None,
    cutoff: float | None = None,
) -> TrainResult:
    """Train on a ready table; track, evaluate and return the result."""
    frame = read_table(path)
    data_sha = file_fingerprint(path)
    out = Path(report_dir) if report_dir else Path(tempfile.mkdtemp(prefix="lendml-report-"))
    tags = {TAG_MODE: "table", TAG_DATA: data_sha, TAG_MODEL_KIND: plan.kind}
    with tracker.start_run(experiment=experiment, run_name=name, tags=tags) as run:
        run.log_params({f"data.{k}": v for k, v in spec.to_dict().items()})
        run.log_params({"data.path": str(Path(path).resolve()), "data.rows": len(frame)})
        result: TableFit = fit_table(frame, spec, plan, name=name)
        fit = result.final
        protected = frame.iloc[result.test_rows][list(spec.protected)] if spec.protected else None
        oot = result.mode == "out_of_time"
        train_rows = frame.iloc[result.split.train]
        evaluation = evaluate_predictions(
            result.test_label,
            result.test_score,
            # stability (PSI/CSI) compares the test window with training: out-of-time only
            reference_score=fit.predictions.get("train") if oot else None,
            features=frame.iloc[result.test_rows][result.inputs] if oot else None,
            reference_features=train_rows[result.inputs] if oot else None,
            protected=protected,
            categorical=fit.schema.categorical,
            cutoff=cutoff,
            info={
                "model_name": name,
                "run_id": run.run_id,
                "model_kind": plan.kind,
                "data": str(path),
                "data_sha256": data_sha,
                "mode": result.mode,
                "data_windows": result.split.windows,
                "excluded": result.split.excluded,
                "immature_labels": int(result.split.excluded.get("label_not_observed", 0)),
            },
        )
        metrics = {"auc": result.auc, **fit.metrics}
        windows = result.split.windows or {"cv": {"folds": len(result.folds)}}
        run.set_tags({TAG_DATA_WINDOWS: json.dumps(windows, default=str)})
        recipe = {
            "mode": "table",
            "name": name,
            "data": {"path": str(Path(path).resolve()), "sha256": data_sha},
            "spec": spec.to_dict(),
            "fit": {"mode": result.mode},
            "plan": _plan_dict(plan, fit.params),
        }
        # the rows the model is meant for: the test window, or every row under CV
        meant_for = frame.iloc[result.test_rows] if oot else frame
        metadata = model_metadata(
            fit.model,
            meant_for[result.inputs],
            run_id=run.run_id,
            cutoff=cutoff,
            protected=spec.protected,
            train=(train_rows if oot else frame)[result.inputs],
            p_bad=result.test_score if oot else None,
        )
        _record(
            run,
            fit=fit,
            metrics=metrics,
            recipe=recipe,
            evaluation=evaluation,
            report_dir=out,
            metadata=metadata,
        )
        return TrainResult(
            run_id=run.run_id,
            name=name,
            model=fit.model,
            params=fit.params,
            metrics=metrics,
            auc=result.auc,
            split={**result.split.to_dict(), "mode": result.mode},
            tuning=fit.tuning.to_dict() if fit.tuning else None,
            folds=result.folds,
            evaluation=evaluation.to_dict() if evaluation is not None else None,
            report_dir=out if evaluation is not None else None,
        )


def _plan_dict(plan: ModelPlan, final_params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": plan.kind,
        "params": dict(final_params),
        "monotone": dict(plan.monotone),
        "categorical": list(plan.categorical) if plan.categorical is not None else None,
    }


# --------------------------------------------------------------------------- service mode


@dataclass(frozen=True)
class ServiceFrame:
    """A training set as a frame, with what made it."""

    frame: pd.DataFrame
    feature_names: tuple[str, ...]
    service: str
    service_version: str
    fingerprint: str  # spine + feature service version + source snapshots
    immature_labels: int = 0
    spine_fingerprint: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)


def plan_from_config(config: TrainConfig) -> ModelPlan:
    """The model plan of a ``train.yaml``."""
    tuning = config.tuning
    return ModelPlan(
        kind=config.model.kind,
        params=dict(config.model.params),
        monotone=dict(config.model.monotone),
        categorical=config.model.categorical,
        tuning=TuningPlan(
            trials=tuning.trials,
            minutes=tuning.minutes,
            storage=tuning.storage,
            study=tuning.study,
            seed=tuning.seed,
            metric=tuning.metric,
            cv=tuning.cv,
        ),
    )


def service_inputs(data: ServiceFrame, config: TrainConfig) -> list[str]:
    """Feature-service features plus declared spine columns, minus exclusions."""
    frame = data.frame
    missing = [c for c in config.inputs.spine_columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"inputs.spine_columns {missing!r} are not spine columns.")
    bad = [c for c in config.inputs.exclude if c not in frame.columns]
    if bad:
        raise ConfigError(f"inputs.exclude names unknown columns {bad!r}.")
    inputs = [
        c
        for c in [*data.feature_names, *config.inputs.spine_columns]
        if c not in set(config.inputs.exclude)
    ]
    check_inputs(inputs, protected=config.protected, allow_protected=config.inputs.allow_protected)
    return inputs


def split_service_frame(data: ServiceFrame, config: TrainConfig, y: np.ndarray) -> Split:
    """The split a ``train.yaml`` asks for."""
    s = config.split
    frame = data.frame
    labels = pd.Series(y)
    if s.kind == "random":
        split = random_split(
            labels, valid_fraction=s.valid_fraction, test_fraction=s.test_fraction, seed=s.seed
        )
    else:
        time_col = s.time_column or config.as_of
        if time_col not in frame.columns:
            raise ConfigError(
                f"split.time_column {time_col!r} is not a column of the training set."
            )
        strict = s.labels_known_at == "boundary"
        gap_text = s.gap or (config.label.maturity if strict else None)
        observed = frame[config.label.observed_at] if config.label.observed_at and strict else None
        split = out_of_time_split(
            frame[time_col],
            labels,
            train_from=s.train_from,
            valid_from=s.valid_from,
            test_from=s.test_from,
            test_until=s.test_until,
            valid_fraction=s.valid_fraction,
            test_fraction=s.test_fraction,
            gap=parse_duration(gap_text) if gap_text else parse_duration("0s"),
            observed_at=observed,
        )
    if s.folds:
        groups = None
        if s.group:
            if s.group not in frame.columns:
                raise ConfigError(f"split.group {s.group!r} is not a column of the training set.")
            groups = frame[s.group].to_numpy()
        split = with_folds(split, y, s.folds, groups, s.seed)
    return split


def train_service_frame(
    data: ServiceFrame,
    config: TrainConfig,
    *,
    tracker: Tracker,
    project: str,
    report_dir: str | Path | None = None,
    recipe_extra: Mapping[str, Any] | None = None,
    warm_start: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``config`` on a point-in-time training set; track and evaluate it."""
    frame = data.frame
    if config.label.column not in frame.columns:
        raise ConfigError(f"The label column {config.label.column!r} is not in the training set.")
    y = binary_target(frame[config.label.column], config.label.positive)
    inputs = service_inputs(data, config)
    split = split_service_frame(data, config, y)
    plan = plan_from_config(config)
    if warm_start:
        plan = ModelPlan(
            plan.kind,
            plan.params,
            plan.monotone,
            plan.categorical,
            TuningPlan(**{**plan.tuning.__dict__, "warm_start": dict(warm_start)}),
        )
    out = Path(report_dir) if report_dir else Path(tempfile.mkdtemp(prefix="lendml-report-"))
    tags = {
        TAG_MODE: "service",
        TAG_FEATURE_SERVICE: data.service,
        TAG_FEATURE_SERVICE_VERSION: data.service_version,
        TAG_TRAINING_SET: data.fingerprint,
        TAG_MODEL_KIND: plan.kind,
        TAG_DATA_WINDOWS: json.dumps(split.windows, default=str),
    }
    experiment = project
    with tracker.start_run(experiment=experiment, run_name=config.name, tags=tags) as run:
        run.log_params(
            {
                "feature_service": data.service,
                "feature_service_version": data.service_version,
                "training_set_fingerprint": data.fingerprint,
                "rows": len(frame),
                "inputs": len(inputs),
                "label": config.label.column,
                "immature_labels_at_build": data.immature_labels,
            }
        )
        fit = fit_on_split(frame, y, split, plan, inputs=inputs, study_name=config.name)
        test = frame.iloc[split.test]
        periods = test[split_time_column(config)]
        evaluation = evaluate_predictions(
            y[split.test],
            fit.predictions["test"],
            reference_score=fit.predictions["train"],
            features=test[inputs],
            reference_features=frame.iloc[split.train][inputs],
            segments=test[config.evaluation.segments] if config.evaluation.segments else None,
            periods=periods,
            period=config.evaluation.period,
            protected=test[config.protected] if config.protected else None,
            categorical=fit.schema.categorical,
            cutoff=config.evaluation.cutoff,
            info={
                "model_name": config.name,
                "intended_use": config.intended_use,
                "run_id": run.run_id,
                "model_kind": plan.kind,
                "feature_service": data.service,
                "feature_service_version": data.service_version,
                "training_set_fingerprint": data.fingerprint,
                "data_windows": split.windows,
                "excluded": split.excluded,
                "immature_labels": int(
                    sum(
                        v
                        for k, v in split.excluded.items()
                        if "immature" in k or "not_observed" in k
                    )
                ),
                "inputs": inputs,
            },
        )
        metrics = {"auc": fit.metrics["test_auc"], **fit.metrics}
        recipe = {
            "mode": "service",
            "name": config.name,
            "config": config.model_dump(mode="json"),
            "training_set": {
                "service": data.service,
                "service_version": data.service_version,
                "fingerprint": data.fingerprint,
                "spine_fingerprint": data.spine_fingerprint,
                "sources": dict(data.sources),
            },
            "plan": _plan_dict(plan, fit.params),
            **dict(recipe_extra or {}),
        }
        metadata = model_metadata(
            fit.model,
            test[inputs],
            run_id=run.run_id,
            cutoff=config.evaluation.cutoff,
            protected=config.protected,
            train=frame.iloc[split.train][inputs],
            p_bad=fit.predictions["test"],
            extra={
                "feature_service": data.service,
                "feature_service_version": data.service_version,
                "inputs": list(inputs),
            },
        )
        _record(
            run,
            fit=fit,
            metrics=metrics,
            recipe=recipe,
            evaluation=evaluation,
            report_dir=out,
            metadata=metadata,
        )
        return TrainResult(
            run_id=run.run_id,
            name=config.name,
            model=fit.model,
            params=fit.params,
            metrics=metrics,
            auc=fit.metrics["test_auc"],
            split=split.to_dict(),
            tuning=fit.tuning.to_dict() if fit.tuning else None,
            folds=fit.folds,
            evaluation=evaluation.to_dict() if evaluation is not None else None,
            report_dir=out if evaluation is not None else None,
        )


def split_time_column(config: TrainConfig) -> str:
    return config.split.time_column or config.as_of


# --------------------------------------------------------------------------- reproduce


@dataclass(frozen=True)
class Reproduction:
    """A rebuilt model next to the one a run recorded."""

    run_id: str
    model: Model
    identical: bool
    original_sha256: str
    rebuilt_sha256: str
    data_matches: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "identical": self.identical,
            "original_sha256": self.original_sha256,
            "rebuilt_sha256": self.rebuilt_sha256,
            "data_matches": self.data_matches,
        }


def refit_table(recipe: Mapping[str, Any]) -> tuple[Model, bool]:
    """Rebuild a table-mode run's final model from its recipe (no tuning: final params)."""
    data = recipe["data"]
    path = Path(data["path"])
    data_matches = path.exists() and file_fingerprint(path) == data["sha256"]
    frame = read_table(path)
    spec = TableSpec(**recipe["spec"])
    p = recipe["plan"]
    plan = ModelPlan(
        kind=p["kind"], params=p["params"], monotone=p["monotone"], categorical=p["categorical"]
    )
    if recipe["fit"]["mode"] == "out_of_time":
        return fit_table(frame, spec, plan, name=recipe["name"]).final.model, data_matches
    return refit_final(frame, spec, plan).model, data_matches


def refit_service(data: ServiceFrame, recipe: Mapping[str, Any]) -> Model:
    """Rebuild a service-mode run's model from the rebuilt training set and final params."""
    config = TrainConfig.model_validate(recipe["config"])
    p = recipe["plan"]
    y = binary_target(data.frame[config.label.column], config.label.positive)
    inputs = service_inputs(data, config)
    split = split_service_frame(data, config, y)
    split = Split(split.train, split.valid, split.test, split.windows, split.excluded)
    plan = ModelPlan(
        kind=p["kind"], params=p["params"], monotone=p["monotone"], categorical=p["categorical"]
    )
    return fit_on_split(data.frame, y, split, plan, inputs=inputs).model


def reproduce_run(
    tracker: Tracker,
    run_id: str,
    *,
    service_frame: Callable[[TrainConfig], ServiceFrame] | None = None,
) -> Reproduction:
    """Rebuild run ``run_id``'s model from its recipe and compare it with the recorded one.

    ``identical`` is true when every model file (e.g. LightGBM's text model) is
    byte-identical; ``data_matches`` says whether the data's fingerprint is unchanged.
    A service-mode run needs ``service_frame`` (``Project.service_frame``) to rebuild its
    training set.
    """
    with tempfile.TemporaryDirectory(prefix="lendml-reproduce-") as tmp:
        recipe_path = tracker.download_artifacts(run_id, RECIPE, Path(tmp) / "recipe")
        recipe = json.loads(Path(recipe_path).read_text())
        original_dir = tracker.download_artifacts(run_id, "model", Path(tmp) / "original")
        original = read_artifact(original_dir)
        if recipe["mode"] == "table":
            model, data_matches = refit_table(recipe)
        else:
            if service_frame is None:
                raise ConfigError(
                    f"Run {run_id!r} trained on a feature service; reproduce it from its "
                    "project (lendml train --reproduce RUN_ID --project DIR)."
                )
            data = service_frame(TrainConfig.model_validate(recipe["config"]))
            data_matches = data.fingerprint == recipe["training_set"]["fingerprint"]
            model = refit_service(data, recipe)
        model.save(Path(tmp) / "rebuilt")
        rebuilt = read_artifact(Path(tmp) / "rebuilt")
    names = sorted(n for n in original.files if n != MANIFEST)

    def digest(files: Mapping[str, bytes]) -> str:
        return hashlib.sha256(b"".join(files.get(n, b"") for n in names)).hexdigest()

    return Reproduction(
        run_id=run_id,
        model=model,
        identical=all(original.files[n] == rebuilt.files.get(n) for n in names),
        original_sha256=digest(original.files),
        rebuilt_sha256=digest(rebuilt.files),
        data_matches=data_matches,
    )
