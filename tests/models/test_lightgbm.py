"""The lightgbm kind: monotone constraints and early stopping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lendml.models import FeatureSchema, load_model
from lendml.models.lightgbm import LightGBMModel

QUICK = {"learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 10, "n_jobs": 1}


def _valley_data(seed: int, n: int = 2000) -> tuple[pd.DataFrame, np.ndarray]:
    """Risk rises with ``z`` overall but dips for z in (0.45, 0.7): not monotone."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(size=n)
    x = rng.normal(size=n)
    logit = -1.0 + 2.0 * z - 2.5 * ((z > 0.45) & (z < 0.7)) + x
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({"x": x, "z": z}), y


def _steps_along_z(model: LightGBMModel) -> np.ndarray:
    grid = np.linspace(0.0, 1.0, 201)
    return np.stack(
        [np.diff(model.decision_function(pd.DataFrame({"x": x, "z": grid}))) for x in (-1, 0, 1)]
    )


@pytest.mark.parametrize("direction", [1, -1])
def test_monotone_constraint_is_honoured(direction, data_seed):
    X, y = _valley_data(data_seed)
    if direction == -1:
        X["z"] = 1.0 - X["z"]
    schema = FeatureSchema.infer(X, monotone={"z": direction})
    model = LightGBMModel(n_estimators=150, **QUICK).fit(X, y, schema=schema)
    steps = _steps_along_z(model)
    assert np.all(steps * direction >= 0), steps.min()
    assert np.any(steps != 0)


def test_unconstrained_model_follows_the_valley(data_seed):
    """The control for the test above: the data are not monotone in z."""
    X, y = _valley_data(data_seed)
    steps = _steps_along_z(LightGBMModel(n_estimators=150, **QUICK).fit(X, y))
    assert np.any(steps > 0) and np.any(steps < 0)


def test_early_stopping_stops_before_n_estimators_when_it_overfits(credit, tmp_path):
    params = {**QUICK, "learning_rate": 0.3, "num_leaves": 63, "min_child_samples": 5}
    model = LightGBMModel(n_estimators=500, early_stopping_rounds=10, **params)
    model.fit(credit.X, credit.y, X_valid=credit.X_valid, y_valid=credit.y_valid)
    assert model.best_iteration_ < 100
    assert "binary_logloss" in model.best_score_["valid"]
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.best_iteration_ == model.best_iteration_
    # Without a validation window every round runs.
    full = LightGBMModel(n_estimators=500, early_stopping_rounds=10, **params)
    assert full.fit(credit.X, credit.y).best_iteration_ == 500
