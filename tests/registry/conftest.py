"""Shared fixtures for the registry tests: a tiny fitted model and file-URI helpers."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest

from lendml.core.config import TrackingSettings
from lendml.models.lightgbm import LightGBMModel
from lendml.registry import Registry


@pytest.fixture(scope="session")
def tiny_data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(42)
    n = 400
    X = pd.DataFrame(
        {
            "income": rng.lognormal(10, 0.5, n),
            "dti": rng.uniform(0, 1, n),
            "utilization": rng.uniform(0, 1, n),
        }
    )
    logit = -1.0 + 2.5 * X["dti"] - 1.5 * (X["income"] > 25_000) + rng.normal(0, 1, n)
    y = (logit > 0).astype(int).to_numpy()
    return X, y


@pytest.fixture(scope="session")
def tiny_model(tiny_data) -> LightGBMModel:
    X, y = tiny_data
    return LightGBMModel(n_estimators=20, num_leaves=7, min_child_samples=10, n_jobs=1).fit(X, y)


def settings() -> TrackingSettings:
    """The embedded defaults: SQLite under data/, artifacts under data/mlartifacts."""
    return TrackingSettings()


@pytest.fixture(scope="session")
def tracking_db_template(tmp_path_factory) -> Path:
    """An empty MLflow database with every migration applied, made once per session.

    Creating an MLflow SQLite database runs ~50 schema migrations (seconds each time);
    projects in these tests start from a copy of this one instead.
    """
    root = tmp_path_factory.mktemp("template")
    Registry(settings(), root=root).list_models()  # creates and migrates the database
    return root / "data" / "mlflow.db"


@pytest.fixture(scope="session")
def new_root(tmp_path_factory, tracking_db_template) -> Callable[[str], Path]:
    """Make a fresh project folder whose data/mlflow.db is a copy of the template."""

    def make(name: str) -> Path:
        root = tmp_path_factory.mktemp(name)
        (root / "data").mkdir(exist_ok=True)
        shutil.copyfile(tracking_db_template, root / "data" / "mlflow.db")
        return root

    return make


def uri_path(uri: str) -> Path:
    """The local path of a ``file://`` URI (the tests' artifact store)."""
    parsed = urlparse(uri)
    assert parsed.scheme == "file", uri
    return Path(unquote(parsed.path))


def flip_byte(path: Path, offset: int = 100) -> None:
    """Change one byte of a file in place."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def unreachable_tracking(monkeypatch) -> TrackingSettings:
    """A tracking URI where nothing listens, with MLflow's HTTP retries cut to fail fast.

    MLflow's defaults (7 retries with exponential backoff, 120 s timeout) would wait
    minutes before giving up.
    """
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    return TrackingSettings(uri="http://127.0.0.1:9", artifacts="")
