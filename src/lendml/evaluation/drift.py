"""Drift of features and scores against the training reference, as credit validators measure it.

A :class:`DriftReference` is fitted once, on the training rows, and frozen (plain JSON,
stored with the model): per variable the PSI bins (:func:`lendml.evaluation.fit_bins`),
the missing rate, the reference levels of a categorical variable, and the reference's
empirical CDF at its percentiles. :func:`measure_drift` compares a current sample (a day
or a week of the prediction log) with it and returns, per variable:

* **PSI / CSI** on the frozen bins, with an alert threshold that accounts for sample size
  and bin count. Under no drift, ``PSI · n_eff`` is approximately χ² with ``B − 1``
  degrees of freedom, ``1/n_eff = 1/n_ref + 1/n_cur`` (PSI is a symmetrised
  Kullback–Leibler divergence; Yurdakul 2018, "Statistical properties of the population
  stability index"). So the noise floor of the PSI at ``α`` is
  ``χ²_{B−1}(1 − α) / n_eff``: with 10 bins it is 0.22 at 100 current rows and 0.002 at
  10,000. A variable alerts only when its PSI is above **both** the practical rule
  (0.10 moderate, 0.25 significant) and that floor — the fixed 0.1 rule alone fires on
  identical distributions at small n.
* **Jensen–Shannon distance** (base 2, in [0, 1]) of the bin shares (SciPy).
* **Kolmogorov–Smirnov** (numeric variables): the largest gap between the reference CDF,
  known exactly at its 101 percentiles, and the current CDF at the same points — a lower
  bound of the two-sample statistic, within one percentile of it — with the asymptotic
  p-value for ``n_eff`` (SciPy's ``kstwobign``).
* **Missing rate** then and now, with a two-proportion χ² test (SciPy); an alert when the
  change is significant at ``α`` and at least ``missing_change`` in absolute terms.
* **Unseen categories** (categorical variables): the share of current rows whose level
  never occurred in the reference; an alert at ``unseen_share`` or more.

Hand-written here: only the percentile-CDF comparison (to avoid storing the reference
rows) and the sample-size threshold; every statistic's distribution comes from SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from lendml.errors import ConfigError, DataValidationError
from lendml.evaluation.stability import PSI_MODERATE, PSI_SIGNIFICANT, Bins, fit_bins, psi

REFERENCE_FORMAT = 1
SCORE = "__score__"
_PERCENTILES = np.linspace(0.0, 100.0, 101)
_MAX_LEVELS = 1000  # categorical levels remembered to tell "unseen" from "rare"


@dataclass(frozen=True)
class VariableReference:
    """The frozen reference of one variable (a feature or the score)."""

    name: str
    kind: Literal["numeric", "categorical"]
    bins: Bins
    n: int
    missing_rate: float
    cdf_at: tuple[float, ...] = ()  # numeric: distinct percentile values of the reference
    cdf: tuple[float, ...] = ()  # share of reference rows <= each of them
    levels: tuple[str, ...] = ()  # categorical: every level seen (up to 1,000)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "bins": self.bins.to_dict(),
            "n": self.n,
            "missing_rate": self.missing_rate,
            "cdf_at": list(self.cdf_at),
            "cdf": list(self.cdf),
            "levels": list(self.levels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariableReference:
        try:
            return cls(
                name=str(data["name"]),
                kind=data["kind"],
                bins=Bins.from_dict(data["bins"]),
                n=int(data["n"]),
                missing_rate=float(data["missing_rate"]),
                cdf_at=tuple(float(v) for v in data.get("cdf_at", ())),
                cdf=tuple(float(v) for v in data.get("cdf", ())),
                levels=tuple(str(v) for v in data.get("levels", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"The drift reference of {data.get('name')!r} is malformed ({exc!r}); fit it "
                "again with fit_drift_reference()."
            ) from exc


@dataclass(frozen=True)
class DriftReference:
    """Frozen references of the features (and the score) a model was trained on."""

    variables: dict[str, VariableReference]
    score: VariableReference | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (store it with the model version)."""
        return {
            "format": REFERENCE_FORMAT,
            "variables": [v.to_dict() for v in self.variables.values()],
            "score": self.score.to_dict() if self.score is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        """Rebuild a reference written by :meth:`to_dict`; anything malformed is refused."""
        if not isinstance(data, Mapping) or data.get("format") != REFERENCE_FORMAT:
            raise ConfigError(
                "Not a lendml drift reference (format "
                f"{data.get('format') if isinstance(data, Mapping) else None!r}, expected "
                f"{REFERENCE_FORMAT}); fit it again with fit_drift_reference()."
            )
        variables = [VariableReference.from_dict(v) for v in data.get("variables", [])]
        score = data.get("score")
        return cls(
            variables={v.name: v for v in variables},
            score=VariableReference.from_dict(score) if score else None,
        )


def _fit_variable(
    values: pd.Series, name: str, kind: Literal["auto", "numeric", "categorical"], n_bins: int
) -> VariableReference:
    bins = fit_bins(values, n_bins=n_bins, kind=kind, name=name)
    missing = values.isna().to_numpy()
    n = len(values)
    ref = VariableReference(
        name=name,
        kind=bins.kind,
        bins=bins,
        n=n,
        missing_rate=float(missing.mean()) if n else 0.0,
    )
    if bins.kind == "numeric":
        x = np.sort(pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)[~missing])
        x = x[np.isfinite(x)]
        if len(x):
            at = np.unique(np.percentile(x, _PERCENTILES))
            cdf = np.searchsorted(x, at, side="right") / len(x)
            ref = VariableReference(
                **{**ref.__dict__, "cdf_at": tuple(map(float, at)), "cdf": tuple(map(float, cdf))}
            )
    else:
        counts = values.dropna().astype(str).value_counts()
        levels = tuple(sorted(counts.index[:_MAX_LEVELS]))
        ref = VariableReference(**{**ref.__dict__, "levels": levels})
    return ref


def fit_drift_reference(
    frame: pd.DataFrame,
    *,
    score: Sequence[float] | np.ndarray | pd.Series | None = None,
    categorical: Sequence[str] = (),
    n_bins: int = 10,
) -> DriftReference:
    """Freeze the reference distributions of ``frame``'s columns (and of ``score``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> ref = fit_drift_reference(pd.DataFrame({"dti": rng.normal(size=5000)}))
    >>> same = measure_drift(ref, pd.DataFrame({"dti": rng.normal(size=200)}))
    >>> bool(same.table.loc[0, "alert"])
    False
    """
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise DataValidationError("fit_drift_reference needs a non-empty DataFrame of features.")
    unknown = sorted(set(categorical) - set(map(str, frame.columns)))
    if unknown:
        raise ConfigError(f"categorical names column(s) {unknown!r} that the frame lacks.")
    variables = {
        str(c): _fit_variable(
            frame[c], str(c), "categorical" if str(c) in categorical else "auto", n_bins
        )
        for c in frame.columns
    }
    score_ref = None
    if score is not None:
        s = pd.Series(np.asarray(score, dtype=float))
        if len(s) != len(frame):
            raise DataValidationError(
                f"score has {len(s)} values but the frame {len(frame)} rows; pass one per row."
            )
        score_ref = _fit_variable(s, SCORE, "numeric", n_bins)
    return DriftReference(variables=variables, score=score_ref)


@dataclass(frozen=True)
class DriftSettings:
    """Alert rules (``monitoring.drift`` in lendml.yaml)."""

    alpha: float = 0.01
    psi_moderate: float = PSI_MODERATE
    psi_significant: float = PSI_SIGNIFICANT
    missing_change: float = 0.02
    unseen_share: float = 0.01
    min_rows: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"alpha must be in (0, 0.5); got {self.alpha!r}.")
        if not 0 < self.psi_moderate <= self.psi_significant:
            raise ConfigError(
                "psi_moderate must be positive and at most psi_significant; got "
                f"{self.psi_moderate!r} and {self.psi_significant!r}."
            )


def psi_noise_floor(n_reference: int, n_current: int, n_bins: int, alpha: float) -> float:
    """The PSI that identical distributions exceed with probability ``alpha`` (see above).

    Examples
    --------
    >>> round(psi_noise_floor(100_000, 100, 10, 0.01), 3)
    0.217
    """
    if n_reference <= 0 or n_current <= 0 or n_bins < 2:
        return math.inf
    inv_n_eff = 1.0 / n_reference + 1.0 / n_current
    return float(stats.chi2.ppf(1.0 - alpha, n_bins - 1) * inv_n_eff)


@dataclass(frozen=True)
class DriftResult:
    """Drift of every variable of one current sample; ``table`` has one row per variable."""

    table: pd.DataFrame
    n_rows: int
    settings: DriftSettings = field(default_factory=DriftSettings)

    @property
    def alerts(self) -> list[str]:
        """Variables that alert, in table order."""
        return [str(v) for v in self.table.loc[self.table["alert"], "variable"]]

    def to_dict(self) -> dict[str, Any]:
        rows = self.table.astype(object).where(self.table.notna(), None).to_dict("records")
        return {"n_rows": self.n_rows, "alerts": self.alerts, "variables": rows}


def _measure(ref: VariableReference, values: pd.Series, settings: DriftSettings) -> dict[str, Any]:
    n = len(values)
    result = psi(ref.bins, values)
    shares = result.table
    used = int(
        (shares["ref_count"] > 0).sum()
        + ((shares["ref_count"] == 0) & (shares["cur_count"] > 0)).sum()
    )
    floor = psi_noise_floor(ref.n, n, max(used, 2), settings.alpha)
    js = float(jensenshannon(shares["ref_share"], shares["cur_share"], base=2))
    missing = values.isna().to_numpy()
    miss_now = float(missing.mean())
    miss_p = math.nan
    n_miss_ref = round(ref.missing_rate * ref.n)
    table = np.array(
        [[n_miss_ref, ref.n - n_miss_ref], [int(missing.sum()), n - int(missing.sum())]]
    )
    if table[:, 0].sum() > 0 and table[:, 1].sum() > 0:
        miss_p = float(stats.chi2_contingency(table, correction=False).pvalue)
    row: dict[str, Any] = {
        "variable": ref.name,
        "kind": ref.kind,
        "n": n,
        "psi": result.value,
        "psi_noise_floor": floor,
        "psi_level": (
            "stable"
            if result.value < max(settings.psi_moderate, floor)
            else "moderate"
            if result.value < max(settings.psi_significant, floor)
            else "significant"
        ),
        "js": js,
        "ks": math.nan,
        "ks_pvalue": math.nan,
        "missing_reference": ref.missing_rate,
        "missing_current": miss_now,
        "missing_pvalue": miss_p,
        "unseen_share": math.nan,
        "unseen_levels": "",
    }
    if ref.kind == "numeric" and ref.cdf_at:
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        if len(x):
            # current CDF at the reference's percentile points: count values <= each point
            idx = np.searchsorted(np.asarray(ref.cdf_at), x, side="left")
            cur_cdf = np.cumsum(np.bincount(idx, minlength=len(ref.cdf_at) + 1))[:-1] / len(x)
            d = float(np.max(np.abs(cur_cdf - np.asarray(ref.cdf))))
            n_ref = ref.n * (1 - ref.missing_rate)
            n_eff = n_ref * len(x) / (n_ref + len(x))
            row["ks"] = d
            row["ks_pvalue"] = float(stats.kstwobign.sf(d * math.sqrt(n_eff)))
    if ref.kind == "categorical":
        text = values.dropna().astype(str)
        known = set(ref.levels)
        unseen = text[~text.isin(known)]
        row["unseen_share"] = len(unseen) / n if n else 0.0
        row["unseen_levels"] = ", ".join(sorted(unseen.unique())[:5])
    enough = n >= settings.min_rows
    row["alert_psi"] = bool(enough and row["psi_level"] != "stable")
    row["alert_missing"] = bool(
        enough
        and not math.isnan(miss_p)
        and miss_p < settings.alpha
        and abs(miss_now - ref.missing_rate) >= settings.missing_change
    )
    row["alert_unseen"] = bool(
        enough and ref.kind == "categorical" and row["unseen_share"] >= settings.unseen_share
    )
    row["alert"] = row["alert_psi"] or row["alert_missing"] or row["alert_unseen"]
    return row


def measure_drift(
    reference: DriftReference,
    current: pd.DataFrame,
    *,
    score: Sequence[float] | np.ndarray | pd.Series | None = None,
    settings: DriftSettings | None = None,
) -> DriftResult:
    """Drift of ``current`` (and its ``score``) against ``reference``, one row per variable.

    Variables of the reference missing from ``current`` are refused; extra columns are
    ignored. With fewer than ``settings.min_rows`` rows the figures are computed but
    nothing alerts.
    """
    settings = settings or DriftSettings()
    if not isinstance(current, pd.DataFrame):
        raise DataValidationError(
            f"measure_drift needs a pandas DataFrame; got {type(current).__name__}."
        )
    absent = [name for name in reference.variables if name not in current.columns]
    if absent:
        raise DataValidationError(
            f"The current sample lacks variable(s) {absent[:10]!r} of the drift reference; "
            f"its columns: {list(map(str, current.columns))[:20]!r}."
        )
    if current.empty:
        raise DataValidationError("The current sample is empty: no drift to measure.")
    rows = [_measure(ref, current[name], settings) for name, ref in reference.variables.items()]
    if score is not None:
        if reference.score is None:
            raise ConfigError("The drift reference has no score; fit it with score=...")
        s = pd.Series(np.asarray(score, dtype=float))
        rows.insert(0, _measure(reference.score, s, settings))
    return DriftResult(table=pd.DataFrame(rows), n_rows=len(current), settings=settings)


def drift_by_window(
    reference: DriftReference,
    frame: pd.DataFrame,
    *,
    time_column: str,
    every: Literal["D", "W"] = "D",
    score_column: str | None = None,
    settings: DriftSettings | None = None,
) -> pd.DataFrame:
    """:func:`measure_drift` per day (``"D"``) or ISO week (``"W"``) of ``time_column``.

    Returns one row per (window, variable) with a ``window`` column (the window's start,
    UTC) in front of :func:`measure_drift`'s columns.
    """
    if every not in ("D", "W"):
        raise ConfigError(f"every must be 'D' (daily) or 'W' (weekly); got {every!r}.")
    if time_column not in frame.columns:
        raise DataValidationError(f"No column {time_column!r} in the frame to window by.")
    t = pd.to_datetime(frame[time_column], utc=True)
    start = t.dt.floor("D")
    if every == "W":
        start = start - pd.to_timedelta(start.dt.day_of_week, unit="D")
    out = []
    for window, part in frame.groupby(start, sort=True):
        res = measure_drift(
            reference,
            part,
            score=part[score_column] if score_column else None,
            settings=settings,
        )
        out.append(res.table.assign(window=window))
    if not out:
        return pd.DataFrame()
    table = pd.concat(out, ignore_index=True)
    return table[["window", *[c for c in table.columns if c != "window"]]]


__all__ = [
    "SCORE",
    "DriftReference",
    "DriftResult",
    "DriftSettings",
    "VariableReference",
    "drift_by_window",
    "fit_drift_reference",
    "measure_drift",
    "psi_noise_floor",
]
