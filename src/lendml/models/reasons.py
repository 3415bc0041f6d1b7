"""Reason codes from attributions, and the documented reference applicant.

:func:`reason_codes` turns Shapley attributions (:class:`~lendml.models.explain.TreeExplainer`)
into ranked, grouped principal reasons that never name an excluded (protected) attribute;
:func:`reference_point` chooses and documents the reference applicant the attributions are
measured against (Regulation B: the reasons compare the applicant with a stated reference).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from lendml.errors import ConfigError, DataValidationError
from lendml.models.schema import FeatureSchema

if TYPE_CHECKING:
    from lendml.models.base import Model

log = logging.getLogger(__name__)

_SHOW = 5


# --------------------------------------------------------------------------- reasons
@dataclass(frozen=True)
class ReasonCode:
    """One principal reason: a feature, or a group of features, and how much it moved
    the log-odds of a bad outcome away from the reference applicant.

    ``values`` and ``reference`` map each feature of the reason to the applicant's and
    the reference point's values (``None`` when not given or missing).
    """

    code: str
    contribution: float
    features: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "code": self.code,
            "contribution": self.contribution,
            "features": list(self.features),
            "values": dict(self.values),
            "reference": dict(self.reference),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


class _Values:
    """Readable values of rows, read lazily per (row, feature): only reasons need them."""

    def __init__(self, values: Any, names: Sequence[str], n: int, what: str) -> None:
        self._frame: pd.DataFrame | None = None
        self._mapping: Mapping[str, Any] | None = None
        self._columns: dict[str, np.ndarray] = {}
        self._array: np.ndarray | None = None
        self._index = {name: j for j, name in enumerate(names)}
        if isinstance(values, ReferencePoint):
            values = values.values
        if isinstance(values, pd.Series):
            values = values.to_dict()
        if isinstance(values, Mapping | pd.DataFrame):
            have = values.columns if isinstance(values, pd.DataFrame) else values
            missing = [c for c in names if c not in have]
            if missing:
                raise DataValidationError(
                    f"{what} lacks the feature(s) {missing[:_SHOW]!r}; pass the rows (or the "
                    "reference) the contributions were computed from."
                )
        if isinstance(values, Mapping):
            self._mapping, rows = values, 1
        elif isinstance(values, pd.DataFrame):
            self._frame, rows = values, len(values)
        else:
            arr = np.asarray(values, dtype=object)
            arr = arr.reshape(1, -1) if arr.ndim == 1 else arr
            if arr.ndim != 2 or arr.shape[1] != len(names):
                raise DataValidationError(
                    f"{what} must have one column per feature ({len(names)}); got shape "
                    f"{arr.shape!r}."
                )
            self._array, rows = arr, len(arr)
        if rows not in (1, n):
            raise DataValidationError(
                f"{what} has {rows} row(s) but the contributions have {n}; pass the same rows."
            )
        self._one = rows == 1

    def get(self, i: int, feature: str) -> Any:
        i = 0 if self._one else i
        if self._mapping is not None:
            return _plain(self._mapping[feature])
        if self._array is not None:
            return _plain(self._array[i, self._index[feature]])
        column = self._columns.get(feature)
        if column is None and self._frame is not None:
            column = self._columns[feature] = self._frame[feature].to_numpy(dtype=object)
        return None if column is None else _plain(column[i])


def reason_codes(
    contributions: Sequence[float] | np.ndarray,
    feature_names: Sequence[str],
    *,
    top: int = 4,
    exclude: Iterable[str] = (),
    groups: Mapping[str, str] | None = None,
    direction: Literal["adverse", "favourable"] = "adverse",
    values: Any = None,
    reference: Any = None,
) -> list[Any]:
    """Rank the principal reasons of each row from its attributions.

    Parameters
    ----------
    contributions
        Attributions on the log-odds of a bad outcome: one row ``(n_features,)`` or many
        ``(n, n_features)`` (:meth:`TreeExplainer.contributions`).
    feature_names
        The features, in the order of the columns.
    top
        At most this many reasons per row (Regulation B: up to four principal reasons).
    exclude
        Features, or group codes, that must never be a reason — protected attributes.
        An excluded feature is dropped before grouping, so it never adds to a group.
        Names that are not features or codes are accepted (a protected attribute is
        normally not a model input at all).
    groups
        ``{feature: code}``: features that make one reason (e.g. several utilisation
        features under ``"utilisation"``); their attributions are summed. Features not
        listed are their own reason, named by the feature.
    direction
        ``"adverse"`` ranks the reasons that raised the risk (strictly positive sums,
        largest first); ``"favourable"`` those that lowered it (strictly negative sums,
        most negative first).
    values, reference
        Optional readable values for the reasons: the rows' values (a frame with the
        feature columns, a mapping, or an array aligned with ``feature_names``) and the
        reference point's (a :class:`ReferencePoint`, a mapping or an array).

    Returns
    -------
    list
        For one row, a list of at most ``top`` :class:`ReasonCode`; for many rows, one
        such list per row. Ties in the attribution are broken by the code's name (the
        order of ``sorted``), so the result never depends on the column order. A row
        with no attribution of the requested sign has no reasons: ``[]``.

    Raises
    ------
    ConfigError
        ``top`` below 1, an unknown ``direction``, a group naming an unknown feature, or
        a group code equal to the name of a feature outside that group.
    DataValidationError
        The shapes of ``contributions``, ``feature_names`` and ``values`` disagree.

    Examples
    --------
    >>> codes = reason_codes([0.4, -0.1, 0.4, 0.2], ["dti", "income", "util_a", "util_b"],
    ...                      groups={"util_a": "utilisation", "util_b": "utilisation"})
    >>> [(c.code, round(c.contribution, 2)) for c in codes]
    [('utilisation', 0.6), ('dti', 0.4)]
    """
    phi = np.asarray(contributions, dtype=np.float64)
    single = phi.ndim == 1
    phi = phi.reshape(1, -1) if single else phi
    names = [str(n) for n in feature_names]
    if phi.ndim != 2 or phi.shape[1] != len(names):
        raise DataValidationError(
            f"contributions must have one column per feature ({len(names)} names); got shape "
            f"{np.asarray(contributions).shape!r}."
        )
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ConfigError(
            f"top must be a positive integer (Regulation B asks for up to 4); got {top!r}."
        )
    if direction not in ("adverse", "favourable"):
        raise ConfigError(f"direction must be 'adverse' or 'favourable'; got {direction!r}.")
    groups = dict(groups or {})
    unknown = sorted(set(groups) - set(names))
    if unknown:
        raise ConfigError(
            f"groups names feature(s) {unknown[:_SHOW]!r} that are not model features; "
            f"features: {names[:10]!r}. Remove them or fix their spelling."
        )
    clash = sorted({code for code in groups.values() if code in names and groups.get(code) != code})
    if clash:
        raise ConfigError(
            f"Group code(s) {clash!r} are also names of features outside the group; rename "
            "the code or put the feature in its group."
        )
    excluded = {str(e) for e in exclude}
    code_of = {n: groups.get(n, n) for n in names if n not in excluded}
    codes = sorted({c for c in code_of.values() if c not in excluded})
    members = {c: tuple(sorted(n for n, k in code_of.items() if k == c)) for c in codes}
    col = {c: i for i, c in enumerate(codes)}
    agg = np.zeros((len(names), len(codes)))
    for j, n in enumerate(names):
        c = code_of.get(n)
        if c is not None and c in col:
            agg[j, col[c]] = 1.0
    by_code = phi @ agg if codes else np.zeros((len(phi), 0))  # (n, codes), codes sorted
    signed = by_code if direction == "adverse" else -by_code
    k = min(top, len(codes))
    order = np.argsort(-signed, axis=1, kind="stable")[:, :k]  # stable: ties by name
    row_values = None if values is None else _Values(values, names, len(phi), "values")
    ref_values = None if reference is None else _Values(reference, names, 1, "reference")
    out: list[list[ReasonCode]] = []
    for i in range(len(phi)):
        reasons = []
        for j in order[i]:
            if not signed[i, j] > 0.0:
                break
            feats = members[codes[j]]
            reasons.append(
                ReasonCode(
                    code=codes[j],
                    contribution=float(by_code[i, j]),
                    features=feats,
                    values={f: row_values.get(i, f) if row_values else None for f in feats},
                    reference={f: ref_values.get(0, f) if ref_values else None for f in feats},
                )
            )
        out.append(reasons)
    return out[0] if single else out


# --------------------------------------------------------------------------- reference
@dataclass(frozen=True)
class ReferencePoint:
    """The documented reference applicant that reasons are measured against.

    Attributes
    ----------
    features
        The model's features, in schema order.
    encoded
        The reference as the model reads it, shape ``(n_features,)``.
    values
        Readable values: numbers for numeric features, category labels for categorical
        ones, ``None`` where the reference is missing.
    cutoff, band, side, n_rows
        How it was chosen: the rows whose score lies within ``band`` of ``cutoff`` on
        ``side`` (the band actually used, after any widening), and how many there were.
    """

    features: tuple[str, ...]
    encoded: np.ndarray
    values: dict[str, Any]
    cutoff: float | None = None
    band: float | None = None
    side: str | None = None
    n_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (store it next to the model version)."""
        return {
            "features": list(self.features),
            "values": {f: self.values[f] for f in self.features},
            "cutoff": self.cutoff,
            "band": self.band,
            "side": self.side,
            "n_rows": self.n_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], schema: FeatureSchema) -> ReferencePoint:
        """Rebuild a stored reference point, encoding its values with ``schema``.

        Raises
        ------
        DataValidationError
            The stored features differ from the schema's.
        """
        features = tuple(str(f) for f in data.get("features", ()))
        if features != tuple(schema.names):
            raise DataValidationError(
                f"The stored reference point's features {list(features)[:_SHOW]!r} differ "
                f"from the model's {schema.names[:_SHOW]!r}; it belongs to another model "
                "version — recompute it with reference_point()."
            )
        values = {f: _plain(data["values"].get(f)) for f in features}
        return cls(
            features=features,
            encoded=_encode_values(values, schema),
            values=values,
            cutoff=data.get("cutoff"),
            band=data.get("band"),
            side=data.get("side"),
            n_rows=data.get("n_rows"),
        )


def _encode_values(values: Mapping[str, Any], schema: FeatureSchema) -> np.ndarray:
    frame = pd.DataFrame(
        {
            spec.name: pd.Series(
                [values[spec.name]], dtype=object if spec.kind == "categorical" else "float64"
            )
            for spec in schema.features
        }
    )
    return schema.encode(frame)[0]


def reference_point(
    model: Model,
    frame: pd.DataFrame,
    scores: Sequence[float] | np.ndarray | pd.Series,
    *,
    cutoff: float,
    band: float = 0.02,
    side: Literal["above", "below"] = "above",
    min_rows: int = 30,
) -> ReferencePoint:
    """The reference applicant: the average of the rows scoring just past the cutoff.

    Numeric features take the mean of the rows (missing values ignored), categorical
    features the most frequent category (ties: the first in the schema's category order).
    A feature missing in all those rows is missing in the reference.

    Parameters
    ----------
    model
        A fitted model; its ``schema_`` encodes ``frame``.
    frame
        Applicants (e.g. a recent scored population), with the model's features.
    scores
        Their scores, one per row, on the scale of ``cutoff``.
    cutoff, band, side
        Rows with ``cutoff <= score <= cutoff + band`` (``side="above"``) or
        ``cutoff - band <= score < cutoff`` (``side="below"``, e.g. probabilities of
        default approved below the cutoff).
    min_rows
        If the band holds fewer rows, it is doubled until it holds ``min_rows`` or every
        row on that side of the cutoff.

    Returns
    -------
    ReferencePoint
        The encoded vector for :meth:`TreeExplainer.contributions` and the readable values
        (``to_dict()`` is JSON) with the band actually used and the number of rows.

    Raises
    ------
    ConfigError
        ``band`` or ``min_rows`` not positive, or ``side`` unknown.
    DataValidationError
        ``scores`` does not match ``frame`` or holds non-finite values, or no row lies on
        the requested side of the cutoff.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lendml.models.lightgbm import LightGBMModel
    >>> rng = np.random.default_rng(0)
    >>> home = rng.choice(["own", "rent"], 400)
    >>> frame = pd.DataFrame({"dti": rng.uniform(size=400), "home": home})
    >>> bad = (rng.uniform(size=400) < frame["dti"]).astype(int)
    >>> model = LightGBMModel(n_estimators=5, early_stopping_rounds=0).fit(frame, bad)
    >>> p_bad = model.predict_proba(frame)[:, 1]
    >>> ref = reference_point(model, frame, p_bad, cutoff=0.5, side="below", min_rows=20)
    >>> ref.n_rows >= 20, sorted(ref.values)
    (True, ['dti', 'home'])
    """
    if not band > 0 or not math.isfinite(band):
        raise ConfigError(f"band must be a positive number; got {band!r}.")
    if side not in ("above", "below"):
        raise ConfigError(f"side must be 'above' or 'below'; got {side!r}.")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise ConfigError(f"min_rows must be a positive integer; got {min_rows!r}.")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (len(frame),):
        raise DataValidationError(
            f"scores must hold one score per row of frame ({len(frame)}); got shape {s.shape!r}."
        )
    if not np.isfinite(s).all():
        raise DataValidationError(
            f"scores hold {int((~np.isfinite(s)).sum())} missing or infinite value(s); "
            "score every row or drop the unscored ones."
        )
    dist = s - cutoff if side == "above" else cutoff - s
    on_side = dist >= 0 if side == "above" else dist > 0
    if not on_side.any():
        raise DataValidationError(
            f"No row scores {side} the cutoff {cutoff!r} (scores range from {s.min():.6g} "
            f"to {s.max():.6g}); check the cutoff's scale or pass rows from both sides."
        )
    used = float(band)
    rows = on_side & (dist <= used)
    while rows.sum() < min_rows and rows.sum() < on_side.sum():
        used *= 2.0
        rows = on_side & (dist <= used)
    if used != band:
        log.info(
            "Reference point: band widened from %g to %g to hold %d row(s).",
            band,
            used,
            int(rows.sum()),
        )
    schema = model.schema_
    X = schema.encode(frame.iloc[np.flatnonzero(rows)])
    values: dict[str, Any] = {}
    encoded = np.full(len(schema), np.nan)
    for j, spec in enumerate(schema.features):
        col = X[:, j]
        col = col[~np.isnan(col)]
        if not len(col):
            values[spec.name] = None
            continue
        if spec.kind == "categorical":
            counts = np.bincount(col.astype(np.int64), minlength=len(spec.categories))
            code = int(np.argmax(counts))  # first of the most frequent
            encoded[j] = float(code)
            values[spec.name] = spec.categories[code]
        else:
            encoded[j] = float(col.mean())
            values[spec.name] = float(encoded[j])
    return ReferencePoint(
        features=tuple(schema.names),
        encoded=encoded,
        values=values,
        cutoff=float(cutoff),
        band=used,
        side=side,
        n_rows=int(rows.sum()),
    )


__all__ = ["ReasonCode", "ReferencePoint", "reason_codes", "reference_point"]
