"""``lendml score`` end to end: a registered champion scores a file, with reasons; errors
exit 2 with a message and leave no output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lendml import Project
from lendml.cli.main import app
from lendml.models import TreeExplainer, reason_codes
from lendml.models.compiled import CompiledScorer

from .test_batch import FEATURES, applicants

runner = CliRunner()


@pytest.fixture(scope="module")
def trained():
    """A small model with a reference point and ``age`` recorded as protected."""
    from lendml.models import reference_point
    from lendml.models.lightgbm import LightGBMModel

    X, y = applicants(1500, 11)
    model = LightGBMModel(n_estimators=10, num_leaves=7, early_stopping_rounds=0).fit(
        X[FEATURES], y
    )
    p_bad = model.predict_proba(X[FEATURES])[:, 1]
    ref = reference_point(model, X[FEATURES], p_bad, cutoff=0.5, side="below")
    return model, {"reference_point": ref.to_dict(), "protected": ["age"]}


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    """The model as an artifact folder."""
    from lendml.models import load_model

    model, metadata = trained
    folder = tmp_path_factory.mktemp("artifact") / "model"
    model.save(folder, metadata=metadata)
    return folder, load_model(folder)


@pytest.fixture(scope="module")
def project(trained, tmp_path_factory):
    """A project whose registry holds the model as credit_pd version 1, the champion.
    (Creating the MLflow database takes seconds.)"""
    model, metadata = trained
    p = Project.init(tmp_path_factory.mktemp("cli") / "credit")
    with p.tracker.start_run(experiment="credit") as run:
        run.log_model(model, metadata=metadata)
    version = p.registry.register(run.run_id, "credit_pd")
    p.registry.promote("credit_pd", version.version, reason="first model", user="test")
    return p


def score(*args: str):
    return runner.invoke(app, ["score", *args])


@pytest.mark.slow
def test_score_a_registered_champion_with_reasons(project, tmp_path) -> None:
    frame, _ = applicants(700, 12)
    frame.to_parquet(tmp_path / "book.parquet")
    res = score(
        "--model",
        "credit_pd@champion",
        "--input",
        str(tmp_path / "book.parquet"),
        "--output",
        str(tmp_path / "scores.parquet"),
        "--reasons",
        "--keep",
        "application_id",
        "--chunk-rows",
        "256",
        "--json",
        "--project",
        str(project.root),
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["model"] == "credit_pd/1" and summary["rows"] == 700
    assert summary["chunks"] == 3 and summary["backend"] == "lleaves"
    assert summary["excluded"] == ["age"]
    assert summary["reference"]["source"] == "model metadata"

    loaded = project.registry.load("credit_pd@champion")
    model = loaded.model
    out = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    assert out["application_id"].tolist() == frame["application_id"].tolist()
    assert np.max(np.abs(out["score"] - model.decision_function(frame))) <= 1e-9
    from lendml.models import ReferencePoint

    ref = ReferencePoint.from_dict(model.metadata_["reference_point"], model.schema_)
    phi = TreeExplainer.from_model(model).contributions(model.schema_.encode(frame), ref)
    first = [r[0].code if r else None for r in reason_codes(phi, FEATURES, exclude=["age"])]
    assert [None if pd.isna(c) else c for c in out["reason_1"]] == first

    # the compiled object sits in the project's model cache, and the next run loads it
    compiled = project.root / "data" / "model-cache" / ".compiled"
    assert len(list(compiled.glob("*.lleaves"))) == 1
    again = CompiledScorer.from_model(model, cache_dir=compiled)
    assert again.from_cache_


def test_score_a_model_folder_without_a_project(saved, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LENDML_COMPILED_CACHE", str(tmp_path / "cache"))
    folder, model = saved
    frame, _ = applicants(50, 13)
    frame.to_csv(tmp_path / "book.csv", index=False)
    res = score(
        "--model-path",
        str(folder),
        "--input",
        str(tmp_path / "book.csv"),
        "--output",
        str(tmp_path / "scores.parquet"),
    )
    assert res.exit_code == 0, res.output
    assert "Scored 50 rows" in res.stdout and "lleaves" in res.stdout
    out = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    assert np.max(np.abs(out["score"] - model.decision_function(frame))) <= 1e-9
    assert list((tmp_path / "cache").glob("*.lleaves"))


def test_errors_exit_2_and_leave_no_output(saved, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LENDML_COMPILED_CACHE", str(tmp_path.parent / f"{tmp_path.name}-cache"))
    frame, _ = applicants(50, 14)
    frame.drop(columns=["dti"]).to_parquet(tmp_path / "book.parquet")
    common = ["--input", str(tmp_path / "book.parquet"), "--output", str(tmp_path / "o.parquet")]
    res = score("--model-path", str(saved[0]), *common)
    assert res.exit_code == 2
    assert "DataValidationError" in res.stderr and "'dti'" in res.stderr
    assert not (tmp_path / "o.parquet").exists()
    res = score("--model-path", str(saved[0]), *common, "--reasons", "--reference", "nope.json")
    assert res.exit_code == 2 and "nope.json' does not exist" in res.stderr
    res = score("--model-path", str(tmp_path / "nothing"), *common)
    assert res.exit_code == 2 and "ArtifactError" in res.stderr
    res = score(*common)
    assert res.exit_code == 2 and "--model NAME@ALIAS" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.parquet"]


@pytest.mark.slow
def test_unknown_registered_version(project, tmp_path) -> None:
    res = score(
        "--model",
        "credit_pd/7",
        "--input",
        str(tmp_path / "book.parquet"),
        "--output",
        str(tmp_path / "o.parquet"),
        "--project",
        str(project.root),
    )
    assert res.exit_code == 2 and "ModelNotFound" in res.stderr
    assert list(tmp_path.iterdir()) == []
