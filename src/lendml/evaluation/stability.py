"""Stability: PSI of the score and CSI of each feature, on bins frozen on the reference.

The population stability index compares the share of rows in each bin between a reference
sample (usually the training set) and a current one (the test set, or a month of
production)::

    PSI = Σ_b (cur_b − ref_b) · ln(cur_b / ref_b)

Bins are fitted once on the reference with :func:`fit_bins` and frozen: a :class:`Bins`
serializes to plain JSON (:meth:`Bins.to_dict`), so monitoring can reuse exactly the same
bins months later with :func:`psi`. The CSI (characteristic stability index) is the same
formula applied to one feature.

Bins
    * numeric: right-closed intervals between quantile cut points of the reference
      (default 10; ties give fewer), open at both ends so current values beyond the
      reference range land in the outer bins, plus a ``(missing)`` bin;
    * categorical: each reference level (the ``max_levels`` most frequent; the rest are
      pooled), an ``(other)`` bin for levels unseen in the reference, and ``(missing)``.
      Levels are compared as strings.

Empty bins
    A share of 0 would make ``ln`` infinite, so each share is floored at ``epsilon``
    (default 1e-4, i.e. 0.01 %) before the formula; shares are not renormalized. A bin
    empty on both sides then adds exactly 0, and the PSI of a sample against itself is 0.

Reading it (the industry's rule of thumb): below 0.10 stable, 0.10–0.25 a moderate shift
worth a look, 0.25 and above a significant shift.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from lendml.errors import ConfigError
from lendml.evaluation._binning import MISSING, assign, quantile_cuts
from lendml.evaluation._checks import check_n_bins, jsonable

OTHER = "(other)"
EPSILON = 1e-4
#: PSI at or above which a shift is called moderate, then significant.
PSI_MODERATE = 0.10
PSI_SIGNIFICANT = 0.25
BINS_FORMAT = 1


def psi_level(value: float) -> str:
    """``stable`` (< 0.10), ``moderate`` (< 0.25) or ``significant``; ``n/a`` for NaN."""
    if not math.isfinite(value):
        return "n/a"
    if value < PSI_MODERATE:
        return "stable"
    return "moderate" if value < PSI_SIGNIFICANT else "significant"


def _fmt(x: float) -> str:
    return f"{x:.6g}"


@dataclass(frozen=True)
class Bins:
    """Frozen bins of one variable with the reference counts they were fitted on.

    Attributes
    ----------
    kind
        ``"numeric"`` or ``"categorical"``.
    cuts
        Numeric: the interior cut points; bin ``i`` is ``(cuts[i-1], cuts[i]]``.
    levels
        Categorical: the reference levels, as strings.
    reference_counts
        Rows of the reference in each bin, in :attr:`labels` order (the ``(other)`` and
        ``(missing)`` bins included).
    name
        The variable's name (for messages and reports).
    """

    kind: Literal["numeric", "categorical"]
    cuts: tuple[float, ...]
    levels: tuple[str, ...]
    reference_counts: tuple[int, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ConfigError(f"Bins kind must be 'numeric' or 'categorical'; got {self.kind!r}.")
        expected = len(self.cuts) + 2 if self.kind == "numeric" else len(self.levels) + 2
        if len(self.reference_counts) != expected:
            raise ConfigError(
                f"Bins for {self.name!r} have {len(self.reference_counts)} reference counts "
                f"but {expected} bins: the bins are corrupt; fit them again with fit_bins()."
            )
        if any(c < 0 for c in self.reference_counts):
            raise ConfigError(
                f"Bins for {self.name!r} have negative reference counts "
                f"{self.reference_counts!r}; fit them again with fit_bins()."
            )
        if self.kind == "numeric" and (
            not all(math.isfinite(c) for c in self.cuts)
            or any(b <= a for a, b in zip(self.cuts, self.cuts[1:], strict=False))
        ):
            raise ConfigError(
                f"Bins for {self.name!r} need finite, strictly increasing cut points; got "
                f"{self.cuts!r}."
            )
        if self.kind == "categorical" and len(set(self.levels)) != len(self.levels):
            raise ConfigError(f"Bins for {self.name!r} repeat a level: {self.levels!r}.")

    @property
    def labels(self) -> tuple[str, ...]:
        """One label per bin: ``(-inf, 1.5]``, ``(1.5, 3]``, …, ``(other)``, ``(missing)``."""
        if self.kind == "categorical":
            return (*self.levels, OTHER, MISSING)
        edges = [-math.inf, *self.cuts, math.inf]
        return (
            *(f"({_fmt(a)}, {_fmt(b)}]" for a, b in itertools.pairwise(edges)),
            MISSING,
        )

    @property
    def n_reference(self) -> int:
        """Rows in the reference sample."""
        return int(sum(self.reference_counts))

    def counts(self, values: Any) -> np.ndarray:
        """Rows of ``values`` in each bin, in :attr:`labels` order."""
        s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
        k = len(self.reference_counts)
        if self.kind == "numeric":
            missing = s.isna().to_numpy()
            x = _numeric(s, name=self.name)
            idx = np.where(missing, k - 1, assign(x, np.asarray(self.cuts, dtype=float)))
            return np.bincount(idx, minlength=k)
        # Count each distinct value once, then map its string to a level: no per-row strings.
        out = np.zeros(k, dtype=np.int64)
        position = {level: i for i, level in enumerate(self.levels)}
        for text, count in _string_counts(s).items():
            out[position.get(text, k - 2)] += count
        out[k - 1] = int(s.isna().sum())
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: format version, kind, cut points or levels, reference counts."""
        return {
            "format": BINS_FORMAT,
            "name": self.name,
            "kind": self.kind,
            "cuts": [float(c) for c in self.cuts],
            "levels": list(self.levels),
            "reference_counts": [int(c) for c in self.reference_counts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bins:
        """Rebuild bins written by :meth:`to_dict`; anything malformed is refused."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"Bins must be read from a mapping; got {type(data).__name__}.")
        fmt = data.get("format")
        if fmt != BINS_FORMAT:
            raise ConfigError(
                f"Bins format {fmt!r} is not supported; this lendml reads format "
                f"{BINS_FORMAT}. Fit the bins again with fit_bins()."
            )
        missing = [k for k in ("kind", "cuts", "levels", "reference_counts") if k not in data]
        if missing:
            raise ConfigError(f"Bins are missing the key(s) {missing!r}; got {sorted(data)!r}.")
        name = data.get("name")
        try:
            cuts = tuple(float(c) for c in data["cuts"])
            levels = tuple(str(v) for v in data["levels"])
            counts = tuple(_as_count(c) for c in data["reference_counts"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Bins for {name!r} are malformed: {exc}.") from exc
        return cls(
            kind=data["kind"],
            cuts=cuts,
            levels=levels,
            reference_counts=counts,
            name=None if name is None else str(name),
        )


def _string_counts(s: pd.Series) -> dict[str, int]:
    """Rows per distinct non-missing value, keyed by the value as a string."""
    out: dict[str, int] = {}
    for value, count in s.value_counts(dropna=True, sort=False).items():
        key = str(value)
        out[key] = out.get(key, 0) + int(count)
    return out


def _as_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"a reference count must be a whole number, got {value!r}")
    return int(value)


def _numeric(s: pd.Series, *, name: str | None) -> np.ndarray:
    try:
        return s.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"Variable {name!r} was binned as numeric but holds non-numeric values such as "
            f"{s.dropna().head(3).tolist()!r}; fit categorical bins (kind='categorical')."
        ) from exc


def _infer_kind(s: pd.Series, name: str | None) -> Literal["numeric", "categorical"]:
    if pd.api.types.is_bool_dtype(s.dtype):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_timedelta64_dtype(s.dtype):
        raise ConfigError(
            f"Variable {name!r} is a timestamp ({s.dtype}); PSI compares distributions of "
            "features, and a time column always drifts. Drop it, or pass a derived feature "
            "(e.g. an age in days)."
        )
    if pd.api.types.is_numeric_dtype(s.dtype):
        return "numeric"
    return "categorical"


def fit_bins(
    reference: Any,
    *,
    n_bins: int = 10,
    kind: Literal["auto", "numeric", "categorical"] = "auto",
    max_levels: int = 50,
    name: str | None = None,
) -> Bins:
    """Fit frozen bins on a reference sample of one variable (a score or a feature).

    Parameters
    ----------
    reference
        The reference values (1-D array or Series), e.g. the training-set scores.
    n_bins
        Numeric: quantile bins wanted (ties give fewer).
    kind
        ``"auto"`` treats numeric dtypes (not bool) as numeric and the rest as categorical.
    max_levels
        Categorical: keep this many most frequent levels; rarer ones are pooled with the
        unseen levels in ``(other)``.
    name
        Defaults to the Series name.

    Examples
    --------
    >>> b = fit_bins([1.0, 2.0, 3.0, 4.0], n_bins=2)
    >>> b.labels
    ('(-inf, 2.5]', '(2.5, inf]', '(missing)')
    >>> Bins.from_dict(b.to_dict()) == b
    True
    """
    s = reference if isinstance(reference, pd.Series) else pd.Series(np.asarray(reference))
    if s.ndim != 1:
        raise ConfigError(f"fit_bins needs one variable (1-D); got shape {s.shape!r}.")
    if name is None and s.name is not None:
        name = str(s.name)
    if len(s) == 0:
        raise ConfigError(f"The reference sample of {name!r} is empty: nothing to fit bins on.")
    n_bins = check_n_bins(n_bins)
    if kind == "auto":
        kind = _infer_kind(s, name)
    if kind == "numeric":
        x = _numeric(s, name=name)
        cuts = tuple(float(c) for c in quantile_cuts(x, n_bins))
        levels: tuple[str, ...] = ()
    elif kind == "categorical":
        if isinstance(max_levels, bool) or not isinstance(max_levels, int) or max_levels < 1:
            raise ConfigError(f"max_levels must be an integer >= 1; got {max_levels!r}.")
        freq = _string_counts(s)
        # Most frequent first; ties by name, so the same data always gives the same bins.
        order = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:max_levels]
        levels = tuple(sorted(level for level, _ in order))
        cuts = ()
    else:
        raise ConfigError(f"kind must be 'auto', 'numeric' or 'categorical'; got {kind!r}.")
    shell = Bins(
        kind, cuts, levels, (0,) * ((len(cuts) if kind == "numeric" else len(levels)) + 2), name
    )
    counts = shell.counts(s)
    return Bins(kind, cuts, levels, tuple(int(c) for c in counts), name)


def fit_frame_bins(
    reference: pd.DataFrame,
    *,
    n_bins: int = 10,
    max_levels: int = 50,
    categorical: list[str] | tuple[str, ...] = (),
) -> dict[str, Bins]:
    """:func:`fit_bins` for every column of a reference frame (``categorical`` forces kind)."""
    if not isinstance(reference, pd.DataFrame):
        raise ConfigError(
            f"fit_frame_bins needs a pandas DataFrame; got {type(reference).__name__}."
        )
    unknown = sorted(set(categorical) - set(map(str, reference.columns)))
    if unknown:
        raise ConfigError(
            f"categorical names column(s) {unknown!r} that the reference frame lacks; "
            f"columns: {list(map(str, reference.columns))[:20]!r}."
        )
    return {
        str(col): fit_bins(
            reference[col],
            n_bins=n_bins,
            kind="categorical" if str(col) in categorical else "auto",
            max_levels=max_levels,
            name=str(col),
        )
        for col in reference.columns
    }


@dataclass(frozen=True, eq=False)
class PSIResult:
    """PSI (or CSI) of one variable with its per-bin table.

    Attributes
    ----------
    name
        The variable.
    value
        The index (see the module docstring).
    level
        ``stable``, ``moderate`` or ``significant``.
    table
        Per bin: ``bin``, ``ref_count``, ``ref_share``, ``cur_count``, ``cur_share`` and
        ``contribution`` to the index.
    bins
        The frozen bins used.
    epsilon
        The floor applied to shares.
    """

    name: str | None
    value: float
    level: str
    table: pd.DataFrame
    bins: Bins
    epsilon: float

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, NaN as ``None``, the bins included."""
        return jsonable(
            {
                "name": self.name,
                "value": self.value,
                "level": self.level,
                "epsilon": self.epsilon,
                "table": self.table,
                "bins": self.bins.to_dict(),
            }
        )


def psi(bins: Bins, current: Any, *, epsilon: float = EPSILON) -> PSIResult:
    """PSI of a current sample against the reference the bins were fitted on.

    Examples
    --------
    >>> b = fit_bins([1.0, 1.0, 2.0, 2.0], n_bins=2)
    >>> round(psi(b, [1.0, 2.0, 2.0, 2.0]).value, 4)
    0.2747
    """
    if not isinstance(bins, Bins):
        raise ConfigError(
            f"psi needs frozen Bins (from fit_bins or Bins.from_dict); got {type(bins).__name__}."
        )
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, int | float)
        or not (0.0 < epsilon < 0.1)
    ):
        raise ConfigError(f"epsilon must be a small positive share in (0, 0.1); got {epsilon!r}.")
    cur = bins.counts(current)
    n_cur = int(cur.sum())
    if n_cur == 0:
        raise ConfigError(f"The current sample of {bins.name!r} is empty: no PSI to compute.")
    ref = np.asarray(bins.reference_counts, dtype=np.int64)
    n_ref = int(ref.sum())
    if n_ref == 0:
        raise ConfigError(f"The reference counts of {bins.name!r} are all 0: refit the bins.")
    ref_share = ref / n_ref
    cur_share = cur / n_cur
    p = np.maximum(ref_share, epsilon)
    q = np.maximum(cur_share, epsilon)
    contribution = (q - p) * np.log(q / p)
    value = float(contribution.sum())
    table = pd.DataFrame(
        {
            "bin": list(bins.labels),
            "ref_count": ref,
            "ref_share": ref_share,
            "cur_count": cur.astype(np.int64),
            "cur_share": cur_share,
            "contribution": contribution,
        }
    )
    return PSIResult(bins.name, value, psi_level(value), table, bins, float(epsilon))


def csi(
    bins: Mapping[str, Bins], current: pd.DataFrame, *, epsilon: float = EPSILON
) -> dict[str, PSIResult]:
    """CSI of every binned feature of a current frame (one :func:`psi` per column).

    Examples
    --------
    >>> ref = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "a", "b", "b"]})
    >>> out = csi(fit_frame_bins(ref, n_bins=2), ref)
    >>> {k: r.value for k, r in out.items()}
    {'x': 0.0, 'c': 0.0}
    """
    if not isinstance(current, pd.DataFrame):
        raise ConfigError(f"csi needs a pandas DataFrame; got {type(current).__name__}.")
    cols = set(map(str, current.columns))
    absent = [name for name in bins if name not in cols]
    if absent:
        raise ConfigError(
            f"The current frame lacks feature(s) {absent[:10]!r} that the reference bins "
            f"cover; its columns: {sorted(cols)[:20]!r}."
        )
    by_name = {str(c): c for c in current.columns}
    return {name: psi(b, current[by_name[name]], epsilon=epsilon) for name, b in bins.items()}
