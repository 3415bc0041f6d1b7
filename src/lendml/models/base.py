"""The model protocol every model kind follows, and loading a saved model safely.

The contract is scikit-learn's: ``__init__`` stores hyperparameters only, ``fit`` returns
``self``, learned state ends in ``_``. A model saves itself as an artifact folder of
code-free formats (:mod:`lendml.models.artifact`) and :func:`load_model` rebuilds it from
that folder after checking every file's sha256.
"""

from __future__ import annotations

import importlib
import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from lendml.errors import ArtifactError, ConfigError, TrainingError
from lendml.models.artifact import Artifact, read_artifact, write_artifact
from lendml.models.schema import FeatureSchema

# kind → "module:Class"; imported lazily so torch loads only when a network is used.
MODEL_KINDS: dict[str, str] = {
    "lightgbm": "lendml.models.lightgbm:LightGBMModel",
    "scorecard": "lendml.models.scorecard:ScorecardModel",
    "torch_mlp": "lendml.models.torch_mlp:TorchMLPModel",
}


class Model(ABC):
    """A binary classifier of one kind (LightGBM, scorecard, network).

    Subclasses declare their hyperparameters as keyword arguments of ``__init__`` and
    store them unchanged under the same names.
    """

    kind: ClassVar[str]
    schema_: FeatureSchema

    # -- hyperparameters (scikit-learn's get_params / set_params contract)
    def get_params(self) -> dict[str, Any]:
        params = inspect.signature(type(self).__init__).parameters.values()
        return {p.name: getattr(self, p.name) for p in params if p.name != "self"}

    def set_params(self, **params: Any) -> Self:
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ConfigError(
                    f"{type(self).__name__} has no parameter {key!r}; valid: {sorted(valid)}."
                )
            setattr(self, key, value)
        return self

    # -- learning
    @abstractmethod
    def fit(
        self,
        X: pd.DataFrame,
        y: Sequence[int] | np.ndarray | pd.Series,
        *,
        X_valid: pd.DataFrame | None = None,
        y_valid: Sequence[int] | np.ndarray | pd.Series | None = None,
        schema: FeatureSchema | None = None,
        callbacks: Sequence[Callable[..., Any]] = (),
    ) -> Self:
        """Learn from ``X`` (a frame of the inputs) and binary ``y`` (0/1).

        ``X_valid``/``y_valid`` are the validation window (early stopping where the kind
        supports it); ``schema`` fixes the inputs' kinds, categories and monotone
        constraints (default: inferred from ``X``); ``callbacks`` are kind-specific hooks
        (LightGBM callbacks, e.g. Optuna's pruning callback).
        """

    @abstractmethod
    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The score on the log-odds scale, shape ``(n,)``."""

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, shape ``(n, 2)``: column 1 is P(y = 1)."""
        p1 = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p1, p1])

    # -- persistence
    @abstractmethod
    def _artifact_files(self) -> dict[str, bytes]:
        """The model's files, in code-free formats."""

    @classmethod
    @abstractmethod
    def _from_artifact(cls, artifact: Artifact) -> Self:
        """Rebuild a fitted model from a verified artifact."""

    def save(
        self, path: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Write the fitted model as an artifact folder; return its manifest's sha256.

        ``metadata`` (JSON-ready) is kept in the manifest and comes back as ``metadata_``
        from :func:`load_model`.
        """
        if not hasattr(self, "schema_"):
            raise ConfigError(f"{type(self).__name__} is not fitted; call fit() before save().")
        return write_artifact(
            path,
            kind=self.kind,
            files=self._artifact_files(),
            manifest={
                "schema": self.schema_.to_dict(),
                "params": _jsonable(self.get_params()),
                "metadata": dict(metadata or {}),
            },
        )


def binary_labels(y: Any, what: str) -> np.ndarray:
    """``y`` as a float 0/1 vector, refusing missing values, other values and one class."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ConfigError(f"{what} must be one-dimensional; got shape {arr.shape}.")
    if pd.isna(arr).any():
        raise TrainingError(f"{what} has missing values; drop or fill them before training.")
    values = set(np.unique(arr).tolist())
    if not values <= {0, 1}:
        raise TrainingError(f"{what} must be 0/1; got values {sorted(map(str, values))[:5]}.")
    if len(values) < 2:
        raise TrainingError(
            f"{what} has a single class ({sorted(values)}); a classifier needs both 0 and 1."
        )
    return arr.astype(np.float64)


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, tuple):  # e.g. hidden layer sizes; JSON has lists only
            value = list(value)
        plain = isinstance(value, str | int | float | bool | list | dict | None)
        out[key] = value if plain else str(value)
    return out


def model_class(kind: str) -> type[Model]:
    """The class of a model kind (``lightgbm``, ``scorecard``, ``torch_mlp``)."""
    target = MODEL_KINDS.get(kind)
    if target is None:
        raise ConfigError(f"Unknown model kind {kind!r}; available: {sorted(MODEL_KINDS)}.")
    module, _, name = target.partition(":")
    cls: type[Model] = getattr(importlib.import_module(module), name)
    return cls


def load_model(path: str | os.PathLike[str], *, expected_sha256: str | None = None) -> Model:
    """Load a saved model after verifying its files (nothing is unpickled).

    Raises
    ------
    ArtifactError
        The folder is not a model artifact, or any file differs from what was written.
    """
    artifact = read_artifact(path, expected_sha256=expected_sha256)
    if artifact.kind not in MODEL_KINDS:
        raise ArtifactError(
            f"Artifact {str(path)!r} holds a model of unknown kind {artifact.kind!r}.",
            path=str(path),
        )
    model = model_class(artifact.kind)._from_artifact(artifact)
    model.schema_ = FeatureSchema.from_dict(artifact.manifest["schema"])
    # What training recorded with the model (run id, reference point for reasons, ...).
    model.metadata_ = dict(artifact.manifest.get("metadata") or {})
    return model
