"""``train.yaml``: what to train, on which data, split how, tuned how — validated with pydantic.

A bad key or value is refused with its path in the file, the value and what is allowed::

    train.yaml is invalid:
      model.kind: Input should be 'lightgbm', 'scorecard' or 'torch_mlp' (got 'xgboost')
      split.gap: Extra inputs are not permitted (got '30d')

Example (the one in ``docs/training.md``)::

    name: credit_pd
    feature_service: credit_v1
    spine: data/spine.parquet
    label: {column: defaulted, observed_at: observed_at}
    protected: [sex, age_band]
    split: {valid_from: "2024-01-01", test_from: "2024-04-01"}
    model: {kind: lightgbm, monotone: {fico: -1}}
    tuning: {trials: 20}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lendml.core.timeutil import parse_duration, to_utc_timestamp
from lendml.errors import ConfigError

ModelKind = Literal["lightgbm", "scorecard", "torch_mlp"]

# Names that are protected characteristics under ECOA / Reg B and similar rules; a model
# input whose name matches one is refused unless declared (then used for fairness tests
# only) or explicitly allowed.
PROTECTED_NAME_HINTS = (
    "sex",
    "gender",
    "race",
    "ethnicity",
    "ethnic",
    "religion",
    "national_origin",
    "marital",
    "marriage",
    "age",
    "age_band",
    "age_group",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelSpec(_Strict):
    """The outcome: its column, when it became known, and how long it takes to mature."""

    column: str
    observed_at: str | None = None
    maturity: str | None = None  # e.g. "365d": the gap between splits when no observed_at
    positive: Any = 1
    # Labels observed after this time are unknown (default: the spine's latest as-of).
    cutoff: str | None = None

    @field_validator("maturity")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class SplitSpec(_Strict):
    """Out-of-time windows by as-of time: train < valid_from ≤ valid < test_from ≤ test."""

    kind: Literal["out_of_time", "random"] = "out_of_time"
    time_column: str | None = None  # default: the spine's as-of column
    train_from: str | None = None
    valid_from: str | None = None
    test_from: str | None = None
    test_until: str | None = None
    # When the dates are not given: the latest fractions of rows by time.
    valid_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    gap: str | None = None  # default: the label's maturity (0 when none)
    # "boundary": a row's label counts only if observed before the next window starts
    # (a strict backtest); "cutoff": every label observed by the label cutoff counts
    # (retraining at a point in time, as the loop does; windows stay disjoint in time)
    labels_known_at: Literal["boundary", "cutoff"] = "boundary"
    folds: int = Field(default=0, ge=0, le=20)  # grouped k-fold inside the train window
    group: str | None = None  # e.g. borrower_id: no group in two folds
    seed: int = 42

    @field_validator("train_from", "valid_from", "test_from", "test_until")
    @classmethod
    def _timestamp(cls, value: str | None) -> str | None:
        if value is not None:
            to_utc_timestamp(value)
        return value

    @field_validator("gap")
    @classmethod
    def _gap(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class ModelSpec(_Strict):
    kind: ModelKind = "lightgbm"
    params: dict[str, Any] = Field(default_factory=dict)
    monotone: dict[str, Literal[-1, 0, 1]] = Field(default_factory=dict)
    categorical: list[str] | None = None  # default: string/category/bool columns


class TuningSpec(_Strict):
    """Optuna: TPE sampler, pruning through LightGBM callbacks; trials and/or minutes."""

    trials: int = Field(default=0, ge=0, le=10_000)
    minutes: float | None = Field(default=None, gt=0)
    storage: str | None = None  # default in memory; "sqlite:///tuning.db"; "postgresql://…"
    study: str | None = None  # default: the run name
    seed: int = 42
    metric: Literal["auc", "logloss", "average_precision"] = "auc"
    # 0: score trials on the validation window; k >= 2: k-fold CV over train + valid
    cv: int = Field(default=0, ge=0, le=20)

    @field_validator("cv")
    @classmethod
    def _cv_not_one(cls, value: int) -> int:
        if value == 1:
            raise ValueError("cv must be 0 (score on the validation window) or at least 2")
        return value


class InputsSpec(_Strict):
    """Which columns are model inputs."""

    exclude: list[str] = Field(default_factory=list)
    spine_columns: list[str] = Field(default_factory=list)  # spine columns used as inputs
    allow_protected: list[str] = Field(default_factory=list)


class EvaluationSpec(_Strict):
    cutoff: float | None = Field(default=None, gt=0, lt=1)  # approve when P(bad) < cutoff
    segments: list[str] = Field(default_factory=list)
    period: str = "M"
    margin: float = Field(default=0.01, ge=0, lt=0.5)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)


class TrainConfig(_Strict):
    """The contents of ``train.yaml`` (project mode: features from a feature service)."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
    feature_service: str
    spine: str
    as_of: str = "as_of"
    label: LabelSpec
    protected: list[str] = Field(default_factory=list)
    split: SplitSpec = Field(default_factory=SplitSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    inputs: InputsSpec = Field(default_factory=InputsSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    intended_use: str | None = None  # shown in the model card
    seed: int = 42


def format_validation_error(exc: ValidationError, where: str) -> str:
    """One line per problem: the dotted path, pydantic's reason and the bad value."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg} (got {err.get('input')!r})")
    return f"{where} is invalid:\n" + "\n".join(lines)


def parse_train_config(data: Any, *, where: str = "train config") -> TrainConfig:
    """Validate a mapping as a :class:`TrainConfig`."""
    if isinstance(data, TrainConfig):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of settings, got {type(data).__name__}.")
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where), path=where) from exc


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a ``train.yaml``."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"Training config {str(file)!r} does not exist.", path=str(file))
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}", path=str(file)) from exc
    return parse_train_config(data, where=str(file))
