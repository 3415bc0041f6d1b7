"""The reason-code reference stored at training always scores below the cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lendml.models.lightgbm import LightGBMModel
from lendml.training.reference import approved_reference


def _model(seed: int, u_shape: bool):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, 6000)
    z = rng.normal(size=6000)
    risk = np.where(np.abs(x) < 0.5, 0.6, 0.1) if u_shape else 1 / (1 + np.exp(-(x - 1)))
    y = (rng.random(6000) < risk).astype(int)
    frame = pd.DataFrame({"x": x, "z": z})
    model = LightGBMModel(n_estimators=60, early_stopping_rounds=0).fit(frame, y)
    return model, frame, model.predict_proba(frame)[:, 1]


def test_an_average_applicant_the_cutoff_would_decline_is_replaced_by_a_real_one():
    # risk is high in the middle of x: applicants just below the cutoff sit on both sides,
    # so their average lands in the middle and scores far above the cutoff
    model, frame, p = _model(0, u_shape=True)
    ref, p_ref = approved_reference(model, frame, p, 0.3)
    assert p_ref < 0.3
    assert ref.n_rows == 1 and abs(ref.values["x"]) >= 0.4  # an applicant outside the middle
    i = int(np.flatnonzero(np.isclose(frame["x"], ref.values["x"]))[0])
    assert p[i] < 0.3 and p_ref == pytest.approx(p[i])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_monotone_model_keeps_the_band_average(seed):
    model, frame, p = _model(seed, u_shape=False)
    cutoff = float(np.quantile(p, 0.8))
    ref, p_ref = approved_reference(model, frame, p, cutoff)
    assert p_ref < cutoff and ref.n_rows >= 30
