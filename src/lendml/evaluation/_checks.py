"""Input checks, JSON conversion and atomic writes shared by the evaluation modules.

Every public function of :mod:`lendml.evaluation` passes its inputs through these checks,
so a bad label, a NaN score or a length mismatch fails the same way everywhere: with a
:class:`~lendml.errors.ConfigError` that names the argument, shows the bad value and says
how to fix it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lendml.errors import ConfigError

#: At most this many bad values or positions are quoted in an error message.
_QUOTE = 5


def _to_numpy(values: Any, *, name: str) -> np.ndarray:
    if isinstance(values, pd.DataFrame):
        raise ConfigError(
            f"{name} must be one column (a 1-D array or a Series), got a DataFrame with "
            f"columns {list(values.columns)[:_QUOTE]!r}. Pass the one column, e.g. frame['pd']."
        )
    arr = values.to_numpy() if isinstance(values, pd.Series | pd.Index) else np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(
            f"{name} must be 1-D (one value per row), got an array of shape {arr.shape!r}. "
            "Flatten it, or for a two-column predict_proba output take column 1."
        )
    return arr


def as_labels(values: Any, *, name: str = "y_true") -> np.ndarray:
    """Labels as an ``int8`` array of 0 (good) and 1 (bad); anything else is refused."""
    arr = _to_numpy(values, name=name)
    if arr.dtype == bool:
        return arr.astype(np.int8)
    try:
        num = pd.to_numeric(pd.Series(arr, copy=False), errors="raise").to_numpy(
            dtype=float, na_value=np.nan
        )
    except (ValueError, TypeError) as exc:
        bad = [v for v in pd.unique(pd.Series(arr, copy=False)) if not _is_01(v)][:_QUOTE]
        raise ConfigError(
            f"{name} must hold 0 (good) and 1 (bad) only; found {bad!r}. Map the outcome to "
            "1 = bad (default) and 0 = good before evaluating."
        ) from exc
    missing = int(np.isnan(num).sum())
    if missing:
        raise ConfigError(
            f"{name} has {missing:,} missing label(s) (NaN) out of {len(num):,}, first at "
            f"row(s) {np.flatnonzero(np.isnan(num))[:_QUOTE].tolist()!r}. Evaluate only rows "
            "whose outcome is observed: drop immature labels first (and say how many in "
            "info['immature_labels'])."
        )
    bad_mask = (num != 0) & (num != 1)
    if bad_mask.any():
        bad = np.unique(num[bad_mask])[:_QUOTE].tolist()
        raise ConfigError(
            f"{name} must hold 0 (good) and 1 (bad) only; found {bad!r}. Map the outcome to "
            "1 = bad (default) and 0 = good before evaluating."
        )
    return num.astype(np.int8)


def _is_01(value: Any) -> bool:
    try:
        return float(value) in (0.0, 1.0)
    except (TypeError, ValueError):
        return False


def as_scores(
    values: Any,
    *,
    name: str = "score",
    n: int | None = None,
    probability: bool = False,
) -> np.ndarray:
    """Scores as a finite ``float64`` array; NaN and infinities are refused, naming how many.

    With ``probability=True`` every score must lie in [0, 1] (a P(bad)).
    """
    arr = _to_numpy(values, name=name)
    try:
        num = (
            pd.Series(arr, copy=False).to_numpy(dtype=float, na_value=np.nan)
            if arr.dtype == object
            else arr.astype(float, copy=False)
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{name} must be numeric (a probability of the bad outcome per row); "
            f"got values such as {arr[:_QUOTE].tolist()!r}."
        ) from exc
    if n is not None and len(num) != n:
        raise ConfigError(
            f"{name} has {len(num):,} rows but y_true has {n:,}: every input must describe "
            "the same rows, in the same order."
        )
    nan = np.isnan(num)
    if nan.any():
        raise ConfigError(
            f"{name} has {int(nan.sum()):,} NaN score(s) out of {len(num):,}, first at row(s) "
            f"{np.flatnonzero(nan)[:_QUOTE].tolist()!r}. Every evaluated row needs a score: "
            "fix the scoring step or drop those rows from every input."
        )
    inf = np.isinf(num)
    if inf.any():
        raise ConfigError(
            f"{name} has {int(inf.sum()):,} infinite score(s), first at row(s) "
            f"{np.flatnonzero(inf)[:_QUOTE].tolist()!r}. Scores must be finite."
        )
    if probability and len(num) and (num.min() < 0.0 or num.max() > 1.0):
        raise ConfigError(
            f"{name} must be a probability of the bad outcome in [0, 1]; got values from "
            f"{float(num.min())!r} to {float(num.max())!r}. Pass P(bad) (e.g. "
            "predict_proba(X)[:, 1]), not a points score or a log-odds."
        )
    return num


def check_both_classes(y: np.ndarray, *, name: str = "y_true") -> None:
    """Refuse labels that hold one class only (no AUC, KS or calibration is defined)."""
    n_bad = int(y.sum())
    if len(y) == 0:
        raise ConfigError(f"{name} is empty: there is nothing to evaluate.")
    if n_bad == 0 or n_bad == len(y):
        raise ConfigError(
            f"{name} holds one class only ({n_bad:,} bad out of {len(y):,} rows): "
            "discrimination needs both goods and bads. Use a longer outcome window or a "
            "larger sample."
        )


def check_frame(frame: Any, *, name: str, n: int, against: str = "y_true") -> pd.DataFrame:
    """A DataFrame (a Series becomes a one-column frame) with ``n`` rows."""
    if isinstance(frame, pd.Series):
        frame = frame.to_frame(name=frame.name if frame.name is not None else name)
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(
            f"{name} must be a pandas DataFrame (one column per variable), got "
            f"{type(frame).__name__}."
        )
    if len(frame) != n:
        raise ConfigError(
            f"{name} has {len(frame):,} rows but {against} has {n:,}: every input must "
            "describe the same rows, in the same order."
        )
    return frame.reset_index(drop=True)


def check_fraction(value: Any, *, name: str, low: float, high: float) -> float:
    """A float strictly inside ``(low, high)``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ConfigError(f"{name} must be a number in ({low}, {high}); got {value!r}.")
    out = float(value)
    if not (low < out < high):
        raise ConfigError(f"{name} must be a number in ({low}, {high}); got {value!r}.")
    return out


def check_n_bins(value: Any, *, name: str = "n_bins", low: int = 2) -> int:
    """An integer number of bins, at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}; got {value!r}.")
    return int(value)


# --- JSON ---------------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """Plain JSON types: NaN and infinities become ``None``, numpy scalars plain numbers."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, pd.DataFrame):
        return [
            {str(k): jsonable(v) for k, v in zip(obj.columns, row, strict=True)}
            for row in obj.itertuples(index=False, name=None)
        ]
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray | pd.Series):
        return [jsonable(v) for v in obj]
    if isinstance(obj, pd.Timestamp | dt.datetime | dt.date):
        return obj.isoformat()
    if obj is pd.NaT or obj is pd.NA:
        return None
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    return str(obj)


def dumps(obj: Any) -> str:
    """Strict JSON text (no ``NaN`` tokens), keys in insertion order."""
    return json.dumps(jsonable(obj), indent=2, allow_nan=False, ensure_ascii=False)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A unique sibling name opened with "x" (not mkstemp, whose 0600 mode would outlive
    # the rename): the final file gets the permissions any other file written here gets.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
