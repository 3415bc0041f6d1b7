"""Tracked runs: what a run records, how it ends, and trackers that do not share state."""

from __future__ import annotations

import json
import math
import platform
import shutil
import subprocess
import sys
import time

import pytest

from lendml.core.config import TrackingSettings
from lendml.errors import ConfigError, ModelNotFound, RegistryError
from lendml.registry import Tracker
from lendml.registry.tracking import MAX_PARAM_LENGTH
from tests.registry.conftest import settings


@pytest.fixture(scope="module")
def tracker(new_root) -> Tracker:
    return Tracker(settings(), root=new_root("project"), default_experiment="tests")


def test_relative_paths_resolve_against_the_project(tracker):
    with tracker.start_run(run_name="where") as run:
        run.log_text("hello", "notes/hello.txt")
    assert (tracker.root / "data" / "mlflow.db").is_file()
    assert tracker.tracking_uri == f"sqlite:///{tracker.root / 'data' / 'mlflow.db'}"
    stored = tracker.root / "data" / "mlartifacts" / "tests" / run.run_id / "artifacts"
    assert (stored / "notes" / "hello.txt").read_text() == "hello"


def test_run_records_params_metrics_tags_and_artifacts(tracker, tmp_path, monkeypatch):
    monkeypatch.setenv("LENDML_USER", "ana")
    long_value = "f" * (MAX_PARAM_LENGTH + 500)
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "summary.md").write_text("# AUC 0.81")
    with tracker.start_run(experiment="credit", run_name="r1", tags={"team": "risk"}) as run:
        run.log_params({"learning_rate": 0.05, "features": ["income", "dti"], "long": long_value})
        run.log_metrics({"auc": 0.81, "ks": float("nan")})
        run.log_metrics({"auc": 0.83}, step=2)
        run.log_dict({"b": 1, "a": [1, 2]}, "cfg/config.json")
        run.log_artifacts(folder, "report")
        run.set_tags({"stage": "dev", "lendml.feature_service": "credit_v1"})

    rec = tracker.get_run(run.run_id)
    assert rec.status == "FINISHED" and rec.run_name == "r1"
    assert rec.start_time is not None and rec.end_time >= rec.start_time
    assert rec.params["learning_rate"] == "0.05"
    assert rec.params["features"] == '["income", "dti"]'
    assert len(rec.params["long"]) == MAX_PARAM_LENGTH
    assert "truncated from 6500 characters" in rec.params["long"]
    assert rec.tags["lendml.truncated_params"] == "long"
    assert rec.metrics["auc"] == 0.83  # the latest step
    assert math.isnan(rec.metrics["ks"])
    assert rec.to_dict()["metrics"]["ks"] is None  # JSON-ready
    assert rec.tags["team"] == "risk" and rec.tags["stage"] == "dev"
    assert rec.tags["mlflow.user"] == "ana"
    assert rec.lineage == {
        "lendml.feature_service": "credit_v1",
        "lendml.code_version": rec.tags["lendml.code_version"],
    }

    out = tracker.download_artifacts(run.run_id, "lendml/params/long.txt", tmp_path / "dl")
    assert out.read_text() == long_value
    cfg = tracker.download_artifacts(run.run_id, "cfg/config.json", tmp_path / "dl")
    assert json.loads(cfg.read_text()) == {"a": [1, 2], "b": 1}
    rep = tracker.download_artifacts(run.run_id, "report", tmp_path / "dl")
    assert (rep / "summary.md").read_text() == "# AUC 0.81"


def test_run_records_environment_and_code_version(tracker, tmp_path):
    torch_was_imported = "torch" in sys.modules
    with tracker.start_run(run_name="env") as run:
        pass
    rec = tracker.get_run(run.run_id)
    from importlib.metadata import version

    assert rec.tags["lendml.version"] == version("lendml")
    assert rec.tags["lendml.python_version"] == platform.python_version()
    assert rec.tags["lendml.env.lightgbm"] == version("lightgbm")
    assert rec.tags["lendml.env.mlflow"] == version("mlflow")
    assert rec.tags["lendml.env.numpy"] == version("numpy")
    assert rec.tags["lendml.code_version"].startswith(version("lendml"))
    env = json.loads(
        tracker.download_artifacts(run.run_id, "lendml/environment.json", tmp_path).read_text()
    )
    assert env["packages"]["pandas"] == version("pandas")
    assert env["packages"]["scikit-learn"] == version("scikit-learn")
    assert env["code_version"] == rec.tags["lendml.code_version"]
    # versions come from package metadata: recording the environment never imports torch
    assert ("torch" in sys.modules) == torch_was_imported


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_run_records_the_git_commit_and_dirty_flag(tracker, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    git("add", "train.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "v1")
    head = git("rev-parse", "HEAD")
    monkeypatch.chdir(repo)

    with tracker.start_run(run_name="clean") as run:
        pass
    tags = tracker.get_run(run.run_id).tags
    assert tags["lendml.git_commit"] == head
    assert tags["lendml.git_dirty"] == "false"
    assert tags["mlflow.source.git.commit"] == head
    assert tags["lendml.code_version"].endswith(f"+g{head[:12]}")

    (repo / "train.py").write_text("print('v2')\n")
    with tracker.start_run(run_name="dirty") as run:
        pass
    tags = tracker.get_run(run.run_id).tags
    assert tags["lendml.git_dirty"] == "true"
    assert tags["lendml.code_version"].endswith(f"+g{head[:12]}.dirty")

    monkeypatch.chdir(tmp_path)  # not a repository: no git tags, the run still works
    with tracker.start_run(run_name="no-git") as run:
        pass
    tags = tracker.get_run(run.run_id).tags
    assert "lendml.git_commit" not in tags and tracker.get_run(run.run_id).status == "FINISHED"


def test_a_failing_run_ends_failed_and_the_error_propagates(tracker):
    with pytest.raises(ZeroDivisionError), tracker.start_run(run_name="boom") as run:
        run.log_metrics({"auc": 0.5})
        _ = 1 / 0
    rec = tracker.get_run(run.run_id)
    assert rec.status == "FAILED"
    assert rec.metrics["auc"] == 0.5  # what was logged before the error is kept
    assert rec.tags["lendml.error"].startswith("ZeroDivisionError")


def test_bad_inputs_are_refused_with_what_to_do(tracker):
    with tracker.start_run(run_name="bad") as run:
        with pytest.raises(ConfigError, match=r"Metric 'auc' must be a number; got 'high'"):
            run.log_metrics({"auc": "high"})
        with pytest.raises(ConfigError, match=r"'\.\./escape\.txt' must be a relative path"):
            run.log_text("x", "../escape.txt")
        with pytest.raises(ConfigError, match="needs a folder"):
            run.log_artifacts("/definitely/not/here")


def test_unknown_run_and_artifact_are_not_found(tracker, tmp_path):
    from lendml.errors import ArtifactError

    with pytest.raises(ModelNotFound, match="No run with id 'f00d'"):
        tracker.get_run("f00d")
    with tracker.start_run(run_name="empty") as run:
        pass
    with pytest.raises(ArtifactError, match="has no artifact 'model'; it has: lendml"):
        tracker.download_artifacts(run.run_id, "model", tmp_path)


def test_search_runs_filters_and_names_unknown_experiments(tracker):
    with tracker.start_run(experiment="search", run_name="a") as a:
        a.log_metrics({"auc": 0.7})
    with tracker.start_run(experiment="search", run_name="b") as b:
        b.log_metrics({"auc": 0.9})
    found = tracker.search_runs("search", filter="metrics.auc > 0.8")
    assert [r.run_id for r in found] == [b.run_id]
    assert {r.run_id for r in tracker.search_runs("search")} == {a.run_id, b.run_id}
    with pytest.raises(ModelNotFound, match=r"No experiment named 'nope'; existing .*search"):
        tracker.search_runs("nope")


def test_two_trackers_on_two_uris_do_not_cross_talk(tracker, new_root):
    import mlflow

    global_uri = mlflow.get_tracking_uri()
    other_root = new_root("other")
    other = Tracker(settings(), root=other_root, default_experiment="tests")
    assert other.tracking_uri != tracker.tracking_uri
    with (
        other.start_run(run_name="in-other") as run_b,
        tracker.start_run(run_name="in-main") as run_a,
    ):
        run_b.log_params({"where": "other"})
        run_a.log_params({"where": "main"})
    assert tracker.get_run(run_a.run_id).params == {"where": "main"}
    assert other.get_run(run_b.run_id).params == {"where": "other"}
    with pytest.raises(ModelNotFound):
        tracker.get_run(run_b.run_id)
    with pytest.raises(ModelNotFound):
        other.get_run(run_a.run_id)
    assert [r.run_id for r in other.search_runs("tests")] == [run_b.run_id]
    stored = other_root / "data" / "mlartifacts" / "tests" / run_b.run_id
    assert stored.is_dir()
    assert mlflow.get_tracking_uri() == global_uri  # MLflow's global state untouched


def test_an_unreachable_tracking_server_fails_fast(unreachable_tracking, tmp_path):
    tracker = Tracker(unreachable_tracking, root=tmp_path)
    started = time.monotonic()
    with (
        pytest.raises(RegistryError, match=r"http://127\.0\.0\.1:9.*reachable"),
        tracker.start_run(run_name="never"),
    ):
        pytest.fail("a run started on an unreachable server")
    assert time.monotonic() - started < 20


def test_settings_with_credentials_are_not_echoed(tmp_path):
    secret = TrackingSettings(uri="postgresql://ana:s3cret@db.internal:5432/mlflow")
    tracker = Tracker(secret, root=tmp_path)
    assert "s3cret" not in repr(tracker) and "ana:***@" in repr(tracker)


def test_artifact_root_resolution(tmp_path):
    from lendml.registry._backend import resolve_artifact_root, resolve_tracking_uri

    assert resolve_artifact_root("data/art", tmp_path) == (tmp_path / "data" / "art").as_uri()
    assert resolve_artifact_root("s3://bucket/lendml", tmp_path) == "s3://bucket/lendml"
    assert resolve_artifact_root("", tmp_path) is None
    # a local folder means nothing to a tracking server: the server's store is used
    assert resolve_artifact_root("data/art", tmp_path, "https://mlflow.internal") is None
    absolute = f"sqlite:///{tmp_path / 'abs' / 'x.db'}"
    assert resolve_tracking_uri(absolute, tmp_path / "elsewhere") == absolute
    assert (tmp_path / "abs").is_dir()  # SQLite does not create folders; lendml does
    assert resolve_tracking_uri("sqlite:///rel/x.db?timeout=20", tmp_path) == (
        f"sqlite:///{tmp_path.resolve() / 'rel' / 'x.db'}?timeout=20"
    )
    assert resolve_tracking_uri("http://h:5000", tmp_path) == "http://h:5000"
