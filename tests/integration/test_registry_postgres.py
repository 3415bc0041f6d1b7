"""MLflow tracking and the model registry on a real PostgreSQL, shared by two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lendml.core.config import TrackingSettings
from lendml.errors import RegistryError
from lendml.models.lightgbm import LightGBMModel
from lendml.registry import Registry, Tracker
from tests.integration.conftest import with_driver, with_password

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

# The second process: a Registry of its own on the same database; it reports what it
# sees, then writes (a promotion) for the first process to see.
# The URL travels in the environment, never on a command line (where `ps` would show it).
OTHER_PROCESS = """
import json, os, sys
from lendml.core.config import TrackingSettings
from lendml.registry import Registry

name = sys.argv[1]
settings = TrackingSettings(uri=os.environ["LENDML_TRACKING_URI"], artifacts=sys.argv[2])
reg = Registry(settings, root=sys.argv[3])
info = reg.get_model(name)
champion = reg.load(name)  # NAME means NAME@champion; files re-verified on load
print(json.dumps({
    "aliases": info.aliases,
    "versions": [v.version for v in info.versions],
    "history": [e.to_dict() for e in reg.history(name)],
    "champion": champion.info.version,
    "champion_sha256": champion.info.manifest_sha256,
}))
reg.promote(name, 2, alias="shadow", reason="score alongside", user="eve")
"""


def _data(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"dti": rng.uniform(0, 1, 300), "utilization": rng.uniform(0, 1, 300)})
    y = (X["dti"] + rng.normal(0, 0.3, 300) > 0.6).astype(int).to_numpy()
    return X, y


@pytest.mark.slow
def test_runs_versions_aliases_and_history_live_in_postgres(new_database, tmp_path):
    url = new_database()
    artifacts = tmp_path / "artifacts"  # a folder every process here can read
    settings = TrackingSettings(uri=url, artifacts=str(artifacts))
    tracker = Tracker(settings, root=tmp_path, default_experiment="credit-it")
    registry = Registry(settings, root=tmp_path)
    X, y = _data(0)

    versions = []
    for i, n_estimators in enumerate((10, 20)):
        model = LightGBMModel(
            n_estimators=n_estimators, num_leaves=7, min_child_samples=10, n_jobs=1
        )
        model.fit(X, y)
        with tracker.start_run(
            run_name=f"train-{i}", tags={"lendml.feature_service": "credit_v1"}
        ) as run:
            run.log_params(model.get_params())
            run.log_metrics({"train_rows": len(X)})
            sha = run.log_model(model)
        record = tracker.get_run(run.run_id)
        assert record.status == "FINISHED"
        assert record.params["n_estimators"] == str(n_estimators)
        assert record.tags["lendml.manifest_sha256"] == sha
        versions.append(registry.register(run.run_id, "credit_pd_it"))
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].lineage["lendml.feature_service"] == "credit_v1"
    assert [r.run_name for r in tracker.search_runs()] == ["train-1", "train-0"]

    registry.promote("credit_pd_it", 1, reason="first model", user="ana")
    registry.promote("credit_pd_it", 2, reason="beats v1 out of time", user="ben")
    registry.promote("credit_pd_it", 2, alias="challenger", reason="shadow test", user="ben")
    registry.rollback("credit_pd_it", reason="v2 drifts", user="cleo")
    assert registry.resolve("credit_pd_it@champion").version == 1
    expected = [
        ("promote", "champion", 1, None, "ana"),
        ("promote", "champion", 2, 1, "ben"),
        ("promote", "challenger", 2, None, "ben"),
        ("rollback", "champion", 1, 2, "cleo"),
    ]
    events = registry.history("credit_pd_it")
    assert [(e.action, e.alias, e.version, e.previous_version, e.user) for e in events] == expected
    assert all(e.state == "done" for e in events)

    # Another process, another Registry object, the same database: the same state.
    env = {**os.environ, "LENDML_TRACKING_URI": url}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            OTHER_PROCESS,
            "credit_pd_it",
            str(artifacts),
            str(tmp_path / "other"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["aliases"] == {"champion": 1, "challenger": 2}
    assert seen["versions"] == [1, 2]
    assert seen["champion"] == 1 and seen["champion_sha256"] == versions[0].manifest_sha256
    assert [
        (e["action"], e["alias"], e["version"], e["previous_version"], e["user"])
        for e in seen["history"]
    ] == expected
    assert [e["reason"] for e in seen["history"]] == [e.reason for e in events]

    # ... and what it wrote (a shadow promotion), this process reads.
    assert registry.get_model("credit_pd_it").aliases == {
        "champion": 1,
        "challenger": 2,
        "shadow": 2,
    }
    last = registry.history("credit_pd_it")[-1]
    assert (last.action, last.alias, last.version, last.user) == ("promote", "shadow", 2, "eve")


def test_a_wrong_password_fails_without_showing_it(postgres_url, tmp_path, monkeypatch, caplog):
    import mlflow.store.db.utils

    # MLflow retries opening a database ten times with exponential backoff (about 100 s
    # in all) before it gives up; one attempt is enough to see the failure.
    monkeypatch.setattr(mlflow.store.db.utils, "MAX_RETRY_COUNT", 1)
    secret = "wrong-Pa55-7c1e9"
    url = with_driver(with_password(postgres_url, secret))
    settings = TrackingSettings(uri=url, artifacts=str(tmp_path / "a"))
    registry = Registry(settings, root=tmp_path)
    tracker = Tracker(settings, root=tmp_path)
    assert secret not in repr(registry) and secret not in repr(tracker)
    assert ":***@" in repr(registry)

    for call in (registry.list_models, lambda: tracker.ensure_experiment("x")):
        with pytest.raises(RegistryError) as err:
            call()
        shown = [str(err.value), repr(err.value), json.dumps(err.value.to_dict())]
        # the whole chain, as a traceback would print it
        shown.append("".join(traceback.format_exception(err.value)))
        assert "password authentication failed" in str(err.value)
        assert ":***@127.0.0.1" in str(err.value)
        for text in shown:
            assert secret not in text
    assert secret not in caplog.text


def test_a_bare_postgresql_uri_uses_the_installed_driver(new_database, tmp_path):
    url = new_database().replace("postgresql+psycopg2://", "postgresql://")
    registry = Registry(TrackingSettings(uri=url, artifacts=str(tmp_path)), root=tmp_path)
    assert registry.list_models() == []
