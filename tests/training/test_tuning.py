"""Optuna tuning: defaults first, warm starts, shared studies in SQLite, budgets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lendml.errors import ConfigError
from lendml.models import FeatureSchema
from lendml.training.tuning import tune


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n = 1200
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.random(n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(X["a"] * 1.5 - X["b"])))).astype(int).to_numpy()
    schema = FeatureSchema.infer(X)
    return X.iloc[:900], y[:900], X.iloc[900:], y[900:], schema


def _tune(data, **kw):
    X_tr, y_tr, X_va, y_va, schema = data
    base = {"n_estimators": 40, **kw.pop("base_params", {})}
    return tune(
        "lightgbm", X_train=X_tr, y_train=y_tr, X_valid=X_va, y_valid=y_va, schema=schema,
        base_params=base, **kw,
    )


def test_trial_zero_is_the_defaults_so_tuning_never_loses_to_them(data):
    res = _tune(data, trials=4, seed=3)
    first = res.trials[0]
    assert first["params"]["learning_rate"] == pytest.approx(0.02)
    assert first["params"]["num_leaves"] == 15
    assert res.best_value >= first["value"]
    assert res.n_trials == 4 and res.metric == "auc"
    assert res.best_params["n_estimators"] == 40  # fixed parameters survive


def test_warm_start_is_evaluated_second_and_clipped_into_the_space(data):
    res = _tune(data, trials=2, warm_start={"num_leaves": 1000, "learning_rate": 0.05})
    second = res.trials[1]["params"]
    assert second["num_leaves"] == 128  # clipped to the space's upper bound
    assert second["learning_rate"] == pytest.approx(0.05)


def test_workers_share_one_study_through_storage(data, tmp_path):
    url = f"sqlite:///{tmp_path / 'tuning.db'}"
    first = _tune(data, trials=3, storage=url, study_name="shared")
    second = _tune(data, trials=2, storage=url, study_name="shared")
    assert first.n_trials == 3 and second.n_trials == 5
    assert second.best_value >= first.best_value
    assert second.to_dict()["storage"] == url


def test_logloss_is_minimised_and_average_precision_maximised(data):
    ll = _tune(data, trials=3, metric="logloss")
    assert ll.best_value == min(t["value"] for t in ll.trials if t["value"] is not None)
    ap = _tune(data, trials=3, metric="average_precision")
    assert ap.best_value == max(t["value"] for t in ap.trials if t["value"] is not None)


def test_budget_and_metric_are_checked(data):
    with pytest.raises(ConfigError, match="needs a budget"):
        _tune(data, trials=0)
    with pytest.raises(ConfigError, match="Unknown tuning metric 'gini'"):
        _tune(data, trials=1, metric="gini")
    res = _tune(data, trials=0, minutes=0.01)
    assert res.n_trials >= 1


def test_storage_passwords_are_masked_in_the_record():
    from lendml.training.tuning import _mask

    assert _mask("postgresql://optuna:s3cret@db:5432/opt") == "postgresql://optuna:***@db:5432/opt"
    assert _mask("sqlite:///t.db") == "sqlite:///t.db"


def test_cv_scores_each_trial_on_every_row_not_the_validation_part(data):
    from sklearn.metrics import roc_auc_score

    from lendml.models.lightgbm import LightGBMModel
    from lendml.training.splits import kfold

    X_tr, y_tr, X_va, y_va, schema = data
    res = _tune(data, trials=2, cv=3, seed=5)
    assert res.n_trials == 2
    # trial 0 (the defaults) re-scored by hand: mean AUC of 3 folds over train + valid
    X_all, y_all = pd.concat([X_tr, X_va]), np.concatenate([y_tr, y_va])
    aucs = []
    for a, b in kfold(y_all, 3, seed=5):
        params = {"n_estimators": 40, "eval_metric": "auc", **res.trials[0]["params"]}
        m = LightGBMModel(**params).fit(
            X_all.iloc[a], y_all[a], X_valid=X_all.iloc[b], y_valid=y_all[b], schema=schema
        )
        aucs.append(roc_auc_score(y_all[b], m.predict_proba(X_all.iloc[b])[:, 1]))
    assert res.trials[0]["value"] == pytest.approx(np.mean(aucs), abs=1e-12)
    plain = _tune(data, trials=1)
    assert plain.trials[0]["value"] != pytest.approx(res.trials[0]["value"], abs=1e-9)
    with pytest.raises(ConfigError, match="at least 2"):
        _tune(data, trials=1, cv=1)
