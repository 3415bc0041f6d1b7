"""What training stores with a model so it can be served and watched.

The drift reference (:func:`lendml.evaluation.drift.fit_drift_reference`, frozen bins and
percentiles of every input and of the score on the training rows — at most
``DRIFT_SAMPLE_ROWS`` of them, drawn with a fixed seed) is what monitoring compares the
prediction log with.

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
from lendml.evaluation.drift import fit_drift_reference
from lendml.models import Model, ReferencePoint, reference_point

log = logging.getLogger(__name__)

DEFAULT_APPROVAL_RATE = 0.8
DRIFT_SAMPLE_ROWS = 20_000


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
    train: pd.DataFrame | None = None,
    p_bad: np.ndarray | None = None,
) -> dict[str, Any]:
    """The metadata saved inside the model artifact (``Model.metadata_`` after loading).

    Keys: ``run_id``, ``protected`` (never reasons), ``drift_reference`` (when ``train``,
    the training rows' inputs, is given), ``reference_point``
    (:meth:`ReferencePoint.to_dict`, or absent when the rows cannot give one — then a
    serving config must name a reference) and whatever ``extra`` adds. ``p_bad``: the
    model's P(bad) on ``frame`` when already computed.
    """
    out: dict[str, Any] = {"run_id": run_id, "protected": list(protected), **(extra or {})}
    if train is not None and len(train):
        sample = train
        if len(train) > DRIFT_SAMPLE_ROWS:
            sample = train.sample(DRIFT_SAMPLE_ROWS, random_state=0)
        out["drift_reference"] = fit_drift_reference(
            sample,
            score=model.predict_proba(sample)[:, 1],
            categorical=list(model.schema_.categorical),
        ).to_dict()
    if not len(frame):
        return out
    if p_bad is None or len(p_bad) != len(frame):
        p_bad = model.predict_proba(frame)[:, 1]
    cut = float(cutoff) if cutoff is not None else default_cutoff(p_bad)
    try:
        ref, p_ref = approved_reference(model, frame, p_bad, cut)
    except DataValidationError as exc:
        log.warning("No reason-code reference point stored with the model: %s", exc)
        return out
    out["reference_point"] = ref.to_dict()
    out["reference_probability"] = p_ref
    return out


def _probability(model: Model, values: dict[str, Any]) -> float:
    """P(bad) of one applicant given by readable values."""
    row = pd.DataFrame(
        {
            spec.name: pd.Series(
                [values.get(spec.name)],
                dtype=object if spec.kind == "categorical" else "float64",
            )
            for spec in model.schema_.features
        }
    )
    return float(model.predict_proba(row)[0, 1])


def approved_reference(
    model: Model, frame: pd.DataFrame, p_bad: np.ndarray, cutoff: float
) -> tuple[ReferencePoint, float]:
    """The reference applicant, and its P(bad), guaranteed below ``cutoff``.

    First the average of the applicants approved just below the cutoff. A tree model is
    not linear, so that average can itself score at or above the cutoff — and a declined
    applicant scoring between the two would then have no adverse reason. In that case the
    reference is the applicant of the same band nearest to the average (features scaled
    by their spread in the band), an applicant the cutoff approves.
    """
    ref = reference_point(model, frame, p_bad, cutoff=cutoff, side="below")
    p_ref = _probability(model, ref.values)
    if p_ref < cutoff:
        return ref, p_ref
    band = np.flatnonzero((p_bad < cutoff) & (p_bad >= cutoff - float(ref.band or 0.0)))
    X = model.schema_.encode(frame.iloc[band])
    spread = np.nanstd(X, axis=0)
    spread[~(spread > 0)] = 1.0
    gap = np.where(np.isnan(X) | np.isnan(ref.encoded), 1.0, (X - ref.encoded) / spread)
    i = int(band[np.argmin((gap**2).sum(axis=1))])
    log.info(
        "The average applicant near the cutoff scores %.4f >= %.4f; the nearest approved "
        "applicant of the band is the reference instead.",
        p_ref,
        cutoff,
    )
    nearest = reference_point(
        model,
        frame.iloc[[i]],
        p_bad[[i]],
        cutoff=cutoff,
        side="below",
        band=max(cutoff - float(p_bad[i]), 1e-12),
        min_rows=1,
    )
    return nearest, _probability(model, nearest.values)
