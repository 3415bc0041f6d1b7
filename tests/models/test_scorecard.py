"""The scorecard kind: monotone bins, points scaling, IV selection and its readable table."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from lendml.errors import ConfigError, TrainingError
from lendml.models import FeatureSchema, load_model
from lendml.models.scorecard import ScorecardModel

from .conftest import credit_frame


def _valley_data(seed: int, n: int = 3000) -> tuple[pd.DataFrame, np.ndarray]:
    """Risk rises with ``z`` overall but dips for z in (0.45, 0.7): not monotone."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(size=n)
    x = rng.normal(size=n)
    logit = -1.0 + 2.0 * z - 2.5 * ((z > 0.45) & (z < 0.7)) + x
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({"x": x, "z": z}), y


@pytest.fixture(scope="module")
def card(credit) -> ScorecardModel:
    return ScorecardModel().fit(credit.X, credit.y)


@pytest.mark.parametrize("direction", [1, -1])
def test_declared_monotone_trend_gives_monotone_points(direction, data_seed):
    X, y = _valley_data(data_seed)
    if direction == -1:
        X["z"] = 1.0 - X["z"]
    schema = FeatureSchema.infer(X, monotone={"z": direction})
    model = ScorecardModel().fit(X, y, schema=schema)
    assert "z" in model.selected_features_
    for x in (-1.0, 0.0, 1.5):
        grid = pd.DataFrame({"x": x, "z": np.linspace(0.0, 1.0, 201)})
        steps = np.diff(model.points(grid))
        # +1: risk rises with z, so points (higher = safer) never rise along z.
        assert np.all(steps * direction <= 1e-9), steps
        assert np.any(steps != 0)
        risk = np.diff(model.decision_function(grid))
        assert np.all(risk * direction >= -1e-12)


def test_unconstrained_auto_trend_follows_the_valley(data_seed):
    """The control for the test above: without the constraint the points are not monotone."""
    X, y = _valley_data(data_seed)
    model = ScorecardModel(monotonic_trend="auto").fit(X, y)
    steps = np.diff(model.points(pd.DataFrame({"x": 0.0, "z": np.linspace(0.0, 1.0, 201)})))
    assert np.any(steps > 1e-9) and np.any(steps < -1e-9)


@pytest.mark.parametrize(
    ("base_points", "base_odds", "pdo"), [(600.0, 50.0, 20.0), (500.0, 19.0, 40.0)]
)
def test_points_double_the_odds_every_pdo(credit, base_points, base_odds, pdo):
    model = ScorecardModel(base_points=base_points, base_odds=base_odds, pdo=pdo)
    model.fit(credit.X, credit.y)
    points = model.points(credit.X_test)
    proba = model.predict_proba(credit.X_test)
    good_odds = proba[:, 0] / proba[:, 1]
    np.testing.assert_allclose(
        points, base_points + pdo * np.log2(good_odds / base_odds), rtol=0, atol=1e-9
    )
    # Two rows pdo points apart differ by a factor 2 in odds: check it on the extremes.
    lo, hi = np.argmin(points), np.argmax(points)
    ratio = good_odds[hi] / good_odds[lo]
    assert math.isclose(math.log2(ratio), (points[hi] - points[lo]) / pdo, abs_tol=1e-9)
    # Higher points are safer: the safest row has the lowest P(bad).
    assert proba[hi, 1] < proba[lo, 1]


def test_table_points_add_up_to_the_score(card):
    table = card.scorecard_table()
    assert list(table.columns) == ["feature", "bin", "count", "bad_rate", "woe", "points"]
    assert list(dict.fromkeys(table["feature"])) == card.selected_features_
    # A row with every numeric value missing and an unseen housing level scores the sum of
    # the Missing / (unseen) rows of the table.
    row = pd.DataFrame(
        {"dti": [np.nan], "housing": ["houseboat"], "utilization": [np.nan], "noise": [np.nan]}
    )
    picked = table[
        (table["bin"] == "Missing") & (table["feature"] != "housing") | (table["bin"] == "(unseen)")
    ]
    assert len(picked) == len(card.selected_features_)
    assert card.points(row)[0] == pytest.approx(picked["points"].sum(), abs=1e-9)
    # WoE of a numeric feature's bins is monotone (auto_asc_desc) and is ln(goods/bads).
    dti = table[(table["feature"] == "dti") & (table["bin"].str.startswith("["))]
    assert dti["woe"].is_monotonic_decreasing or dti["woe"].is_monotonic_increasing
    rate = dti["bad_rate"].to_numpy()
    overall = card.scorecard_table().query("feature == 'dti'")
    total_bad = (overall["count"] * overall["bad_rate"].fillna(0)).sum()
    total_good = overall["count"].sum() - total_bad
    counts = dti["count"].to_numpy()
    expected = np.log(((1 - rate) * counts / total_good) / (rate * counts / total_bad))
    np.testing.assert_allclose(dti["woe"], expected, rtol=1e-9)


def test_min_iv_drops_a_pure_noise_feature(data_seed):
    X, y = credit_frame(5000, np.random.default_rng(data_seed))
    model = ScorecardModel(min_iv=0.03).fit(X, y)
    ivs = model.information_values_
    assert ivs["noise"] < 0.03 < min(ivs["dti"], ivs["utilization"], ivs["housing"])
    assert "noise" not in model.selected_features_
    assert "information value" in model.dropped_features_["noise"]
    assert "noise" not in set(model.scorecard_table()["feature"])
    # Control: with no IV floor the noise feature is not dropped for its IV.
    keep_all = ScorecardModel(min_iv=0.0).fit(X, y)
    assert "information value" not in keep_all.dropped_features_.get("noise", "")


def test_no_predictive_feature_is_a_training_error(credit):
    with pytest.raises(TrainingError, match=r"min_iv \(now 5\.0\)"):
        ScorecardModel(min_iv=5.0).fit(credit.X, credit.y)


@pytest.mark.parametrize(
    ("param", "value"), [("pdo", 0.0), ("base_odds", -1.0), ("C", 0.0), ("min_iv", -0.1)]
)
def test_bad_parameter_is_named_with_its_value(credit, param, value):
    with pytest.raises(ConfigError, match=rf"'{param}' parameter .* got {re.escape(repr(value))}"):
        ScorecardModel(**{param: value}).fit(credit.X, credit.y)


def test_unknown_trend_is_refused(credit):
    with pytest.raises(ConfigError, match="'monotonic_trend'.*got 'sideways'"):
        ScorecardModel(monotonic_trend="sideways").fit(credit.X, credit.y)


def test_artifact_is_readable_json_and_markdown(card, credit, tmp_path):
    card.save(tmp_path / "card")
    saved = json.loads((tmp_path / "card" / "scorecard.json").read_text())
    assert saved["selected"] == card.selected_features_
    assert saved["scaling"]["pdo"] == 20.0
    by_name = {f["name"]: f for f in saved["features"]}
    assert by_name["housing"]["kind"] == "categorical"
    grouped = {level for group in by_name["housing"]["groups"] for level in group}
    assert grouped == set(card.schema_["housing"].categories)
    assert by_name["housing"]["unseen_woe"] == 0.0
    assert by_name["dti"]["splits"] == sorted(by_name["dti"]["splits"])
    markdown = (tmp_path / "card" / "scorecard.md").read_text()
    assert "higher is safer" in markdown
    for feature in card.selected_features_:
        assert f"| {feature} |" in markdown
    loaded = load_model(tmp_path / "card")
    pd.testing.assert_frame_equal(loaded.scorecard_table(), card.scorecard_table())
    np.testing.assert_allclose(
        loaded.points(credit.X_test), card.points(credit.X_test), rtol=0, atol=1e-12
    )


def test_features_without_signal_are_dropped_even_without_an_iv_floor(credit):
    X = credit.X.assign(constant=1.0, empty=np.nan)
    model = ScorecardModel(min_iv=0.0).fit(X, credit.y)
    assert model.information_values_["constant"] == 0.0
    assert model.information_values_["empty"] == 0.0
    assert {"constant", "empty"} <= set(model.dropped_features_)
    assert {"dti", "utilization"} <= set(model.selected_features_)
