"""Served decisions joined to delayed outcomes: performance by vintage on mature labels."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from lendml.errors import DataValidationError
from lendml.models.lightgbm import LightGBMModel
from lendml.monitoring.performance import log_performance
from lendml.serving.prediction_log import read_prediction_log
from tests.monitoring.test_log_drift import DAY0, _applicants, _serve


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = _applicants(4000, rng)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(2 * X["dti"] - 2)))).astype(int)
    model = LightGBMModel(n_estimators=30, early_stopping_rounds=0).fit(X, y)
    root = tmp_path_factory.mktemp("perf")
    settings = _serve(model, root, days=3, version=1, rng=rng, n=300)
    log = read_prediction_log(settings, root)
    # outcomes: drawn from the served probability; bads known after 60 days, goods after 365
    p = log["probability"].to_numpy()
    bad = (rng.random(len(p)) < p).astype(int)
    outcomes = pd.DataFrame(
        {
            "customer_id": log["entity.customer_id"].to_numpy(),
            "defaulted": bad,
            "known_at": log["time"] + pd.to_timedelta(np.where(bad == 1, 60, 365), unit="D"),
        }
    )
    return log, outcomes


def test_only_outcomes_known_by_the_as_of_time_count(served):
    log, outcomes = served
    early = log_performance(
        log,
        outcomes,
        key="customer_id",
        label="defaulted",
        observed_at="known_at",
        as_of=DAY0 + timedelta(days=100),
    )
    late = log_performance(
        log,
        outcomes,
        key="customer_id",
        label="defaulted",
        observed_at="known_at",
        as_of=DAY0 + timedelta(days=400),
    )
    assert list(early["vintage"]) == ["2025-03"] and early.loc[0, "decisions"] == 900
    assert early.loc[0, "mature"] == outcomes["defaulted"].sum()  # only the bads so far
    assert early.loc[0, "bad_rate"] == 1.0
    assert late.loc[0, "mature"] == 900
    assert late.loc[0, "bad_rate"] == pytest.approx(outcomes["defaulted"].mean())
    from sklearn.metrics import roc_auc_score

    direct = roc_auc_score(outcomes["defaulted"], log["probability"])  # same row order
    assert late.loc[0, "auc"] == pytest.approx(direct) and direct > 0.5


def test_bad_outcome_tables_are_refused(served):
    log, outcomes = served
    with pytest.raises(DataValidationError, match="more than one row"):
        log_performance(
            log,
            pd.concat([outcomes, outcomes.head(2)]),
            key="customer_id",
            label="defaulted",
            observed_at="known_at",
            as_of=DAY0,
        )
    with pytest.raises(DataValidationError, match="entity.borrower_id"):
        log_performance(
            log, outcomes, key="borrower_id", label="defaulted", observed_at="known_at", as_of=DAY0
        )


def test_cli_monitor_performance(tmp_path):
    from typer.testing import CliRunner

    from lendml import Project
    from lendml.cli.main import app

    rng = np.random.default_rng(5)
    X = _applicants(2000, rng)
    model = LightGBMModel(n_estimators=10, early_stopping_rounds=0).fit(
        X, (rng.random(2000) < 0.2).astype(int)
    )
    project = Project.init(tmp_path / "proj", name="proj")
    path = project.config.prediction_log.path
    project.close()
    _serve(model, project.root, days=2, version=1, rng=rng, n=100, path=path)
    log = read_prediction_log(project.config.prediction_log, project.root)
    outcomes = pd.DataFrame(
        {
            "customer_id": log["entity.customer_id"],
            "bad": (rng.random(len(log)) < 0.3).astype(int),
            "seen": log["time"] + pd.Timedelta(days=30),
        }
    )
    outcomes.to_parquet(tmp_path / "outcomes.parquet")
    out = tmp_path / "perf.json"
    res = CliRunner().invoke(
        app,
        [
            "monitor",
            "performance",
            "--model",
            "pd",
            "--outcomes",
            str(tmp_path / "outcomes.parquet"),
            "--key",
            "customer_id",
            "--label",
            "bad",
            "--observed-at",
            "seen",
            "--as-of",
            "2025-06-01",
            "--out",
            str(out),
            "--project",
            str(project.root),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = pd.DataFrame(json.loads(out.read_text())["vintages"])
    assert rows.loc[0, "decisions"] == 200 and rows.loc[0, "mature"] == 200
    assert rows.loc[0, "bad_rate"] == pytest.approx(outcomes["bad"].mean())
    res = CliRunner().invoke(
        app, ["monitor", "performance", "--model", "pd", "--project", str(project.root)]
    )
    assert res.exit_code == 2 and "--outcomes" in res.output
