"""Training on a ready table (CSV, CSV.gz or Parquet) with no project folder.

``lendml train --data PATH --label COL`` reads the table, splits it out of time when a time
column is given (test = rows from ``--test-from`` on) and by stratified K-fold otherwise
(tuning inside each training fold), fits, evaluates and tracks the run like project
training does. The headline figure is ``auc``: the test AUC, or the mean of the fold
test AUCs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from lendml.core.timeutil import parse_duration
from lendml.datasets.public import METADATA_FILE
from lendml.errors import ConfigError, DataValidationError, LeakageError
from lendml.models import FeatureSchema, model_class
from lendml.training.splits import Split, holdout, kfold, time_holdout_split
from lendml.training.trainer import (
    FitResult,
    ModelPlan,
    binary_target,
    check_inputs,
    fit_on_split,
    score_metrics,
)

SUFFIXES = (".csv", ".csv.gz", ".parquet")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a .csv, .csv.gz or .parquet file (or a folder of Parquet files)."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"Data file {str(file)!r} does not exist.", path=str(file))
    name = file.name.lower()
    try:
        if file.is_dir() or name.endswith(".parquet"):
            return pq.read_table(file).to_pandas()
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(file, low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"Could not read {str(file)!r}: {exc}", path=str(file)) from exc
    raise ConfigError(
        f"Data file {str(file)!r} has an unsupported format; expected one of {SUFFIXES}.",
        path=str(file),
    )


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes (of every file, in name order, for a folder)."""
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class TableSpec:
    """Which columns of a ready table are the label, time, inputs and protected attributes."""

    label: str
    positive: Any = 1
    drop: Sequence[str] = ()
    time: str | None = None
    test_from: str | None = None
    gap: str | None = None
    cv: int = 5
    protected: Sequence[str] = ()
    allow_protected: Sequence[str] = ()
    valid_fraction: float = 0.15
    seed: int = 42
    post_outcome: Sequence[str] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "positive": self.positive,
            "drop": list(self.drop),
            "time": self.time,
            "test_from": self.test_from,
            "gap": self.gap,
            "cv": self.cv,
            "protected": list(self.protected),
            "allow_protected": list(self.allow_protected),
            "valid_fraction": self.valid_fraction,
            "seed": self.seed,
            "post_outcome": list(self.post_outcome),
        }


@dataclass
class TableFit:
    """The outcome of training on a table: the final model's fit and the test figures."""

    mode: str  # "out_of_time" or "cv"
    final: FitResult
    auc: float
    test_label: np.ndarray
    test_score: np.ndarray
    test_rows: np.ndarray  # positions in the table of the scored rows
    inputs: list[str]
    split: Split
    folds: list[dict[str, Any]] = field(default_factory=list)


def declared_post_outcome(path: str | os.PathLike[str]) -> list[str]:
    """Columns the table's dataset description (``dataset.json`` beside it, written by
    ``lendml datasets import``) declares known only after the outcome; ``[]`` when the
    table has no description."""
    table = Path(path)
    meta_path = table.parent / METADATA_FILE
    if not meta_path.is_file():
        return []
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{str(meta_path)!r} is not valid JSON ({exc}); re-export the dataset or remove "
            "the file.",
            path=str(meta_path),
        ) from exc
    if not isinstance(meta, dict) or meta.get("file") != table.name:
        return []
    return [str(c) for c in (meta.get("source") or {}).get("post_outcome", [])]


def table_inputs(frame: pd.DataFrame, spec: TableSpec) -> list[str]:
    """The input columns: everything but the label, time, dropped and protected columns."""
    missing = [c for c in [spec.label, *spec.drop, *spec.protected] if c not in frame.columns]
    if spec.time and spec.time not in frame.columns:
        missing.append(spec.time)
    if missing:
        raise ConfigError(
            f"Columns {missing!r} are not in the data. Columns: {list(frame.columns)[:30]}."
        )
    left_out = {spec.label, *spec.drop, *spec.protected}
    if spec.time:
        left_out.add(spec.time)
    inputs = [c for c in frame.columns if c not in left_out]
    leaked = [c for c in inputs if c in set(spec.post_outcome)]
    if leaked:
        raise LeakageError(
            f"Columns {leaked!r} are declared post_outcome (known only after the outcome) "
            "and would be model inputs: a model trained on them scores well in tests and "
            "fails in production. Leave them out: " + " ".join(f"--drop {c}" for c in leaked) + "."
        )
    check_inputs(inputs, protected=spec.protected, allow_protected=spec.allow_protected)
    return inputs


def fit_table(frame: pd.DataFrame, spec: TableSpec, plan: ModelPlan, *, name: str) -> TableFit:
    """Split, tune, fit and score ``plan`` on a ready table."""
    inputs = table_inputs(frame, spec)
    y = binary_target(frame[spec.label], spec.positive)
    labels = pd.Series(y)
    if spec.time:
        if spec.test_from is None:
            raise ConfigError("--time needs --test-from: the first time value of the test part.")
        gap = parse_duration(spec.gap) if spec.gap else timedelta(0)
        split = time_holdout_split(
            frame[spec.time],
            labels,
            test_from=spec.test_from,
            valid_fraction=spec.valid_fraction,
            gap=gap,
            seed=spec.seed,
        )
        fit = fit_on_split(frame, y, split, plan, inputs=inputs, study_name=name)
        return TableFit(
            mode="out_of_time",
            final=fit,
            auc=fit.metrics["test_auc"],
            test_label=y[split.test],
            test_score=fit.predictions["test"],
            test_rows=split.test,
            inputs=inputs,
            split=split,
        )
    if spec.test_from is not None:
        raise ConfigError("--test-from needs --time: the column it applies to.")
    observed = np.flatnonzero(~np.isnan(y))
    folds = kfold(y[observed], spec.cv, seed=spec.seed)
    oof = np.full(len(frame), np.nan)
    fold_reports: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any]] | None = None
    for i, (tr, te) in enumerate(folds):
        train, valid = holdout(observed[tr], y[observed[tr]], spec.valid_fraction, spec.seed + i)
        split = Split(train=train, valid=valid, test=observed[te])
        fit = fit_on_split(frame, y, split, plan, inputs=inputs, study_name=f"{name}-fold{i}")
        oof[split.test] = fit.predictions["test"]
        report = {"fold": i, **{k: v for k, v in fit.metrics.items() if k.startswith("test_")}}
        if fit.tuning is not None:
            report["tuning_best_value"] = fit.tuning.best_value
            better = best is None or (
                fit.tuning.best_value > best[0]
                if fit.tuning.metric != "logloss"
                else fit.tuning.best_value < best[0]
            )
            if better:
                best = (fit.tuning.best_value, fit.params)
        fold_reports.append(report)
    # The final model: every row, with the parameters of the best-tuned fold (or the
    # plan's own), and a stratified validation part for early stopping.
    final_plan = ModelPlan(
        kind=plan.kind,
        params=best[1] if best else dict(plan.params),
        monotone=plan.monotone,
        categorical=plan.categorical,
    )
    final = _fit_final(frame, y, final_plan, inputs, spec)
    aucs = [r["test_auc"] for r in fold_reports]
    final.metrics.update(
        {
            f"cv_{k}_mean": float(np.nanmean([r.get(f"test_{k}", np.nan) for r in fold_reports]))
            for k in ("auc", "gini", "logloss", "brier", "pr_auc")
        }
    )
    final.metrics["cv_auc_std"] = float(np.std(aucs))
    oof_metrics = score_metrics(y[observed], oof[observed])
    final.metrics.update({f"oof_{k}": v for k, v in oof_metrics.items()})
    return TableFit(
        mode="cv",
        final=final,
        auc=float(np.mean(aucs)),
        test_label=y[observed],
        test_score=oof[observed],
        test_rows=observed,
        inputs=inputs,
        split=Split(train=observed, valid=observed[:0], test=observed, excluded={}),
        folds=fold_reports,
    )


def refit_final(frame: pd.DataFrame, spec: TableSpec, plan: ModelPlan) -> FitResult:
    """The final model of a K-fold run, rebuilt from its final parameters."""
    y = binary_target(frame[spec.label], spec.positive)
    return _fit_final(frame, y, plan, table_inputs(frame, spec), spec)


def _fit_final(
    frame: pd.DataFrame,
    y: np.ndarray,
    plan: ModelPlan,
    inputs: list[str],
    spec: TableSpec,
) -> FitResult:
    """Fit on every labelled row, early-stopping on a stratified validation part."""
    observed = np.flatnonzero(~np.isnan(y))
    train, valid = holdout(observed, y[observed], spec.valid_fraction, spec.seed)
    X = frame[inputs]
    schema = FeatureSchema.infer(X, categorical=plan.categorical, monotone=plan.monotone)
    model = model_class(plan.kind)(**plan.params).fit(
        X.iloc[train],
        y[train],
        X_valid=X.iloc[valid],
        y_valid=y[valid],
        schema=schema,
    )
    metrics: dict[str, float] = {}
    if hasattr(model, "best_iteration_"):
        metrics["best_iteration"] = float(model.best_iteration_)
    return FitResult(
        model=model,
        params=dict(plan.params),
        schema=schema,
        predictions={},
        metrics=metrics,
    )
