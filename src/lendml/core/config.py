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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
class ParquetLogSettings(_Strict):
    """The default prediction log: rotated Parquet files under ``path``."""

    type: Literal["parquet"] = "parquet"
    path: str = "data/prediction_log"
    retention_days: int | None = Field(default=None, ge=1)


class PostgresLogSettings(_Strict):
    """The production prediction log: a PostgreSQL table. The URL (with its password)
    comes from the environment variable named by ``url_env``, never from this file."""

    type: Literal["postgres"]
    url_env: str = "LENDML_PREDICTION_LOG_URL"
    table: str = "prediction_log"
    retention_days: int | None = Field(default=None, ge=1)


PredictionLogSettings = Annotated[
    ParquetLogSettings | PostgresLogSettings, Field(discriminator="type")
]


# -- the HTTP service (lendml.serving reads these)
class ServingSettings(_Strict):
    """``lendml serve``: where it listens and its limits. Per-model decision policies
    and reason maps are described in docs/serving.md."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    keys_file: str = "data/api_keys.json"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)


EngineSettings = Annotated[DuckDBSettings | SparkSettings, Field(discriminator="type")]
OnlineStoreSettings = Annotated[SQLiteSettings | RedisSettings, Field(discriminator="type")]


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
