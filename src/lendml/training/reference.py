"""What training stores with a model so it can be served: the reason-code reference point.

Reason codes compare an applicant with one documented reference applicant
(:func:`lendml.models.reference_point`). Training picks it from the rows the model is meant
for — the out-of-time test window, or every labelled row under cross-validation — scored by
the final model: the average applicant approved just below the cutoff. The cutoff is the
evaluation cutoff of the config (approve when P(bad) < cutoff); without one, the P(bad) at
which 80% of those rows would be approved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lendml.errors import DataValidationError
from lendml.models import Model, reference_point

log = logging.getLogger(__name__)

DEFAULT_APPROVAL_RATE = 0.8


def default_cutoff(p_bad: np.ndarray, approval_rate: float = DEFAULT_APPROVAL_RATE) -> float:
    """The P(bad) below which ``approval_rate`` of the rows fall."""
    return float(np.quantile(p_bad, approval_rate))


def model_metadata(
    model: Model,
    frame: pd.DataFrame,
    *,
    run_id: str,
    cutoff: float | None,
    protected: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata saved inside the model artifact (``Model.metadata_`` after loading).

    Keys: ``run_id``, ``protected`` (never reasons), ``reference_point``
    (:meth:`ReferencePoint.to_dict`, or absent when the rows cannot give one — then a
    serving config must name a reference) and whatever ``extra`` adds.
    """
    out: dict[str, Any] = {"run_id": run_id, "protected": list(protected), **(extra or {})}
    if not len(frame):
        return out
    p_bad = model.predict_proba(frame)[:, 1]
    cut = float(cutoff) if cutoff is not None else default_cutoff(p_bad)
    try:
        ref = reference_point(model, frame, p_bad, cutoff=cut, side="below")
    except DataValidationError as exc:
        log.warning("No reason-code reference point stored with the model: %s", exc)
        return out
    out["reference_point"] = ref.to_dict()
    return out
