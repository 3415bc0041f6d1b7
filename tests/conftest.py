"""Shared fixtures: a seed (LENDML_TEST_SEED sweeps others), projects, data paths."""

from __future__ import annotations

import os
from pathlib import Path

# Tests run two workers on two cores: one OpenMP thread each keeps LightGBM from
# oversubscribing (its threads spin-wait and slow down many times under contention).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def seed() -> int:
    return int(os.environ.get("LENDML_TEST_SEED", "42"))


def shared_dataset(name: str) -> Path:
    """A folder of ../shared/data; skipped locally if absent, a failure on CI."""
    path = SHARED_DATA / name
    if not path.exists():
        if ON_CI:
            pytest.fail(f"CI must have the shared dataset {path}")
        pytest.skip(f"shared dataset {path} not present")
    return path
