"""The model protocol's conformance suite, run over every model kind."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lendml.errors import ArtifactError, ConfigError, DataValidationError, TrainingError
from lendml.models import MODEL_KINDS, Model, load_model, model_class
from lendml.models.artifact import MANIFEST

from .conftest import CreditData

# Small, quick settings per kind; each is still able to learn the signal.
PARAMS: dict[str, dict[str, Any]] = {
    "lightgbm": {
        "n_estimators": 200,
        "learning_rate": 0.05,
        "num_leaves": 8,
        "min_child_samples": 20,
        "early_stopping_rounds": 20,
        "n_jobs": 1,
    },
    "scorecard": {},
    "torch_mlp": {
        "hidden": (32, 16),
        "max_epochs": 20,
        "batch_size": 64,
        "learning_rate": 3e-3,
        "patience": 4,
    },
}
KINDS = sorted(MODEL_KINDS)
# How close a loaded model's predictions must be to the fitted model's.
LOAD_TOLERANCE = {"lightgbm": 0.0, "scorecard": 0.0, "torch_mlp": 1e-6}
# The file that carries the learned state, compared across fits with the same seed.
STATE_FILE = {
    "lightgbm": "model.txt",
    "scorecard": "scorecard.json",
    "torch_mlp": "weights.safetensors",
}
SAFE_SUFFIXES = {".json", ".txt", ".safetensors", ".md"}
PICKLE_HEADERS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass
class Fitted:
    model: Model
    fit_result: Any
    path: Path
    sha256: str


def _fit(kind: str, credit: CreditData, **overrides: Any) -> Model:
    if kind == "torch_mlp":
        import torch

        torch.set_num_threads(1)
    model = model_class(kind)(**{**PARAMS[kind], **overrides})
    return model.fit(credit.X, credit.y, X_valid=credit.X_valid, y_valid=credit.y_valid)


@pytest.fixture(scope="module", params=KINDS)
def fitted(request, credit, tmp_path_factory) -> Fitted:
    kind = request.param
    if kind == "torch_mlp":
        import torch

        torch.set_num_threads(1)
    model = model_class(kind)(**PARAMS[kind])
    result = model.fit(credit.X, credit.y, X_valid=credit.X_valid, y_valid=credit.y_valid)
    path = tmp_path_factory.mktemp(kind) / "model"
    sha = model.save(path, metadata={"run": "test"})
    return Fitted(model, result, path, sha)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_every_kind_is_registered_and_resolves():
    assert set(MODEL_KINDS) == {"lightgbm", "scorecard", "torch_mlp"}
    for kind in KINDS:
        cls = model_class(kind)
        assert issubclass(cls, Model)
        assert cls.kind == kind


def test_fit_returns_self(fitted):
    assert fitted.fit_result is fitted.model


def test_get_params_round_trips(fitted):
    model = fitted.model
    params = model.get_params()
    assert params == {**model_class(model.kind)().get_params(), **PARAMS[model.kind]}
    clone = type(model)(**params)
    assert clone.get_params() == params
    assert clone.set_params(**params) is clone
    with pytest.raises(ConfigError, match="no parameter 'not_a_param'"):
        clone.set_params(not_a_param=1)


def test_predict_proba_is_a_distribution(fitted, credit):
    proba = fitted.model.predict_proba(credit.X_test)
    assert proba.shape == (len(credit.X_test), 2)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_decision_function_is_the_log_odds_of_predict_proba(fitted, credit):
    score = fitted.model.decision_function(credit.X_test)
    proba = fitted.model.predict_proba(credit.X_test)
    assert score.shape == (len(credit.X_test),)
    assert score.dtype == np.float64
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-score)), proba[:, 1], rtol=0, atol=1e-12)


def test_learns_the_signal(fitted, credit):
    auc = roc_auc_score(credit.y_test, fitted.model.predict_proba(credit.X_test)[:, 1])
    assert auc > 0.7, f"{fitted.model.kind}: AUC {auc:.3f}"


def test_save_and_load_give_the_same_predictions(fitted, credit):
    loaded = load_model(fitted.path, expected_sha256=fitted.sha256)
    assert type(loaded) is type(fitted.model)
    assert loaded.get_params() == fitted.model.get_params()
    assert loaded.schema_ == fitted.model.schema_
    expected = fitted.model.decision_function(credit.X_test)
    actual = loaded.decision_function(credit.X_test)
    tolerance = LOAD_TOLERANCE[fitted.model.kind]
    if tolerance == 0.0:
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance)
    np.testing.assert_allclose(
        loaded.predict_proba(credit.X_test),
        fitted.model.predict_proba(credit.X_test),
        rtol=0,
        atol=max(tolerance, 1e-15),
    )


def test_a_changed_byte_in_any_file_is_refused(fitted, tmp_path):
    names = sorted(p.name for p in fitted.path.iterdir())
    assert MANIFEST in names and len(names) >= 2
    for i, name in enumerate(names):
        copy = tmp_path / f"copy{i}"
        shutil.copytree(fitted.path, copy)
        _flip_byte(copy / name)
        # The manifest itself is pinned by the hash the registry keeps.
        with pytest.raises(ArtifactError, match="modified|not valid JSON"):
            load_model(copy, expected_sha256=fitted.sha256)
        if name != MANIFEST:
            with pytest.raises(ArtifactError, match=f"{name}.* was modified"):
                load_model(copy)


def test_manifest_hash_is_checked(fitted):
    assert load_model(fitted.path, expected_sha256=fitted.sha256).kind == fitted.model.kind
    other = "0" * 64
    with pytest.raises(ArtifactError, match="registry recorded 000000000000"):
        load_model(fitted.path, expected_sha256=other)


def test_artifact_holds_only_code_free_files(fitted):
    files = sorted(fitted.path.iterdir())
    assert {p.suffix for p in files} <= SAFE_SUFFIXES, [p.name for p in files]
    for path in files:
        assert path.is_file()
        assert not path.read_bytes().startswith(PICKLE_HEADERS), path.name


def test_unseen_category_is_scored(fitted, credit):
    X = credit.X_test.head(20).copy()
    X["housing"] = "houseboat"
    proba = fitted.model.predict_proba(X)[:, 1]
    assert np.all(np.isfinite(proba))
    assert np.all((proba > 0) & (proba < 1))


def test_missing_feature_is_named(fitted, credit):
    with pytest.raises(DataValidationError, match="'utilization'"):
        fitted.model.predict_proba(credit.X_test.drop(columns=["utilization"]))


def test_one_class_label_is_refused(fitted, credit):
    model = type(fitted.model)(**fitted.model.get_params())
    with pytest.raises(TrainingError, match="single class"):
        model.fit(credit.X, np.zeros(len(credit.X), dtype=int))


def test_same_seed_gives_the_same_model(fitted, credit, tmp_path):
    kind = fitted.model.kind
    again = _fit(kind, credit)
    again.save(tmp_path / "again")
    state = STATE_FILE[kind]
    assert (tmp_path / "again" / state).read_bytes() == (fitted.path / state).read_bytes()
    np.testing.assert_array_equal(
        again.decision_function(credit.X_test), fitted.model.decision_function(credit.X_test)
    )
    if "seed" in fitted.model.get_params():
        other = _fit(kind, credit, seed=7)
        other.save(tmp_path / "other")
        assert (tmp_path / "other" / state).read_bytes() != (fitted.path / state).read_bytes()
