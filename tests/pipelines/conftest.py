"""A small synthetic-world project with a deliberately weak champion, built once per session.

The champion reads only the application's own fields (no bureau, no transactions), so a
challenger trained on the full feature service is better by DeLong on a few hundred rows:
passes that retrain promote, which the kill-at-every-step test needs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

BORROWERS = 4000
WEAK_CHAMPION = """\
name: credit_pd
feature_service: credit_v1
spine: data/spine.parquet
label: {column: defaulted, observed_at: observed_at, cutoff: "2024-01-01"}
protected: [gender, age_group, ethnicity]
inputs:
  spine_columns: [term_months]
  exclude: [fico, utilization, delinquencies_12m, inquiries_6m, tx_count_30d, spend_90d,
            income_90d, avg_spend_30d, max_amount_30d, std_spend_90d, risky_tx_30d,
            categories_90d, spend_to_income_90d, loan_to_income]
split: {valid_from: "2023-06-01", test_from: "2023-08-01", test_until: "2023-10-01", labels_known_at: cutoff}
model: {kind: lightgbm, params: {n_estimators: 60}}
evaluation: {cutoff: 0.05}
"""
CHALLENGER = """\
name: credit_pd
feature_service: credit_v1
spine: data/spine.parquet
label: {column: defaulted, observed_at: observed_at}
protected: [gender, age_group, ethnicity]
inputs: {spine_columns: [loan_amount, term_months, stated_income]}
model: {kind: lightgbm, params: {n_estimators: 120}}
evaluation: {cutoff: 0.05}
"""
LOOP = {
    "train_config": "train.yaml",
    "every": "1d",
    "window": {"train": "365d", "valid": "60d", "test": "90d"},
    "triggers": {"schedule": "30d", "drift": False, "decay_auc_drop": None},
    # the fairness and score-PSI checks have their own tests; a weak champion's scores
    # differ a lot from a real model's
    "gate": {"min_rows": 100, "score_psi_max": 10.0, "calibration": [0.5, 2.0], "min_air": 0.01},
}


def set_loop(root: Path, **changes: object) -> None:
    """Rewrite the loop section of ``root/lendml.yaml`` (nested dicts are merged)."""
    path = root / "lendml.yaml"
    raw = yaml.safe_load(path.read_text())
    loop = dict(raw.get("loop") or {})
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(loop.get(key), dict):
            loop[key] = {**loop[key], **value}
        else:
            loop[key] = value
    raw["loop"] = loop
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="session")
def weak_champion_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lendml.pipelines.world import create_world_project

    root = tmp_path_factory.mktemp("loop") / "base"
    project, _ = create_world_project(
        root, name="loopworld", borrowers=BORROWERS, seed=11, outcome_horizon_months=3
    )
    (root / "champion.yaml").write_text(WEAK_CHAMPION)
    (root / "train.yaml").write_text(CHALLENGER)
    result = project.train("champion.yaml")
    version = project.registry.register(result.run_id, "credit_pd")
    project.registry.promote("credit_pd", version.version, reason="first model")
    project.close()
    set_loop(root, **LOOP)
    return root


@pytest.fixture
def loop_project(weak_champion_project: Path, tmp_path: Path) -> Path:
    """A private copy of the session's project (absolute paths inside are not used)."""
    dest = tmp_path / "project"
    shutil.copytree(weak_champion_project, dest)
    return dest
