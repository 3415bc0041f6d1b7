"""The feature schema a model was trained on: names, kinds, categories, monotone constraints.

Every model kind encodes its input with the same schema, so a frame is read the same way
at training, in batch scoring and in serving: numeric columns as float64 (missing → NaN),
categorical columns as the index of their level in the training categories (unseen or
missing → NaN). Categorical levels are kept as strings so the schema round-trips through
JSON unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from lendml.errors import ConfigError, DataValidationError

FeatureKind = Literal["numeric", "categorical"]
MAX_CATEGORIES = 1000
_SHOW = 5


def category_label(value: Any) -> str | None:
    """The string a categorical value is stored as (``1``, ``1.0`` and ``"1"`` agree)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class FeatureSpec:
    """One model input."""

    name: str
    kind: FeatureKind = "numeric"
    categories: tuple[str, ...] = ()
    monotone: int = 0  # +1 score rises with the value, -1 falls, 0 unconstrained

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["categories"] = list(self.categories)
        if self.monotone:
            out["monotone"] = self.monotone
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            name=str(data["name"]),
            kind=data.get("kind", "numeric"),
            categories=tuple(data.get("categories", ())),
            monotone=int(data.get("monotone", 0)),
        )


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered inputs of a model."""

    features: tuple[FeatureSpec, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {f.name: i for i, f in enumerate(self.features)})
        if len(self._index) != len(self.features):
            raise ConfigError("Feature names in a model schema must be unique.")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, name: str) -> FeatureSpec:
        return self.features[self._index[name]]

    @classmethod
    def infer(
        cls,
        frame: pd.DataFrame,
        *,
        categorical: Sequence[str] | None = None,
        monotone: Mapping[str, int] | None = None,
    ) -> FeatureSchema:
        """The schema of ``frame``: every column is an input, in order.

        Columns of string, category or boolean dtype are categorical unless
        ``categorical`` lists the categorical columns explicitly (then only those are).
        """
        monotone = dict(monotone or {})
        unknown = sorted(set(monotone) - set(frame.columns))
        if unknown:
            raise ConfigError(
                f"Monotone constraints name features that are not inputs: {unknown[:_SHOW]}. "
                f"Inputs: {list(frame.columns)[:20]}."
            )
        bad = {k: v for k, v in monotone.items() if v not in (-1, 0, 1)}
        if bad:
            raise ConfigError(f"Monotone constraints must be -1, 0 or 1; got {bad!r}.")
        if categorical is not None:
            missing = sorted(set(categorical) - set(frame.columns))
            if missing:
                raise ConfigError(
                    f"Categorical features {missing[:_SHOW]} are not columns of the data."
                )
        specs = []
        for name in frame.columns:
            col = frame[name]
            numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
            is_cat = name in categorical if categorical is not None else not numeric
            if is_cat:
                if monotone.get(name):
                    raise ConfigError(
                        f"Feature {name!r} is categorical; monotone constraints apply to "
                        "numeric features only."
                    )
                labels = {category_label(v) for v in col.dropna().unique()}
                levels = tuple(sorted(lab for lab in labels if lab is not None))
                if len(levels) > MAX_CATEGORIES:
                    raise ConfigError(
                        f"Categorical feature {name!r} has {len(levels)} levels (limit "
                        f"{MAX_CATEGORIES}); encode it (e.g. target or frequency encoding) "
                        "or declare it numeric."
                    )
                specs.append(FeatureSpec(str(name), "categorical", levels))
            else:
                if pd.api.types.is_datetime64_any_dtype(col):
                    raise ConfigError(
                        f"Feature {name!r} is a timestamp; models take numbers or categories. "
                        "Derive a number from it (e.g. days since) or drop it."
                    )
                specs.append(FeatureSpec(str(name), "numeric", monotone=monotone.get(name, 0)))
        if not specs:
            raise ConfigError("A model needs at least one input feature; the data has none.")
        return cls(tuple(specs))

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """The float64 matrix of ``frame`` in schema order.

        Raises
        ------
        DataValidationError
            A schema feature is missing from ``frame``, or a numeric feature holds values
            that are not numbers.
        """
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise DataValidationError(
                f"{len(missing)} model feature(s) missing from the input: "
                f"{missing[:_SHOW]}{' …' if len(missing) > _SHOW else ''}.",
            )
        out = np.empty((len(frame), len(self.features)), dtype=np.float64)
        for j, spec in enumerate(self.features):
            col = frame[spec.name]
            if spec.kind == "categorical":
                lookup = {lab: float(i) for i, lab in enumerate(spec.categories)}
                labels = col.map(category_label, na_action="ignore")
                out[:, j] = labels.map(lookup).astype("float64").to_numpy(na_value=np.nan)
            else:
                try:
                    out[:, j] = (
                        pd.to_numeric(col, errors="raise")
                        .astype("float64")
                        .to_numpy(na_value=np.nan)
                    )
                except (ValueError, TypeError) as exc:
                    bad = col[pd.to_numeric(col, errors="coerce").isna() & col.notna()]
                    raise DataValidationError(
                        f"Feature {spec.name!r} must be numeric; got values such as "
                        f"{list(bad.unique()[:_SHOW])!r}.",
                        feature=spec.name,
                    ) from exc
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"features": [f.to_dict() for f in self.features]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        return cls(tuple(FeatureSpec.from_dict(f) for f in data["features"]))
