"""Optuna studies on a real PostgreSQL: two worker processes tuning one study at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest

from lendml.errors import ConfigError
from lendml.models import FeatureSchema
from lendml.training.tuning import tune
from tests.integration.conftest import with_driver, with_password
from tests.integration.tuning_worker import dataset

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WORKERS = 2
TRIALS = 3  # per worker


@pytest.mark.slow
def test_two_worker_processes_share_one_study(new_database, tmp_path):
    storage = new_database()
    # Optuna's tables are made once, before the workers start (docs/registry.md,
    # "PostgreSQL"): two processes creating them on an empty database at the same moment
    # collide on PostgreSQL's catalog (UniqueViolation on pg_type). The study itself is
    # created by the workers, concurrently: Optuna settles that race (load_if_exists).
    optuna.storages.RDBStorage(storage).engine.dispose()
    study = f"credit_pd_{uuid.uuid4().hex[:8]}"
    sync = tmp_path / "sync"
    sync.mkdir()
    env = {**os.environ, "LENDML_TUNING_STORAGE": storage}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.tuning_worker",
                "--worker",
                str(i),
                "--workers",
                str(WORKERS),
                "--trials",
                str(TRIALS),
                "--study",
                study,
                "--sync",
                str(sync),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all((sync / f"ready-{i}").exists() for i in range(WORKERS)):
            failed = [p for p in procs if p.poll() not in (None, 0)]
            assert not failed, failed[0].communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the workers did not get ready within 120 s"
            time.sleep(0.05)
        (sync / "go").touch()
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]

    # they tuned at the same time
    a, b = reports
    assert a["start"] < b["end"] and b["start"] < a["end"]

    # the study holds every trial of both, each finished, none lost or left running
    loaded = optuna.load_study(study_name=study, storage=storage)
    states = [t.state for t in loaded.trials]
    assert len(states) == WORKERS * TRIALS
    finished = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert set(states) <= finished, states
    assert [t.number for t in loaded.trials] == list(range(WORKERS * TRIALS))

    # both workers, and this process, see the same best trial
    best = max(t.value for t in loaded.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert loaded.best_value == best
    for report in reports:
        assert report["final_n_trials"] == WORKERS * TRIALS
        assert report["final_best_value"] == best
        assert report["final_best_params"] == loaded.best_params
        assert report["own_best_value"] <= best
        assert TRIALS <= report["own_n_trials"] <= WORKERS * TRIALS
    # the defaults ran first (trial 0), so tuning did not end worse than them
    assert loaded.trials[0].params["num_leaves"] == 15
    assert best >= loaded.trials[0].value


def test_a_wrong_password_is_not_shown_in_the_error(postgres_url):
    X_train, y_train, X_valid, y_valid = dataset()
    secret = "wrong-Pa55-3b8d2"
    storage = with_driver(with_password(postgres_url, secret))
    with pytest.raises(ConfigError) as err:
        tune(
            "lightgbm",
            X_train=X_train,
            y_train=y_train,
            X_valid=X_valid,
            y_valid=y_valid,
            schema=FeatureSchema.infer(X_train),
            trials=1,
            storage=storage,
            study_name="never-created",
        )
    assert "password authentication failed" in str(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value)


def test_the_tuning_result_never_shows_the_password(new_database):
    storage = new_database()
    password = urlsplit(storage).password
    assert password
    X_train, y_train, X_valid, y_valid = dataset()
    result = tune(
        "lightgbm",
        X_train=X_train,
        y_train=y_train,
        X_valid=X_valid,
        y_valid=y_valid,
        schema=FeatureSchema.infer(X_train),
        base_params={"n_estimators": 5, "n_jobs": 1},
        trials=1,
        storage=storage,
        study_name="masked",
    )
    assert f":{password}@" not in json.dumps(result.to_dict())
    assert f":{password}@" not in repr(result)
