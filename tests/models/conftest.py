"""Small synthetic credit data for the model tests: numeric, categorical, missing values."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

LEVELS = ("rent", "own", "mortgage", "other", "family")


def credit_frame(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` rows whose bad outcome depends on ``dti``, ``utilization`` and ``housing``.

    ``dti`` has 10% missing values, ``housing`` 5%; ``noise`` carries no signal.
    """
    dti = rng.normal(size=n)
    dti[rng.random(n) < 0.10] = np.nan
    utilization = rng.uniform(size=n)
    housing = rng.choice(np.asarray(LEVELS, dtype=object), size=n)
    housing[rng.random(n) < 0.05] = None
    effect = np.select([housing == "rent", housing == "own"], [0.8, -0.8], 0.0)
    logit = -1.0 + 1.2 * np.nan_to_num(dti) + 1.5 * utilization + effect
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(
        {
            "dti": dti,
            "housing": pd.Series(list(housing)),
            "utilization": utilization,
            "noise": rng.normal(size=n),
        }
    )
    return frame, y


@dataclass(frozen=True)
class CreditData:
    X: pd.DataFrame
    y: np.ndarray
    X_valid: pd.DataFrame
    y_valid: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray


@pytest.fixture(scope="session")
def data_seed() -> int:
    """The seed of the shared data (``LENDML_TEST_SEED`` sweeps others)."""
    return int(os.environ.get("LENDML_TEST_SEED", "42"))


@pytest.fixture(scope="session")
def credit(data_seed: int) -> CreditData:
    rng = np.random.default_rng(data_seed)
    X, y = credit_frame(600, rng)
    X_valid, y_valid = credit_frame(300, rng)
    X_test, y_test = credit_frame(1000, rng)
    return CreditData(X, y, X_valid, y_valid, X_test, y_test)
