"""Training end to end: ready tables through the CLI, feature services through Project.train,
tracking in MLflow, and ``--reproduce`` rebuilding byte-identical LightGBM models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lendml import Project
from lendml.cli.demo import LENDING_FEATURES
from lendml.cli.main import app
from lendml.errors import ConfigError
from lendml.evaluation.drift import DriftReference
from lendml.models import ReferencePoint, load_model
from lendml.registry import tags
from tests.conftest import shared_dataset

pytestmark = pytest.mark.slow
runner = CliRunner()


def _table(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "year": rng.choice([2012, 2013, 2014], n),
            "income": rng.lognormal(10, 0.5, n),
            "utilization": rng.random(n),
            "grade": rng.choice(list("ABCD"), n),
            "noise": rng.normal(size=n),
        }
    )
    logit = -2 + 3 * df["utilization"] - 0.5 * np.log(df["income"] / 20000)
    logit += df["grade"].map({"A": -1, "B": 0, "C": 0.5, "D": 1.2})
    df["status"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "charged_off", "paid")
    df.loc[::97, "income"] = np.nan
    return df


def _cli(*args: str) -> object:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def table_csv(tmp_path):
    path = tmp_path / "loans.csv.gz"
    _table().to_csv(path, index=False)
    return path


def test_cv_on_a_csv_writes_every_figure_with_a_top_level_auc(tmp_path, table_csv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "m.json"
    res = _cli(
        "train", "--data", str(table_csv), "--label", "status", "--positive", "charged_off",
        "--drop", "id", "--drop", "year", "--cv", "3", "--param", "n_estimators=60",
        "--metrics-out", str(out),
    )
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    assert isinstance(m["auc"], float) and 0.65 < m["auc"] < 1
    folds = [f["test_auc"] for f in m["folds"]]
    assert len(folds) == 3 and m["auc"] == pytest.approx(np.mean(folds))
    assert m["split"]["mode"] == "cv"
    assert m["metrics"]["cv_auc_mean"] == pytest.approx(m["auc"])
    assert (tmp_path / "lendml-runs" / "mlflow.db").exists()  # tracked without a project


def test_out_of_time_on_parquet_with_tuning_then_reproduce(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "loans.parquet"
    df = _table()
    df["bad"] = (df.pop("status") == "charged_off").astype(int)
    df.to_parquet(data)
    out = tmp_path / "m.json"
    res = _cli(
        "train", "--data", str(data), "--label", "bad", "--drop", "id", "--time", "year",
        "--test-from", "2014", "--trials", "3", "--param", "n_estimators=80",
        "--metrics-out", str(out),
    )
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    n_test = int((df["year"] == 2014).sum())
    assert m["split"]["sizes"]["test"] == n_test
    assert m["auc"] == pytest.approx(m["metrics"]["test_auc"])
    assert m["tuning"]["n_trials"] == 3
    # no cutoff given: the reference applicant is approved just below the P(bad) that
    # approves 80% of the test year
    (manifest,) = (tmp_path / "lendml-runs").rglob(f"{m['run_id']}/**/model/lendml-model.json")
    model = load_model(manifest.parent)
    p_bad = model.predict_proba(df[df["year"] == 2014])[:, 1]
    ref = model.metadata_["reference_point"]
    assert ref["cutoff"] == pytest.approx(np.quantile(p_bad, 0.8))
    assert ref["side"] == "below" and ref["values"]["grade"] in list("ABCD")
    rerun = _cli("train", "--reproduce", m["run_id"])
    assert rerun.exit_code == 0, rerun.output
    assert "identical" in rerun.output


def test_bad_table_inputs_get_clear_errors(tmp_path, table_csv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = [
        (["--label", "nope"], "not in the data"),
        (["--label", "status", "--positive", "x"], "No label equals the positive value 'x'"),
        (["--label", "status", "--positive", "paid", "--time", "year"], "needs --test-from"),
        (["--label", "status", "--positive", "paid", "--test-from", "2014"], "needs --time"),
        (["--label", "status", "--positive", "paid", "--param", "oops"], "key=value"),
    ]
    for extra, message in cases:
        res = _cli("train", "--data", str(table_csv), "--drop", "id", *extra)
        assert res.exit_code == 2, (extra, res.output)
        assert message in res.output, (extra, res.output)
    bad = tmp_path / "loans.xlsx"
    bad.write_text("x")
    res = _cli("train", "--data", str(bad), "--label", "status")
    assert res.exit_code == 2 and "unsupported format" in res.output
    res = _cli("train", "--label", "status")
    assert res.exit_code == 2 and "exactly one of --config, --data or --reproduce" in res.output


def test_post_outcome_columns_are_refused_as_inputs(tmp_path, monkeypatch):
    """The Lending Club leakage columns, declared by `datasets import`, never reach a model."""
    monkeypatch.chdir(tmp_path)
    lending_club_folder = shared_dataset("lendingclub-2012-2014-sample")
    res = _cli("datasets", "import", "lending_club", "--path", str(lending_club_folder),
               "--leakage-path", str(lending_club_folder), "--out", str(tmp_path / "lc"))
    assert res.exit_code == 0, res.output
    (table,) = (tmp_path / "lc").glob("*.parquet")
    base = ["train", "--data", str(table), "--label", "bad", "--drop", "row_id",
            "--time", "Issue_Year", "--test-from", "2014", "--param", "n_estimators=20"]
    res = _cli(*base)  # dataset.json beside the table declares them
    assert res.exit_code == 2, res.output
    assert "declared post_outcome" in res.output and "'last_pymnt_amnt'" in res.output
    assert "--drop collection_recovery_fee" in res.output
    leak = ["collection_recovery_fee", "last_pymnt_amnt", "last_fico_range_high",
            "last_fico_range_low", "debt_settlement_flag", "settlement_status", "hardship_flag",
            "hardship_type", "hardship_status", "pymnt_plan"]
    clean = tmp_path / "clean.parquet"
    pd.read_parquet(table).to_parquet(clean)  # no description beside it: declare by hand
    res = _cli(*[a if a != str(table) else str(clean) for a in base], "--post-outcome", leak[1])
    assert res.exit_code == 2 and "'last_pymnt_amnt'" in res.output
    out = tmp_path / "m.json"
    dropped = [x for c in leak for x in ("--drop", c)]
    res = _cli(*base, *dropped, "--metrics-out", str(out))
    assert res.exit_code == 0, res.output
    assert 0.6 < json.loads(out.read_text())["auc"] < 0.75  # with the leakage it is ~0.99


def test_a_column_that_looks_protected_is_refused_until_declared(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    df = _table()
    df["gender"] = np.random.default_rng(1).choice(["f", "m"], len(df))
    path = tmp_path / "loans.parquet"
    df.to_parquet(path)
    base = ["train", "--data", str(path), "--label", "status", "--positive", "charged_off",
            "--drop", "id", "--cv", "2", "--param", "n_estimators=20"]
    res = _cli(*base)
    assert res.exit_code == 2 and "look like protected attributes" in res.output
    out = tmp_path / "m.json"
    res = _cli(*base, "--protected", "gender", "--metrics-out", str(out))
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    assert "gender" not in m["params"] and m["evaluation"] is not None


# ------------------------------------------------------------------ feature-service mode


@pytest.fixture(scope="module")
def lending_project(tmp_path_factory):
    from lendml.datasets import generate_world

    root = tmp_path_factory.mktemp("proj") / "lending"
    project = Project.init(root, name="lending")
    (project.root / "features.py").write_text(LENDING_FEATURES)
    world = project.root / "data" / "world"
    generate_world(world, borrowers=3000, months=24, shift_month=15, outcome_horizon_months=3)
    project.apply()
    apps = pq.read_table(world / "applications").to_pandas()
    outcomes = pq.read_table(world / "outcomes").to_pandas()
    people = pq.read_table(world / "borrowers").to_pandas()
    spine = apps.merge(outcomes[["application_id", "defaulted", "observed_at"]], on="application_id")
    spine = spine.merge(people[["borrower_id", "gender", "age_group"]], on="borrower_id")
    spine = spine.rename(columns={"applied_at": "as_of"})
    spine.to_parquet(project.root / "data" / "spine.parquet")
    project.close()
    return root


TRAIN_YAML = """\
name: credit_pd
feature_service: credit_v1
spine: data/spine.parquet
label: {column: defaulted, observed_at: observed_at}
protected: [gender, age_group]
inputs: {spine_columns: [loan_amount, term_months]}
split: {valid_from: "2024-03-01", test_from: "2024-07-01", folds: 2, group: borrower_id}
model: {kind: lightgbm, params: {n_estimators: 80}, monotone: {fico: -1}}
evaluation: {cutoff: 0.3}
"""


def test_project_train_tracks_lineage_and_reproduces(lending_project):
    (lending_project / "train.yaml").write_text(TRAIN_YAML)
    with Project(lending_project) as p:
        result = p.train("train.yaml")
        run = p.tracker.get_run(result.run_id)
        svc = p.get_feature_service("credit_v1")
        assert run.tags[tags.FEATURE_SERVICE_TAG] == "credit_v1"
        assert run.tags[tags.FEATURE_SERVICE_VERSION_TAG] == svc.version
        assert len(run.tags[tags.TRAINING_SET_FINGERPRINT_TAG]) == 64
        windows = json.loads(run.tags[tags.DATA_WINDOWS_TAG])
        assert windows["train"]["until"] <= windows["valid"]["from"] < windows["test"]["from"]
        assert result.metrics["test_auc"] == pytest.approx(result.auc)
        assert 0.5 < result.auc <= 1
        assert result.split["excluded"].get("label_not_observed", 0) > 0  # immature labels
        assert run.metrics["auc"] == pytest.approx(result.auc)
        assert (result.report_dir / "report.html").exists()
        assert set(result.model.schema_.names) >= {"fico", "loan_amount", "spend_90d"}
        assert not {"gender", "age_group"} & set(result.model.schema_.names)
        assert result.model.schema_["fico"].monotone == -1
        assert len(result.folds) == 2 and 0.4 < result.metrics["cv_auc_mean"] <= 1
        rep = p.reproduce(result.run_id)
        assert rep.identical and rep.data_matches
        # what serving needs travels inside the registered artifact
        loaded = p.registry.load(p.registry.register(result.run_id, "credit_pd").ref)
        meta = loaded.model.metadata_
        assert meta["run_id"] == result.run_id
        assert meta["protected"] == ["gender", "age_group"]
        assert meta["feature_service"] == "credit_v1"
        ref = ReferencePoint.from_dict(meta["reference_point"], loaded.model.schema_)
        assert ref.cutoff == 0.3 and ref.side == "below" and ref.n_rows >= 1
        assert meta["reference_probability"] < 0.3  # the reference is an approved applicant
        assert np.isfinite(ref.encoded[loaded.model.schema_.names.index("fico")])
        drift = DriftReference.from_dict(meta["drift_reference"])
        assert set(drift.variables) == set(loaded.model.schema_.names)
        assert drift.score is not None and 0 < drift.score.n <= 20_000


def test_project_train_refuses_a_protected_spine_input(lending_project):
    bad = TRAIN_YAML.replace("[loan_amount, term_months]", "[loan_amount, gender]")
    with Project(lending_project) as p, pytest.raises(ConfigError, match="Protected attributes"):
        p.train(__import__("yaml").safe_load(bad))


def test_cli_train_with_config(lending_project):
    (lending_project / "train.yaml").write_text(TRAIN_YAML)
    out = lending_project / "m.json"
    res = _cli(
        "train", "--config", str(lending_project / "train.yaml"), "--project", str(lending_project),
        "--metrics-out", str(out),
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["evaluation"]["info"]["feature_service"] == "credit_v1"


def test_cli_evaluate_a_registered_challenger_against_the_champion(lending_project):
    (lending_project / "train.yaml").write_text(TRAIN_YAML)
    with Project(lending_project) as p:
        cfg = p.train_config("train.yaml")
        first = p.train(cfg)
        second = p.train(cfg.model_copy(update={"model": cfg.model.model_copy(
            update={"params": {"n_estimators": 30, "num_leaves": 7}})}))
        v1 = p.registry.register(first.run_id, "pd_eval")
        v2 = p.registry.register(second.run_id, "pd_eval")
        p.registry.promote("pd_eval", v1.version, reason="test champion")
        rows = p.service_frame(cfg).frame
    data = lending_project / "scored.parquet"
    rows.to_parquet(data)
    out = lending_project / "eval"
    res = _cli(
        "evaluate", "--model", f"pd_eval/{v2.version}", "--champion", "pd_eval@champion",
        "--data", str(data), "--label", "defaulted", "--protected", "gender", "--cutoff", "0.3",
        "--out", str(out), "--project", str(lending_project),
    )
    assert res.exit_code == 0, res.output
    figures = json.loads((out / "evaluation.json").read_text())
    assert (out / "report.html").exists() and (out / "model_card.md").exists()
    text = json.dumps(figures)
    assert "champion" in text and "gender" in text
    res = _cli(
        "evaluate", "--model", "pd_eval@shadow", "--data", str(data), "--label", "defaulted",
        "--project", str(lending_project),
    )
    assert res.exit_code == 2 and "shadow" in res.output


@pytest.mark.parametrize(
    ("kind", "params"),
    [("scorecard", ["--param", "min_iv=0.0"]), ("torch_mlp", ["--param", "max_epochs=3"])],
)
def test_other_model_kinds_train_track_and_reproduce(tmp_path, monkeypatch, kind, params):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "loans.parquet"
    df = _table(900)
    df["bad"] = (df.pop("status") == "charged_off").astype(int)
    df.to_parquet(data)
    out = tmp_path / "m.json"
    res = _cli(
        "train", "--data", str(data), "--label", "bad", "--drop", "id", "--time", "year",
        "--test-from", "2014", "--model-kind", kind, *params, "--metrics-out", str(out),
    )
    assert res.exit_code == 0, res.output
    m = json.loads(out.read_text())
    assert m["model_kind"] == kind and m["auc"] > 0.6
    rerun = _cli("train", "--reproduce", m["run_id"])
    assert rerun.exit_code == 0 and "identical" in rerun.output, rerun.output
