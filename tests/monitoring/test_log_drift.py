"""Drift of served decisions: a real Parquet prediction log against the reference stored
with a registered model."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from lendml.core.config import ParquetLogSettings, TrackingSettings
from lendml.errors import ConfigError, DataValidationError
from lendml.evaluation.drift import SCORE, fit_drift_reference
from lendml.models.lightgbm import LightGBMModel
from lendml.monitoring.drift import log_drift, monitor_drift
from lendml.registry import Registry, Tracker
from lendml.serving.prediction_log import open_prediction_log, read_prediction_log
from lendml.serving.records import PredictionRecord

DAY0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday


def _applicants(n, rng, shift=0.0):
    return pd.DataFrame({"dti": rng.normal(shift, 1, n), "util": rng.random(n)})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = _applicants(4000, rng)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(X["dti"] + X["util"] - 1.5)))).astype(int)
    model = LightGBMModel(n_estimators=30, early_stopping_rounds=0).fit(X, y)
    ref = fit_drift_reference(X, score=model.predict_proba(X)[:, 1])
    root = tmp_path_factory.mktemp("monitor")
    tracker = Tracker(TrackingSettings(), root=root, default_experiment="m")
    with tracker.start_run(run_name="train") as run:
        run.log_model(model, metadata={"drift_reference": ref.to_dict()})
    registry = Registry(TrackingSettings(), root=root)
    info = registry.register(run.run_id, "pd")
    registry.promote("pd", info.version, alias="champion", reason="test")
    return model, ref, root, registry, info.version


def _serve(model, root, days, version, rng, shift_from=None, n=400, shadow=False, path="log"):
    """Write what a service would log: n decisions a day, drifted from day shift_from."""
    settings = ParquetLogSettings(path=path)
    log = open_prediction_log(settings, root)
    for d in range(days):
        X = _applicants(n, rng, 0.8 if shift_from is not None and d >= shift_from else 0.0)
        p = model.predict_proba(X)[:, 1]
        for i in range(n):
            log.submit(
                PredictionRecord(
                    request_id=uuid.uuid4().hex,
                    time=DAY0 + timedelta(days=d, seconds=i),
                    model="pd",
                    version=version,
                    entity={"customer_id": d * n + i},
                    features={"dti": float(X["dti"][i]), "util": float(X["util"][i])},
                    score=float(np.log(p[i] / (1 - p[i]))),
                    probability=float(p[i]),
                    decision="approve" if p[i] < 0.3 else "decline",
                    role="shadow" if shadow else "champion",
                )
            )
    log.close(timeout=60)
    return settings


def test_drift_is_found_on_the_day_it_starts_and_exported(trained, tmp_path):
    model, _ref, _root, registry, version = trained
    settings = _serve(
        model, tmp_path, days=5, version=version, rng=np.random.default_rng(1), shift_from=3
    )
    mon = monitor_drift(registry, settings, tmp_path, "pd@champion")
    dti = mon.table[mon.table["variable"] == "dti"].set_index("window")
    assert len(dti) == 5
    assert list(dti.index[dti["alert"]]) == [pd.Timestamp(DAY0 + timedelta(days=d)) for d in (3, 4)]
    assert not mon.table[mon.table["variable"] == "util"]["alert"].any()
    score = mon.latest.set_index("variable").loc[SCORE]
    assert score["alert"]  # a riskier population scores higher
    text = json.dumps(mon.to_dict())
    assert '"variable": "dti"' in text
    from prometheus_client import generate_latest

    metrics = generate_latest(mon.gauges()).decode()
    assert f'lendml_drift_alert{{model="pd",variable="dti",version="{version}"}} 1.0' in metrics
    weekly = monitor_drift(registry, settings, tmp_path, "pd@champion", every="W")
    assert weekly.table["window"].nunique() == 1


def test_shadow_scores_are_not_decisions(trained, tmp_path):
    model, ref, _root, _registry, version = trained
    settings = _serve(
        model, tmp_path, days=1, version=version, rng=np.random.default_rng(2), shadow=True
    )
    log = read_prediction_log(settings, tmp_path)
    with pytest.raises(DataValidationError, match="No logged record"):
        log_drift(log, ref, version=version)
    assert len(log_drift(log, ref, roles=["shadow"])) == 3  # dti, util, score


def test_a_log_without_the_model_features_is_refused(trained):
    _, ref, *_ = trained
    log = pd.DataFrame(
        {"time": [DAY0], "role": ["champion"], "probability": [0.1], "features.dti": [0.0]}
    )
    with pytest.raises(DataValidationError, match="'util'"):
        log_drift(log, ref)


def test_a_model_without_a_reference_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    X = _applicants(300, rng)
    model = LightGBMModel(n_estimators=5, early_stopping_rounds=0).fit(
        X, (X["dti"] > 0).astype(int)
    )
    tracker = Tracker(TrackingSettings(), root=tmp_path, default_experiment="m")
    with tracker.start_run(run_name="old") as run:
        run.log_model(model)
    registry = Registry(TrackingSettings(), root=tmp_path)
    registry.register(run.run_id, "old")
    with pytest.raises(ConfigError, match="no drift reference"):
        monitor_drift(registry, ParquetLogSettings(path="log"), tmp_path, "old/1")


def test_cli_monitor_drift_in_a_project(tmp_path):
    from typer.testing import CliRunner

    from lendml import Project
    from lendml.cli.main import app

    rng = np.random.default_rng(3)
    X = _applicants(3000, rng)
    y = (rng.random(3000) < 1 / (1 + np.exp(-X["dti"]))).astype(int)
    model = LightGBMModel(n_estimators=20, early_stopping_rounds=0).fit(X, y)
    project = Project.init(tmp_path / "proj", name="proj")
    ref = fit_drift_reference(X, score=model.predict_proba(X)[:, 1])
    with project.tracker.start_run(run_name="t") as run:
        run.log_model(model, metadata={"drift_reference": ref.to_dict()})
    info = project.registry.register(run.run_id, "pd")
    project.registry.promote("pd", info.version, alias="champion", reason="first")
    settings = project.config.prediction_log
    project.close()
    _serve(
        model, project.root, days=2, version=info.version, rng=rng, shift_from=1, path=settings.path
    )  # the project's default log folder
    runner = CliRunner()
    out = tmp_path / "drift.json"
    res = runner.invoke(
        app,
        [
            "monitor",
            "drift",
            "--model",
            "pd@champion",
            "--project",
            str(project.root),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 1, res.output  # the latest day drifted: non-zero for cron
    assert "ALERT" in res.output and "dti" in res.output
    assert {a["variable"] for a in json.loads(out.read_text())["alerts"]} >= {"dti"}
    res = runner.invoke(
        app,
        [
            "monitor",
            "drift",
            "--model",
            "pd@champion",
            "--project",
            str(project.root),
            "--end",
            "2025-03-04",
        ],
    )
    assert res.exit_code == 0, res.output  # the first day alone is quiet
    res = runner.invoke(
        app, ["monitor", "drift", "--model", "nope@champion", "--project", str(project.root)]
    )
    assert res.exit_code == 2 and "nope" in res.output
