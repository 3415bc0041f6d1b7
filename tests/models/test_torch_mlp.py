"""The torch_mlp kind: refused constraints, input encoding, early stopping, lazy torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from lendml.errors import ConfigError
from lendml.models import FeatureSchema

torch = pytest.importorskip("torch")

from lendml.models.torch_mlp import TorchMLPModel, embedding_dim  # noqa: E402

SMALL = {"hidden": (16,), "max_epochs": 3, "batch_size": 64}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_monotone_constraints_are_refused_pointing_to_kinds_that_honour_them(credit):
    schema = FeatureSchema.infer(credit.X, monotone={"utilization": 1})
    with pytest.raises(ConfigError, match=r"\['utilization'\].*'lightgbm' or 'scorecard'"):
        TorchMLPModel(**SMALL).fit(credit.X, credit.y, schema=schema)


@pytest.mark.parametrize(
    ("param", "value"),
    [("hidden", ()), ("hidden", (8, 0)), ("dropout", 1.0), ("batch_size", 0), ("patience", 0)],
)
def test_bad_parameter_is_named_with_its_value(credit, param, value):
    with pytest.raises(ConfigError, match=rf"'{param}' parameter .* got {re.escape(repr(value))}"):
        TorchMLPModel(**{**SMALL, param: value}).fit(credit.X, credit.y)


def test_network_json_describes_embeddings_and_standardization(credit, tmp_path):
    X = credit.X.assign(region=[f"r{i % 40}" for i in range(len(credit.X))])
    model = TorchMLPModel(**SMALL).fit(X, credit.y)
    model.save(tmp_path / "net")
    network = json.loads((tmp_path / "net" / "network.json").read_text())
    categorical = {f["name"]: f for f in network["categorical"]}
    assert categorical["housing"]["levels"] == 5
    assert categorical["housing"]["embedding_dim"] == 4 == embedding_dim(5)
    assert categorical["region"]["embedding_dim"] == 16  # capped: (40 + 1) // 2 + 1 = 21
    numeric = {f["name"]: f for f in network["numeric"]}
    # Only dti has missing values in training, so only dti gets a missing indicator.
    assert [n for n, f in numeric.items() if f["missing_indicator"]] == ["dti"]
    assert numeric["utilization"]["mean"] == pytest.approx(X["utilization"].mean(), abs=1e-12)
    assert numeric["utilization"]["std"] == pytest.approx(X["utilization"].std(ddof=0), rel=1e-12)
    assert network["input_dim"] == 3 + 1 + 4 + 16
    assert network["hidden"] == [16]


def test_missing_and_unseen_levels_share_index_zero(credit):
    model = TorchMLPModel(**SMALL).fit(credit.X, credit.y)
    rows = credit.X_test.head(5)
    unseen = model.decision_function(rows.assign(housing="houseboat"))
    missing = model.decision_function(rows.assign(housing=None))
    seen = model.decision_function(rows.assign(housing="rent"))
    np.testing.assert_array_equal(unseen, missing)
    assert not np.array_equal(unseen, seen)


def test_early_stopping_on_the_validation_log_loss(data_seed):
    rng = np.random.default_rng(data_seed)
    X = pd.DataFrame(rng.normal(size=(300, 8)), columns=[f"f{i}" for i in range(8)])
    y = rng.integers(0, 2, 300)  # no signal: the validation loss only gets worse
    X_valid = pd.DataFrame(rng.normal(size=(200, 8)), columns=X.columns)
    y_valid = rng.integers(0, 2, 200)
    model = TorchMLPModel(hidden=(64, 64), learning_rate=1e-2, max_epochs=60, patience=3)
    model.fit(X, y, X_valid=X_valid, y_valid=y_valid)
    epochs = len(model.history_)
    assert epochs < 60
    assert epochs - model.best_epoch_ == 3
    best = min(h["valid_loss"] for h in model.history_)
    assert model.history_[model.best_epoch_ - 1]["valid_loss"] == best
    # The kept weights are the best epoch's: scoring the validation window reproduces it.
    p = model.predict_proba(X_valid)[:, 1]
    loss = -np.mean(y_valid * np.log(p) + (1 - y_valid) * np.log(1 - p))
    assert loss == pytest.approx(best, rel=1e-5)


def test_fit_leaves_the_callers_torch_state_alone(credit):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    before = torch.are_deterministic_algorithms_enabled()
    TorchMLPModel(**SMALL).fit(credit.X, credit.y)
    assert torch.are_deterministic_algorithms_enabled() == before
    assert torch.equal(torch.rand(3), expected)


def test_callbacks_see_every_epoch_and_can_stop_training(credit):
    seen = []

    class Stop(Exception):
        pass

    def callback(epoch, train_loss, valid_loss):
        seen.append((epoch, valid_loss is not None))
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        TorchMLPModel(**SMALL).fit(
            credit.X,
            credit.y,
            X_valid=credit.X_valid,
            y_valid=credit.y_valid,
            callbacks=[callback],
        )
    assert seen == [(1, True), (2, True)]


def test_lendml_models_do_not_import_torch_or_optbinning(credit, tmp_path):
    """Scoring a scorecard needs neither torch nor optbinning; torch loads on first use."""
    from lendml.models.scorecard import ScorecardModel

    ScorecardModel().fit(credit.X, credit.y).save(tmp_path / "card")
    code = textwrap.dedent(
        f"""
        import sys
        import pandas as pd
        import lendml.models
        import lendml.models.torch_mlp
        from lendml.models import load_model
        card = load_model({str(tmp_path / "card")!r})
        card.points(pd.DataFrame({{"dti": [0.1], "housing": ["rent"], "utilization": [0.5],
                                   "noise": [0.0]}}))
        print(sorted(m for m in ("torch", "optbinning", "sklearn") if m in sys.modules))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
