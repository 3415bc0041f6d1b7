"""A multilayer perceptron (PyTorch) for tabular data, with categorical embeddings.

The inputs, in this order:

- each numeric feature standardized with the training mean and standard deviation, a
  missing value set to 0 (the mean);
- for each numeric feature that had missing values in training, an indicator (1 when
  missing);
- for each categorical feature an embedding of ``min(16, (levels + 1) // 2 + 1)``
  dimensions; index 0 is shared by missing and unseen levels, level ``i`` of the schema
  is index ``i + 1``.

Hidden layers are ``Linear → ReLU → Dropout``; the output is one logit, the log-odds of
``y = 1``. Training is AdamW on the log loss, with early stopping on the validation
window's log loss (the weights of the best epoch are kept). The same data, parameters and
seed give the same weights on CPU: the weights are initialized and the batches shuffled
from the seed inside a forked random state, with deterministic algorithms on.

Saved as ``weights.safetensors`` (tensors only) and ``network.json`` (architecture and
standardization statistics); the network is rebuilt from the JSON, never unpickled.
torch is imported only when a network is fitted, scored or loaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from lendml.errors import ArtifactError, ConfigError, TrainingError
from lendml.models.artifact import Artifact
from lendml.models.base import Model, binary_labels
from lendml.models.schema import FeatureSchema

if TYPE_CHECKING:
    import torch

WEIGHTS_FILE = "weights.safetensors"
NETWORK_FILE = "network.json"
FORMAT = "lendml-torch-mlp"
FORMAT_VERSION = 1
MAX_EMBEDDING_DIM = 16
_PREDICT_CHUNK = 65_536


def embedding_dim(levels: int) -> int:
    """Embedding size for a categorical feature with ``levels`` training levels."""
    return min(MAX_EMBEDDING_DIM, (levels + 1) // 2 + 1)


@dataclass(frozen=True)
class NetworkSpec:
    """What rebuilds the network and its input encoding (``network.json``)."""

    numeric: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    indicators: tuple[str, ...]  # numeric features with a missing-value indicator
    categorical: tuple[str, ...]
    levels: tuple[int, ...]
    embedding_dims: tuple[int, ...]
    hidden: tuple[int, ...]
    dropout: float

    @property
    def input_dim(self) -> int:
        return len(self.numeric) + len(self.indicators) + sum(self.embedding_dims)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "numeric": [
                {"name": n, "mean": m, "std": s, "missing_indicator": n in self.indicators}
                for n, m, s in zip(self.numeric, self.means, self.stds, strict=True)
            ],
            "categorical": [
                {"name": n, "levels": k, "embedding_dim": d}
                for n, k, d in zip(self.categorical, self.levels, self.embedding_dims, strict=True)
            ],
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "input_dim": self.input_dim,
            "output": "logit of y = 1",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkSpec:
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"format {data.get('format')!r} version {data.get('format_version')!r}; "
                f"expected {FORMAT!r} version {FORMAT_VERSION}"
            )
        numeric, categorical = data["numeric"], data["categorical"]
        return cls(
            numeric=tuple(str(f["name"]) for f in numeric),
            means=tuple(float(f["mean"]) for f in numeric),
            stds=tuple(float(f["std"]) for f in numeric),
            indicators=tuple(str(f["name"]) for f in numeric if f["missing_indicator"]),
            categorical=tuple(str(f["name"]) for f in categorical),
            levels=tuple(int(f["levels"]) for f in categorical),
            embedding_dims=tuple(int(f["embedding_dim"]) for f in categorical),
            hidden=tuple(int(h) for h in data["hidden"]),
            dropout=float(data["dropout"]),
        )

    def inputs(self, schema: FeatureSchema, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The dense float32 block and the int64 embedding indices of ``X``."""
        encoded = schema.encode(X)
        names = schema.names
        num = encoded[:, [names.index(n) for n in self.numeric]]
        missing = np.isnan(num)
        dense = (num - np.asarray(self.means)) / np.asarray(self.stds)
        dense[missing] = 0.0
        flags = missing[:, [self.numeric.index(n) for n in self.indicators]]
        codes = encoded[:, [names.index(n) for n in self.categorical]]
        index = np.where(np.isnan(codes), 0.0, codes + 1.0).astype(np.int64)
        return np.hstack([dense, flags]).astype(np.float32), index


class TorchMLPModel(Model):
    """A PyTorch MLP with categorical embeddings, for a binary outcome.

    Parameters
    ----------
    hidden
        Units of each hidden layer, in order.
    dropout
        Dropout probability after each hidden layer.
    learning_rate, weight_decay
        AdamW's learning rate and decoupled weight decay.
    batch_size
        Rows per optimizer step.
    max_epochs
        Passes over the training data. Without a validation window every epoch runs.
    patience
        Epochs without a lower validation log loss before training stops; the weights
        of the best epoch are kept.
    seed
        Seeds the initial weights, dropout and batch order: the same seed gives the same
        weights on CPU.

    Notes
    -----
    Monotone constraints are refused (:class:`~lendml.errors.ConfigError`): the network
    cannot guarantee them. LightGBM and the scorecard honour them.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"dti": rng.normal(size=300), "housing": rng.choice(["own", "rent"], 300)})
    >>> y = (rng.uniform(size=300) < 0.2 + 0.4 * (X["housing"] == "rent")).astype(int)
    >>> net = TorchMLPModel(hidden=(16,), max_epochs=5).fit(X, y)
    >>> net.predict_proba(X.head(2)).shape
    (2, 2)
    """

    kind = "torch_mlp"

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 50,
        patience: int = 5,
        seed: int = 42,
    ) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.seed = seed

    def _check_params(self) -> tuple[int, ...]:
        try:
            hidden = tuple(int(h) for h in self.hidden)
        except (TypeError, ValueError):
            hidden = ()
        checks = [
            (
                "hidden",
                self.hidden,
                bool(hidden) and min(hidden) >= 1,
                "a non-empty sequence of positive integers",
            ),
            ("dropout", self.dropout, 0 <= self.dropout < 1, "a probability in [0, 1)"),
            ("learning_rate", self.learning_rate, self.learning_rate > 0, "a number > 0"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, "a number >= 0"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1"),
            ("max_epochs", self.max_epochs, self.max_epochs >= 1, "an integer >= 1"),
            ("patience", self.patience, self.patience >= 1, "an integer >= 1"),
        ]
        for name, value, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"The {name!r} parameter of TorchMLPModel must be {expected}; got {value!r}."
                )
        return hidden

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
        """Train the network; with a validation window, stop early on its log loss.

        ``callbacks`` are called after each epoch as ``callback(epoch, train_loss,
        valid_loss)`` (``valid_loss`` is ``None`` without a validation window); one that
        raises stops training (Optuna's ``TrialPruned``, for instance).

        Raises
        ------
        ConfigError
            A parameter is out of range, the schema declares monotone constraints, or
            ``X`` and ``y`` differ in length.
        TrainingError
            ``y`` is not a 0/1 label with both classes, or the loss became NaN.
        """
        hidden = self._check_params()
        schema = schema or FeatureSchema.infer(X)
        constrained = [f.name for f in schema.features if f.monotone]
        if constrained:
            raise ConfigError(
                f"TorchMLPModel cannot honour monotone constraints (declared on "
                f"{constrained[:5]!r}). Use the 'lightgbm' or 'scorecard' kind, which "
                "support them, or drop the constraints."
            )
        label = binary_labels(y, "The training label")
        if len(label) != len(X):
            raise ConfigError(f"X has {len(X)} rows but y has {len(label)}.")
        spec = _spec_from_training(schema, X, hidden, float(self.dropout))
        train = spec.inputs(schema, X)
        valid = None
        if X_valid is not None and y_valid is not None and len(X_valid):
            valid_label = binary_labels(y_valid, "The validation label")
            if len(valid_label) != len(X_valid):
                raise ConfigError(
                    f"X_valid has {len(X_valid)} rows but y_valid has {len(valid_label)}."
                )
            valid = (*spec.inputs(schema, X_valid), valid_label)
        self.schema_ = schema
        self.spec_ = spec
        self.network_, self.history_, self.best_epoch_ = _train(
            spec, train, label, valid, params=self, callbacks=callbacks
        )
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The log-odds of ``y = 1``, shape ``(n,)``."""
        import torch

        dense, index = self.spec_.inputs(self.schema_, X)
        out = np.empty(len(X), dtype=np.float64)
        self.network_.eval()
        with torch.no_grad():
            for start in range(0, len(X), _PREDICT_CHUNK):
                stop = start + _PREDICT_CHUNK
                logits = self.network_(
                    torch.from_numpy(dense[start:stop]), torch.from_numpy(index[start:stop])
                )
                out[start:stop] = logits.numpy().astype(np.float64)
        return out

    # -- persistence
    def _artifact_files(self) -> dict[str, bytes]:
        from safetensors.torch import save

        state = {k: v.detach().contiguous() for k, v in self.network_.state_dict().items()}
        return {
            WEIGHTS_FILE: save(state, metadata={"format": FORMAT}),
            NETWORK_FILE: json.dumps(self.spec_.to_dict(), indent=2, allow_nan=False).encode(),
        }

    @classmethod
    def _from_artifact(cls, artifact: Artifact) -> Self:
        from safetensors import SafetensorError
        from safetensors.torch import load

        params = dict(artifact.manifest["params"])
        if isinstance(params.get("hidden"), list):
            params["hidden"] = tuple(params["hidden"])
        model = cls(**params)
        try:
            model.spec_ = NetworkSpec.from_dict(artifact.json(NETWORK_FILE))
            network = _network_class()(model.spec_)
            network.load_state_dict(load(artifact.files[WEIGHTS_FILE]), strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
            raise ArtifactError(
                f"The network in {str(artifact.path)!r} cannot be rebuilt from "
                f"{NETWORK_FILE} and {WEIGHTS_FILE}: {exc!r}. Re-save the model from its "
                "training run.",
                path=str(artifact.path),
            ) from exc
        network.eval()
        model.network_ = network
        return model


def _spec_from_training(
    schema: FeatureSchema, X: pd.DataFrame, hidden: tuple[int, ...], dropout: float
) -> NetworkSpec:
    encoded = schema.encode(X)
    numeric = [f for f in schema.features if f.kind == "numeric"]
    categorical = [f for f in schema.features if f.kind == "categorical"]
    means, stds, indicators = [], [], []
    for spec in numeric:
        col = encoded[:, schema.names.index(spec.name)]
        seen = col[~np.isnan(col)]
        mean = float(seen.mean()) if len(seen) else 0.0
        std = float(seen.std()) if len(seen) else 0.0
        if not (math.isfinite(mean) and math.isfinite(std)):
            raise TrainingError(
                f"Numeric feature {spec.name!r} has infinite values (mean {mean!r}); clip or "
                "drop them before training a network."
            )
        means.append(mean)
        stds.append(std if std > 0 else 1.0)
        if len(seen) < len(col):
            indicators.append(spec.name)
    levels = [len(f.categories) for f in categorical]
    return NetworkSpec(
        numeric=tuple(f.name for f in numeric),
        means=tuple(means),
        stds=tuple(stds),
        indicators=tuple(indicators),
        categorical=tuple(f.name for f in categorical),
        levels=tuple(levels),
        embedding_dims=tuple(embedding_dim(k) for k in levels),
        hidden=hidden,
        dropout=dropout,
    )


@cache
def _network_class() -> type[torch.nn.Module]:
    """The network's module class (defined on first use, so torch loads lazily)."""
    from torch import nn

    class TabularMLP(nn.Module):
        def __init__(self, spec: NetworkSpec) -> None:
            super().__init__()
            self.embeddings = nn.ModuleList(
                nn.Embedding(k + 1, d)
                for k, d in zip(spec.levels, spec.embedding_dims, strict=True)
            )
            layers: list[nn.Module] = []
            width = spec.input_dim
            for units in spec.hidden:
                layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(spec.dropout)]
                width = units
            layers.append(nn.Linear(width, 1))
            self.mlp = nn.Sequential(*layers)

        def forward(self, dense: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            import torch

            parts = [dense, *(emb(index[:, j]) for j, emb in enumerate(self.embeddings))]
            out: torch.Tensor = self.mlp(torch.cat(parts, dim=1)).squeeze(1)
            return out

    return TabularMLP


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seeded, deterministic torch inside the block; the caller's state is restored."""
    import torch

    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def _train(
    spec: NetworkSpec,
    train: tuple[np.ndarray, np.ndarray],
    label: np.ndarray,
    valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    *,
    params: TorchMLPModel,
    callbacks: Sequence[Callable[..., Any]],
) -> tuple[torch.nn.Module, list[dict[str, float | None]], int]:
    import torch
    from torch.nn.functional import binary_cross_entropy_with_logits as log_loss

    with _deterministic(int(params.seed)):
        network = _network_class()(spec)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
        )
        generator = torch.Generator().manual_seed(int(params.seed))
        dense, index = torch.from_numpy(train[0]), torch.from_numpy(train[1])
        target = torch.from_numpy(label.astype(np.float32))
        if valid is not None:
            v_dense, v_index = torch.from_numpy(valid[0]), torch.from_numpy(valid[1])
            v_target = torch.from_numpy(valid[2].astype(np.float32))
        best_loss, best_epoch, best_state = math.inf, 0, None
        history: list[dict[str, float | None]] = []
        for epoch in range(1, int(params.max_epochs) + 1):
            network.train()
            order = torch.randperm(len(target), generator=generator)
            total = 0.0
            for start in range(0, len(order), int(params.batch_size)):
                rows = order[start : start + int(params.batch_size)]
                optimizer.zero_grad()
                loss = log_loss(network(dense[rows], index[rows]), target[rows])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            train_loss = total / len(order)
            if not math.isfinite(train_loss):
                raise TrainingError(
                    f"The training loss became {train_loss!r} at epoch {epoch}; lower the "
                    f"learning_rate (now {params.learning_rate!r}) or check the inputs."
                )
            valid_loss = None
            if valid is not None:
                network.eval()
                with torch.no_grad():
                    valid_loss = float(log_loss(network(v_dense, v_index), v_target))
            history.append({"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss})
            for callback in callbacks:
                callback(epoch, train_loss, valid_loss)
            if valid_loss is None:
                best_epoch = epoch
                continue
            if valid_loss < best_loss:
                best_loss, best_epoch = valid_loss, epoch
                best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
            elif epoch - best_epoch >= int(params.patience):
                break
        if best_state is not None:
            network.load_state_dict(best_state)
    network.eval()
    return network, history, best_epoch
