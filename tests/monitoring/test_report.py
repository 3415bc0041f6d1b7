"""The monitoring dashboard and the rules of lendml.yaml, through the CLI of a real project."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lendml import Project
from lendml.cli.main import app
from lendml.evaluation.drift import fit_drift_reference
from lendml.models.lightgbm import LightGBMModel
from lendml.monitoring import Outcomes, monitoring_report
from lendml.serving.prediction_log import read_prediction_log
from tests.monitoring.test_log_drift import _applicants, _serve


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose champion served 5 days (the inputs shift on day 4) and whose
    outcomes, drawn at random, show a model that no longer ranks (decay)."""
    rng = np.random.default_rng(3)
    X = _applicants(3000, rng)
    y = (rng.random(3000) < 1 / (1 + np.exp(-2 * X["dti"]))).astype(int)
    model = LightGBMModel(n_estimators=20, early_stopping_rounds=0).fit(X, y)
    root = tmp_path_factory.mktemp("report") / "proj"
    p = Project.init(root, name="proj")
    ref = fit_drift_reference(X, score=model.predict_proba(X)[:, 1])
    with p.tracker.start_run(run_name="t") as run:
        run.log_model(model, metadata={"drift_reference": ref.to_dict()})
        run.log_metrics({"valid_auc": 0.86, "test_auc": 0.84, "auc": 0.84})
    info = p.registry.register(run.run_id, "pd")
    p.registry.promote("pd", info.version, alias="champion", reason="first")
    settings = p.config.prediction_log
    p.close()
    _serve(model, root, days=5, version=info.version, rng=rng, shift_from=3, path=settings.path)
    log = read_prediction_log(settings, root)
    outcomes = pd.DataFrame(
        {
            "customer_id": log["entity.customer_id"],
            "bad": (rng.random(len(log)) < 0.3).astype(int),  # the score no longer ranks
            "seen": log["time"] + pd.Timedelta(days=30),
        }
    )
    outcomes.to_parquet(root / "outcomes.parquet")
    return root


def _invoke(*args: str):
    return CliRunner().invoke(app, ["monitor", *args])


def _set_monitoring(root, monitoring) -> None:
    path = root / "lendml.yaml"
    raw = yaml.safe_load(path.read_text())
    if monitoring is None:
        raw.pop("monitoring", None)
    else:
        raw["monitoring"] = monitoring
    path.write_text(yaml.safe_dump(raw))


OUTCOME_ARGS = ("--key", "customer_id", "--label", "bad", "--observed-at", "seen")


def test_report_writes_a_self_contained_dashboard_and_every_figure(project, tmp_path):
    out = tmp_path / "report"
    res = _invoke(
        "report",
        "--model",
        "pd@champion",
        "--outcomes",
        str(project / "outcomes.parquet"),
        *OUTCOME_ARGS,
        "--as-of",
        "2025-06-01",
        "--out",
        str(out),
        "--project",
        str(project),
    )
    assert res.exit_code == 0, res.output
    assert "firing now: psi" in res.output and "decay 1" in res.output
    html = (out / "monitoring.html").read_text()
    assert "<script" not in html and not re.search(r"(src|href)=\"?https?:", html)
    assert html.count("<svg") == 3  # score PSI, input PSI, vintages (nothing is missing)
    assert "Score drift per window" in html and "alert threshold" in html
    assert "Realised AUC and KS" in html and "decay line 0.830" in html
    data = json.loads((out / "monitoring.json").read_text())
    assert data["version"] == 1 and data["rules"]["drift"]["psi"]["threshold"] == 0.1
    alerts = pd.DataFrame(data["alerts"])
    assert set(alerts.columns) >= {"rule", "variable", "window", "value", "threshold", "detail"}
    psi = alerts[alerts["rule"] == "psi"]
    assert set(psi["window"]) == {"2025-03-06", "2025-03-07"} and "dti" in set(psi["variable"])
    assert (psi["value"] >= psi["threshold"]).all()
    [decay] = alerts[alerts["rule"] == "decay"].to_dict("records")
    assert decay["window"] == "2025-03" and decay["threshold"] == pytest.approx(0.86 - 0.03)
    assert data["performance"]["reference_auc"] == 0.86
    assert data["performance"]["vintages"][0]["mature"] == 2000
    # every row of the drift table is in the JSON, with the figures the plots draw
    assert len(data["drift"]["rows"]) == 5 * 3
    assert {"psi", "psi_threshold", "missing_current", "alert_psi"} <= set(data["drift"]["rows"][0])
    metrics = (out / "metrics.prom").read_text()
    assert 'lendml_monitoring_alerts_firing{model="pd",rule="psi",version="1"} 2.0' in metrics
    assert 'lendml_monitoring_alerts_firing{model="pd",rule="decay",version="1"} 1.0' in metrics
    assert 'lendml_monitoring_alerts_firing{model="pd",rule="ks",version="1"} 0.0' in metrics
    assert 'lendml_performance_auc{model="pd",version="1",vintage="2025-03"}' in metrics
    assert 'lendml_performance_bad_rate{model="pd",version="1",vintage="2025-03"}' in metrics
    assert 'lendml_drift_psi{model="pd",variable="dti",version="1"}' in metrics


def test_report_without_outcomes_is_drift_only(project, tmp_path):
    p = Project(project)
    try:
        report = monitoring_report(
            p.registry, p.config.prediction_log, p.root, "pd@champion", every="W"
        )
    finally:
        p.close()
    assert report.performance is None and report.drift.table["window"].nunique() == 1
    assert report.firing["decay"] == 0
    paths = report.write(tmp_path / "r")
    assert "No outcomes were given" in paths["html"].read_text()


def test_rules_of_lendml_yaml_apply_to_drift_and_performance(project, tmp_path):
    base = ("--model", "pd@champion", "--project", str(project))
    outcome = ("--outcomes", str(project / "outcomes.parquet"), *OUTCOME_ARGS)
    try:
        res = _invoke("drift", *base)
        assert res.exit_code == 1 and "psi" in res.output and "dti" in res.output
        res = _invoke("performance", *base, *outcome, "--as-of", "2025-06-01")
        assert res.exit_code == 1, res.output  # the newest vintage decays
        assert "decay" in res.output and "valid" in res.output

        _set_monitoring(
            project,
            {
                "features": {"ignore": ["dti"]},
                "drift": {"psi": {"threshold": 5.0}},
                "decay": {"auc_margin": 0.4},
            },
        )
        out = tmp_path / "drift.json"
        res = _invoke("drift", *base, "--out", str(out))
        assert res.exit_code == 0, res.output
        rows = json.loads(out.read_text())["rows"]
        assert {r["variable"] for r in rows} == {"util", "__score__"}
        perf_out = tmp_path / "perf.json"
        res = _invoke(
            "performance", *base, *outcome, "--as-of", "2025-06-01", "--out", str(perf_out)
        )
        assert res.exit_code == 0, res.output
        assert json.loads(perf_out.read_text())["alerts"] == []

        # the whole name: every version's decisions, no AUC at training to decay from
        res = _invoke("performance", "--model", "pd", "--project", str(project), *outcome)
        assert res.exit_code == 0 and "decay" not in res.output

        _set_monitoring(project, {"drift": {"psi": {"threshold": -1}}})
        res = _invoke("drift", *base)
        assert res.exit_code == 2 and "monitoring.drift.psi.threshold" in res.output
        _set_monitoring(project, {"features": {"watch": ["dtl"]}})
        res = _invoke("report", *base, "--out", str(tmp_path / "x"))
        assert res.exit_code == 2 and "monitoring.features.watch" in res.output
    finally:
        _set_monitoring(project, None)


def test_report_arguments_are_checked(project, tmp_path):
    res = _invoke("report", "--model", "pd@champion", "--project", str(project))
    assert res.exit_code == 2 and "--out" in res.output
    res = _invoke(
        "report",
        "--model",
        "pd@champion",
        "--out",
        str(tmp_path),
        "--outcomes",
        str(project / "outcomes.parquet"),
        "--project",
        str(project),
    )
    assert res.exit_code == 2 and "--key" in res.output
    res = _invoke(
        "report",
        "--model",
        "pd@champion",
        "--out",
        str(tmp_path),
        "--every",
        "M",
        "--project",
        str(project),
    )
    assert res.exit_code == 2 and "--every" in res.output
    missing = Outcomes.read  # a missing file is named
    with pytest.raises(Exception, match="nope.parquet"):
        missing(tmp_path / "nope.parquet", key="customer_id")
