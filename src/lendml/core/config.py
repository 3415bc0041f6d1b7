"""Project configuration (``lendml.yaml``), typed with pydantic.

Precedence, highest first: an explicit argument > ``LENDML_*`` environment variables >
``lendml.yaml`` > defaults. Nothing is resolved at import time.

Environment variables: ``LENDML_ENGINE`` (``duckdb``/``spark``),
``LENDML_ONLINE_STORE_PATH``, ``LENDML_OFFLINE_STORE_PATH``, ``LENDML_TRACKING_URI``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lendml.core.timeutil import parse_duration
from lendml.errors import ConfigError

CONFIG_FILE = "lendml.yaml"
SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DuckDBSettings(_Strict):
    type: Literal["duckdb"] = "duckdb"
    database: str = ":memory:"
    threads: int | None = Field(default=None, ge=1)
    memory_limit: str | None = None


class SparkSettings(_Strict):
    type: Literal["spark"]
    master: str = "local[2]"
    conf: dict[str, str] = Field(default_factory=dict)


class SQLiteSettings(_Strict):
    type: Literal["sqlite"] = "sqlite"
    path: str = "data/online.db"


class RedisSettings(_Strict):
    type: Literal["redis"]
    url: str = "redis://127.0.0.1:6379/0"


class OfflineStoreSettings(_Strict):
    path: str = "data/offline"


class TrackingSettings(_Strict):
    """Where runs and model versions live (MLflow underneath).

    ``uri`` is any MLflow tracking URI; relative ``sqlite:///`` paths and the artifact
    folder resolve against the project folder. Credentials belong in the environment
    (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``), never in this file.
    """

    uri: str = "sqlite:///data/mlflow.db"
    artifacts: str = "data/mlartifacts"
    experiment: str | None = None  # default: the project's name


# -- prediction log (lendml.serving.prediction_log reads these)
class _PredictionLogCommon(_Strict):
    """Settings every prediction-log store shares: retention, the in-memory queue, the
    local spool that holds batches while the store is unavailable, and the retry backoff.
    Paths are relative to the project folder."""

    retention_days: int | None = Field(default=None, ge=1)
    spool: str = "data/prediction_log_spool"
    queue_size: int = Field(default=10_000, ge=1)
    spill_rows: int = Field(default=500, ge=1)
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _backoff_grows(self) -> _PredictionLogCommon:
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError(
                f"retry_max_seconds ({self.retry_max_seconds}) must be at least "
                f"retry_initial_seconds ({self.retry_initial_seconds})"
            )
        return self


class ParquetLogSettings(_PredictionLogCommon):
    """The default prediction log: Parquet files under ``path``, one folder per UTC date
    (``date=YYYY-MM-DD``); a new file is written every ``rotate_rows`` records or
    ``rotate_seconds`` seconds, whichever comes first."""

    type: Literal["parquet"] = "parquet"
    path: str = "data/prediction_log"
    rotate_rows: int = Field(default=10_000, ge=1)
    rotate_seconds: float = Field(default=60.0, gt=0)


class PostgresLogSettings(_PredictionLogCommon):
    """The production prediction log: a PostgreSQL table. The URL (with its password)
    comes from the environment variable named by ``url_env``, never from this file.
    Records are inserted every ``batch_rows`` records or ``batch_seconds`` seconds."""

    type: Literal["postgres"]
    url_env: str = Field(default="LENDML_PREDICTION_LOG_URL", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    table: str = Field(
        default="prediction_log",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$",
    )
    batch_rows: int = Field(default=1_000, ge=1)
    batch_seconds: float = Field(default=1.0, gt=0)
    connect_timeout_seconds: int = Field(default=5, ge=1)
    statement_timeout_seconds: int = Field(default=60, ge=1)


PredictionLogSettings = Annotated[
    ParquetLogSettings | PostgresLogSettings, Field(discriminator="type")
]


# -- the HTTP service (lendml.serving reads these)
MissingRule = Literal["allow", "reject"] | float


class ExploreSettings(_Strict):
    """The approval holdout (``decision.explore``): ``percent`` % of the applicants the
    cutoffs would decline (or refer), drawn by a hash of the model name and the entity keys
    ``keys`` (default: all of them), are approved instead when P(bad) is below
    ``max_probability``; their outcomes measure the applicants the policy turns away."""

    percent: float = Field(default=0.0, ge=0.0, le=10.0, allow_inf_nan=False)
    max_probability: float = Field(gt=0.0, le=1.0)
    keys: tuple[str, ...] = ()
    decisions: tuple[Literal["decline", "refer"], ...] = Field(
        default=("decline", "refer"), min_length=1
    )


class DecisionSettings(_Strict):
    """Cutoffs on the probability of a bad outcome: approve below ``approve_below``,
    decline at or above ``decline_from``, refer in between (equal cutoffs: no refer band);
    ``explore`` optionally approves a small random share of the rest (off by default)."""

    approve_below: float = Field(default=0.5, ge=0.0, le=1.0)
    decline_from: float = Field(default=0.5, ge=0.0, le=1.0)
    explore: ExploreSettings | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DecisionSettings:
        if self.decline_from < self.approve_below:
            raise ValueError(
                f"decline_from ({self.decline_from}) must be at least approve_below "
                f"({self.approve_below}); between them lies the refer band."
            )
        explore = self.explore
        if explore is not None and explore.percent > 0:
            floor = self.approve_below if "refer" in explore.decisions else self.decline_from
            if explore.max_probability <= floor:
                raise ValueError(
                    f"explore.max_probability ({explore.max_probability}) must exceed "
                    f"{floor} (the lowest P(bad) the cutoffs {'/'.join(explore.decisions)}), "
                    "or the holdout approves nobody; raise it, or set explore.percent: 0."
                )
        return self


class ReasonSettings(_Strict):
    """How reasons are worded and which features may never be one.

    ``map`` names a YAML/JSON file with ``reasons: {feature or group: {code, text}}`` and
    ``groups: {feature: group}``; ``reference_point`` a JSON file
    (``ReferencePoint.to_dict()``) used when the model carries none.
    """

    map: str | None = None
    top: int = Field(default=4, ge=1, le=4)
    protected: tuple[str, ...] = ()
    reference_point: str | None = None


class MissingSettings(_Strict):
    """What a missing model input does: ``allow`` (the model's own missing-value
    handling), ``reject`` (422), or a number to fill in. ``features`` overrides
    ``default`` per feature."""

    default: MissingRule = "allow"
    features: dict[str, MissingRule] = Field(default_factory=dict)


class CanarySettings(_Strict):
    """Send ``percent`` % of entities (sticky by a hash of the entity key) to ``ref``."""

    ref: str
    percent: float = Field(ge=0.0, le=100.0)


class ModelServingSettings(_Strict):
    """Serving policy of one registered model (``serving.models.<name>``).

    ``shadow`` and ``canary.ref`` are an alias (``challenger``, ``shadow``) or a version
    number of the same model."""

    decision: DecisionSettings = Field(default_factory=DecisionSettings)
    reasons: ReasonSettings = Field(default_factory=ReasonSettings)
    missing: MissingSettings = Field(default_factory=MissingSettings)
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    unknown_entity: Literal["reject", "score"] = "reject"
    shadow: str | None = None
    canary: CanarySettings | None = None


class ServingSettings(_Strict):
    """``lendml serve``: where it listens, its limits, and the models it serves.

    ``model`` is the registered model a request without ``model`` is scored by (its
    champion); ``models`` holds per-model policies (docs/serving.md). The registry is
    polled every ``watch_interval`` seconds for a new champion (0: never).
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    keys_file: str = "data/api_keys.json"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch: int = Field(default=1000, ge=1)
    model: str | None = None
    models: dict[str, ModelServingSettings] = Field(default_factory=dict)
    watch_interval: float = Field(default=10.0, ge=0.0)

    def for_model(self, name: str) -> ModelServingSettings:
        """The policy of model ``name`` (the defaults if it has none)."""
        return self.models.get(name) or ModelServingSettings()


EngineSettings = Annotated[DuckDBSettings | SparkSettings, Field(discriminator="type")]
OnlineStoreSettings = Annotated[SQLiteSettings | RedisSettings, Field(discriminator="type")]


class LoopTriggerSettings(_Strict):
    """When a loop pass retrains: any trigger that fires starts a challenger."""

    # retrain when the champion's newest training data is older than this (None: never)
    schedule: str | None = "90d"
    # a drift alert (PSI above its noise floor) in the champion's latest log window
    drift: bool = True
    drift_window: str = "7d"
    # realised AUC of served decisions on mature labels below the champion's test AUC
    # minus this (None: off); only vintages with at least min_labels outcomes count
    decay_auc_drop: float | None = Field(default=0.03, gt=0, lt=1)
    min_labels: int = Field(default=300, ge=30)
    # new labels matured since the champion's training data ended (None: off)
    mature_labels: int | None = Field(default=None, ge=1)

    @field_validator("schedule", "drift_window")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class LoopWindowSettings(_Strict):
    """The newest window a challenger learns from, ending at the newest mature label."""

    train: str | None = "365d"  # None: all the history before the validation window
    valid: str = "60d"
    test: str = "60d"

    @field_validator("train", "valid", "test")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class GateSettings(_Strict):
    """What a challenger must show, on the same out-of-time rows as the champion."""

    margin: float = Field(default=0.01, gt=0, lt=0.5)  # DeLong non-inferiority margin
    alpha: float = Field(default=0.05, gt=0, lt=0.5)  # one-sided level of both tests
    # mean predicted P(bad) / observed bad rate must lie in [low, high]
    calibration: tuple[float, float] = (0.8, 1.25)
    min_air: float = Field(default=0.8, gt=0, le=1)  # or not below the champion's AIR
    score_psi_max: float = Field(default=0.25, gt=0)  # challenger vs champion scores
    min_rows: int = Field(default=500, ge=10)  # labelled rows in the comparison window

    @field_validator("calibration")
    @classmethod
    def _bounds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= 1 <= high:
            raise ValueError("calibration must be [low, high] with 0 < low <= 1 <= high")
        return value


class LoopSettings(_Strict):
    """``loop:`` in ``lendml.yaml``: the continuous-learning loop (``lendml loop run``)."""

    model: str | None = None  # registered model name (default: the train config's name)
    train_config: str = "train.yaml"
    state: str = "data/loop"  # lock, step outputs and the audit log
    every: str = "1d"  # the daemon's period; as-of times are floored to it
    trials: int | None = Field(default=None, ge=0)  # challenger tuning trials (default: config)
    shadow: str | None = None  # e.g. "14d": serve the challenger in shadow before promotion
    triggers: LoopTriggerSettings = Field(default_factory=LoopTriggerSettings)
    window: LoopWindowSettings = Field(default_factory=LoopWindowSettings)
    gate: GateSettings = Field(default_factory=GateSettings)

    @field_validator("every", "shadow")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


# -- monitoring (lendml.monitoring reads these; docs/monitoring.md)
class PsiRuleSettings(_Strict):
    """The PSI rule: alert at ``threshold`` or more and, with ``noise_floor`` on, only
    above the PSI that two samples of unchanged data exceed with probability ``alpha``
    (at 100 rows and 10 bins that floor is 0.22, so the fixed rule alone fires on noise).
    ``significant`` only names the level of a PSI shown (at least the threshold)."""

    threshold: float = Field(default=0.10, gt=0, allow_inf_nan=False)
    significant: float = Field(default=0.25, gt=0, allow_inf_nan=False)
    noise_floor: bool = True


class DriftRuleSettings(_Strict):
    """Drift rules per window of served decisions; a window with fewer than ``min_rows``
    rows is measured but never alerts. ``null`` switches a rule off."""

    alpha: float = Field(default=0.01, gt=0, lt=0.5)  # noise floor and missing-rate test
    min_rows: int = Field(default=50, ge=1)
    psi: PsiRuleSettings | None = Field(default_factory=PsiRuleSettings)
    # KS p-value below this alerts; off by default: at thousands of rows a trivial shift
    # is significant, and the PSI rule already sizes the change
    ks_alpha: float | None = Field(default=None, gt=0, lt=0.5)
    missing_change: float | None = Field(default=0.02, gt=0, le=1)  # absolute, and p < alpha
    unseen_share: float | None = Field(default=0.01, gt=0, le=1)


class DecayRuleSettings(_Strict):
    """Performance decay: a vintage's realised AUC below the model's ``reference`` AUC
    (measured at training on the validation or test window) minus ``auc_margin``, counted
    only on vintages with ``min_labels`` mature labels and ``min_months_on_book``; with
    ``alpha`` set, the drop must also be significant (the upper end of the realised AUC's
    one-sided ``1 - alpha`` DeLong bound lies below the reference)."""

    auc_margin: float | None = Field(default=0.03, gt=0, lt=0.5)  # None: off
    reference: Literal["valid", "test"] = "valid"
    min_labels: int = Field(default=300, ge=30)
    min_months_on_book: int = Field(default=0, ge=0)
    alpha: float | None = Field(default=0.05, gt=0, lt=0.5)


class WatchSettings(_Strict):
    """Which model inputs the rules watch: ``watch`` (default: all), minus ``ignore``.
    The score is always watched."""

    watch: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _disjoint(self) -> WatchSettings:
        both = sorted(set(self.watch) & set(self.ignore))
        if both:
            raise ValueError(f"features {both} are both watched and ignored; keep one")
        return self


class MonitoringSettings(_Strict):
    """``monitoring:`` in ``lendml.yaml``: the alert rules ``lendml monitor drift``,
    ``performance`` and ``report`` apply (docs/monitoring.md)."""

    every: Literal["D", "W"] = "D"  # window of the drift measures: day or ISO week
    features: WatchSettings = Field(default_factory=WatchSettings)
    drift: DriftRuleSettings = Field(default_factory=DriftRuleSettings)
    decay: DecayRuleSettings = Field(default_factory=DecayRuleSettings)


class ProjectConfig(_Strict):
    """The contents of ``lendml.yaml``."""

    version: int = SCHEMA_VERSION
    name: str = "lendml_project"
    definitions: str = "features.py"
    catalog: str = "data/catalog.json"
    engine: EngineSettings = Field(default_factory=DuckDBSettings)
    online_store: OnlineStoreSettings = Field(default_factory=SQLiteSettings)
    offline_store: OfflineStoreSettings = Field(default_factory=OfflineStoreSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    prediction_log: PredictionLogSettings = Field(default_factory=ParquetLogSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)


def _format_validation(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"  {loc}: {err['msg']} (got {err.get('input')!r})")
    return f"{where} is invalid:\n" + "\n".join(lines)


def load_config(root: Path, *, overrides: dict[str, Any] | None = None) -> ProjectConfig:
    """Read ``root/lendml.yaml`` and apply environment and argument overrides."""
    path = root / CONFIG_FILE
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}", path=str(path)) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, got {type(raw).__name__}.")
    version = raw.get("version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: version {version!r} is not supported; this lendml reads version "
            f"{SCHEMA_VERSION}.",
            path=str(path),
        )
    env_engine = os.environ.get("LENDML_ENGINE")
    if env_engine:
        raw["engine"] = {"type": env_engine}
    if p := os.environ.get("LENDML_ONLINE_STORE_PATH"):
        raw["online_store"] = {**raw.get("online_store", {}), "path": p}
    if uri := os.environ.get("LENDML_TRACKING_URI"):
        raw["tracking"] = {**raw.get("tracking", {}), "uri": uri}
    if p := os.environ.get("LENDML_OFFLINE_STORE_PATH"):
        raw["offline_store"] = {**raw.get("offline_store", {}), "path": p}
    for key, value in (overrides or {}).items():
        raw[key] = value
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, str(path)), path=str(path)) from exc


DEFAULT_YAML = """\
# lendml project settings. Precedence: argument > LENDML_* environment > this file > default.
version: 1
name: {name}
definitions: features.py        # the feature definitions (Python)
catalog: data/catalog.json      # where `lendml apply` records definitions and versions
engine:
  type: duckdb                  # or: spark (with master: local[2])
online_store:
  type: sqlite
  path: data/online.db
offline_store:
  path: data/offline
tracking:                       # runs and the model registry (MLflow)
  uri: sqlite:///data/mlflow.db # or any MLflow tracking URI (e.g. http://mlflow:5000)
  artifacts: data/mlartifacts
"""
