"""Reason codes: exact Shapley attributions against one reference point, ranking, reference.

The attributions are checked against a brute-force Shapley value (every coalition of the
features where the row and the reference differ, each hybrid row scored by LightGBM
itself), and the parsed routing against ``booster.predict(raw_score=True)`` bit for bit.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lendml.errors import ConfigError, DataValidationError
from lendml.models import (
    FeatureSchema,
    FeatureSpec,
    ReasonCode,
    ReferencePoint,
    TreeExplainer,
    load_model,
    reason_codes,
    reference_point,
)
from lendml.models.lightgbm import LightGBMModel

DOC = Path(__file__).resolve().parents[2] / "docs" / "reason-codes.md"


# --------------------------------------------------------------------------- helpers
def brute_force(booster: lgb.Booster, x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The Shapley value of v(S) = f(x_S, r_rest), every coalition scored by LightGBM."""
    same = (x == r) | (np.isnan(x) & np.isnan(r))
    diff = np.flatnonzero(~same)
    k = len(diff)
    masks = np.arange(2**k)
    on = ((masks[:, None] >> np.arange(k)) & 1).astype(bool)
    Z = np.tile(r, (2**k, 1))
    Z[:, diff] = np.where(on, x[diff], r[diff])
    v = booster.predict(Z, raw_score=True)
    size = on.sum(axis=1)
    phi = np.zeros(len(x))
    for i, j in enumerate(diff):
        without = masks[~on[:, i]]
        s = size[without]
        w = np.array([math.factorial(c) * math.factorial(k - c - 1) for c in s]) / math.factorial(k)
        phi[j] = np.sum(w * (v[without | (1 << i)] - v[without]))
    return phi


def synthetic(
    rng: np.random.Generator, n: int, n_num: int, n_cat: int, *, zeros: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Numeric columns with NaNs (and zeros), categorical codes up to 70 (3 bitset words)."""
    X = rng.normal(size=(n, n_num + n_cat))
    for j in range(n_num, n_num + n_cat):
        X[:, j] = rng.integers(0, rng.choice([4, 12, 70]), size=n)
    X[rng.random(X.shape) < 0.12] = np.nan
    if zeros and n_num:
        X[rng.random(n) < 0.25, 0] = 0.0
    logit = np.nan_to_num(X[:, 0]) - 0.8 * np.nan_to_num(X[:, min(1, n_num - 1)])
    if n_cat:
        logit += np.where(np.nan_to_num(X[:, n_num]) % 3 == 0, 1.5, -0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return X, y


def train(X, y, n_cat: int, *, missing: str, monotone: bool, leaves: int, trees: int, seed: int):
    n_num = X.shape[1] - n_cat
    params = {
        "objective": "binary",
        "verbosity": -1,
        "num_leaves": leaves,
        "min_data_in_leaf": 3,
        "min_data_per_group": 3,
        "cat_smooth": 1.0,
        "cat_l2": 1.0,
        "max_cat_to_onehot": 4,
        "learning_rate": 0.3,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
        "zero_as_missing": missing == "zero",
        "use_missing": missing != "none",
    }
    if monotone and n_num:
        params["monotone_constraints"] = [1] + [0] * (n_num - 1) + [0] * n_cat
        params["monotone_constraints_method"] = "advanced"
    data = lgb.Dataset(X, y, categorical_feature=list(range(n_num, X.shape[1])))
    return lgb.train(params, data, num_boost_round=trees)


def awkward_rows(rng: np.random.Generator, X: np.ndarray, n_cat: int) -> np.ndarray:
    """Rows with values at LightGBM's edges: tiny, -0.0, inf, unseen/negative/fractional codes."""
    rows = X[rng.choice(len(X), 12, replace=False)].copy()
    n_num = X.shape[1] - n_cat
    edge_num = [1e-40, -1e-40, -0.0, 0.0, np.inf, -np.inf, np.nan, 1e300]
    edge_cat = [-1.0, -0.5, 2.7, 69.0, 150.0, 1e10, np.nan, 0.0]
    for i in range(len(edge_num)):
        if n_num:
            rows[i, rng.integers(0, n_num)] = edge_num[i]
        if n_cat:
            rows[i, n_num + rng.integers(0, n_cat)] = edge_cat[i]
    return rows


def split_kinds(booster: lgb.Booster) -> set[str]:
    """The decision and missing types of every split of a booster."""
    kinds: set[str] = set()

    def walk(node):
        if "split_feature" in node:
            kinds.add(node["decision_type"])
            kinds.add("missing_" + node["missing_type"])
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return kinds


# --------------------------------------------------------------------------- exactness
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_num=st.integers(1, 5),
    n_cat=st.integers(0, 3),
    missing=st.sampled_from(["nan", "zero", "none"]),
    monotone=st.booleans(),
    leaves=st.integers(4, 31),
    trees=st.integers(5, 50),
)
# A split at the last bin has threshold inf, which dump_model() writes as 1e300: 1e308 and
# inf must still go left there, as in the booster.
@example(seed=0, n_num=1, n_cat=0, missing="nan", monotone=True, leaves=4, trees=19)
def test_attributions_equal_brute_force_shapley(
    seed, n_num, n_cat, missing, monotone, leaves, trees
):
    rng = np.random.default_rng(seed)
    X, y = synthetic(rng, 300, n_num, n_cat)
    booster = train(
        X, y, n_cat, missing=missing, monotone=monotone, leaves=leaves, trees=trees, seed=seed
    )
    explainer = TreeExplainer.from_booster(booster)
    rows = awkward_rows(rng, X, n_cat)
    assert np.array_equal(explainer.predict_raw(rows), booster.predict(rows, raw_score=True))
    # the reference: a training row, or one of the awkward rows (NaN, inf, unseen codes)
    r = X[rng.integers(len(X))] if rng.random() < 0.5 else rows[rng.integers(len(rows))]
    phi = explainer.contributions(rows, r)
    for i in range(len(rows)):
        np.testing.assert_allclose(phi[i], brute_force(booster, rows[i], r), rtol=0, atol=1e-9)
    gap = booster.predict(rows, raw_score=True) - booster.predict(r[None], raw_score=True)
    np.testing.assert_allclose(phi.sum(axis=1), gap, rtol=0, atol=1e-9)


@pytest.mark.parametrize("missing", ["nan", "zero", "none"])
def test_routing_reproduces_lightgbm_bit_for_bit(missing, seed):
    rng = np.random.default_rng(seed)
    X, y = synthetic(rng, 400, 4, 2)
    booster = train(X, y, 2, missing=missing, monotone=False, leaves=31, trees=30, seed=seed)
    kinds = split_kinds(booster)
    assert {"==", "<=", f"missing_{missing.capitalize() if missing != 'nan' else 'NaN'}"} <= kinds
    rows = np.vstack([X[:200], awkward_rows(rng, X, 2)])
    explainer = TreeExplainer.from_booster(booster)
    assert np.array_equal(explainer.predict_raw(rows), booster.predict(rows, raw_score=True))


def test_efficiency_and_dummy_on_a_bigger_model(seed):
    rng = np.random.default_rng(seed)
    X, y = synthetic(rng, 3000, 16, 4)
    booster = train(X, y, 4, missing="nan", monotone=True, leaves=63, trees=120, seed=seed)
    explainer = TreeExplainer.from_booster(booster)
    assert explainer.n_trees_ == 120
    rows = np.vstack([X[:300], awkward_rows(rng, X, 4)])
    r = rows[7].copy()
    phi = explainer.contributions(rows, r)
    gap = booster.predict(rows, raw_score=True) - booster.predict(r[None], raw_score=True)
    np.testing.assert_allclose(phi.sum(axis=1), gap, rtol=0, atol=1e-9)
    # a feature where x equals r gets exactly nothing; the reference explains itself as 0
    same = (rows == r) | (np.isnan(rows) & np.isnan(r))
    assert np.all(phi[same] == 0.0)
    assert np.all(phi[7] == 0.0)
    # blocks of rows do not change the answer: one row at a time gives the same numbers
    one_by_one = np.vstack([explainer.contributions(rows[i : i + 1], r) for i in range(0, 300, 37)])
    np.testing.assert_allclose(one_by_one, phi[0:300:37], rtol=0, atol=1e-12)


def test_single_leaf_trees_and_features_never_split(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(float)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 4, "min_gain_to_split": 5.0},
        lgb.Dataset(X, y),
        num_boost_round=15,
    )
    dump = booster.dump_model()
    assert {t["tree_structure"]["split_feature"] for t in dump["tree_info"]} == {0}
    explainer = TreeExplainer.from_dump(dump)
    phi = explainer.contributions(X[:20], X[20])
    assert np.all(phi[:, 1:] == 0.0)  # features 1 and 2 are never split on
    for i in range(3):
        np.testing.assert_allclose(phi[i], brute_force(booster, X[i], X[20]), atol=1e-9)
    # LightGBM writes a tree that could not split as one leaf: it shifts every score alike
    dump["tree_info"].append({"num_leaves": 1, "tree_structure": {"leaf_value": 0.25}})
    shifted = TreeExplainer.from_dump(dump)
    assert shifted.n_trees_ == explainer.n_trees_ + 1
    np.testing.assert_array_equal(shifted.predict_raw(X), explainer.predict_raw(X) + 0.25)
    np.testing.assert_array_equal(shifted.contributions(X[:20], X[20]), phi)


# --------------------------------------------------------------------------- the model kind
def test_from_model_respects_best_iteration_and_survives_save_load(credit, tmp_path):
    model = LightGBMModel(
        n_estimators=30, learning_rate=0.3, num_leaves=15, min_child_samples=5, n_jobs=1
    ).fit(credit.X, credit.y)
    assert model.booster_.current_iteration() == 30
    model.best_iteration_ = 12  # e.g. early stopping chose 12 of 30 rounds
    explainer = TreeExplainer.from_model(model)
    assert explainer.n_trees_ == 12
    assert explainer.feature_names_ == model.schema_.names
    X = model.schema_.encode(credit.X_test)
    assert np.array_equal(explainer.predict_raw(X), model.decision_function(credit.X_test))
    scores = model.predict_proba(credit.X_test)[:, 1]
    ref = reference_point(model, credit.X_test, scores, cutoff=0.3, side="below")
    phi = explainer.contributions(X, ref)
    gap = model.decision_function(credit.X_test) - explainer.predict_raw(ref.encoded[None])
    np.testing.assert_allclose(phi.sum(axis=1), gap, rtol=0, atol=1e-9)
    model.save(tmp_path / "m")
    loaded = TreeExplainer.from_model(load_model(tmp_path / "m"))
    assert loaded.n_trees_ == 12
    np.testing.assert_array_equal(loaded.contributions(X, ref), phi)


def test_explain_reads_a_frame_and_attaches_readable_values(credit):
    model = LightGBMModel(n_estimators=40, num_leaves=8, min_child_samples=5, n_jobs=1).fit(
        credit.X, credit.y
    )
    explainer = TreeExplainer.from_model(model)
    scores = model.predict_proba(credit.X_test)[:, 1]
    ref = reference_point(model, credit.X_test, scores, cutoff=float(np.median(scores)))
    frame = credit.X_test.iloc[:50]
    codes = explainer.explain(frame, ref, top=2, exclude=["noise"])
    phi = explainer.contributions(model.schema_.encode(frame), ref)
    assert len(codes) == 50
    for i, row in enumerate(codes):
        assert len(row) <= 2
        assert all(c.code != "noise" for c in row)
        for c in row:
            assert c.contribution == phi[i, model.schema_.names.index(c.code)] > 0
            value = frame.iloc[i][c.code]
            assert c.values[c.code] == (None if pd.isna(value) else value)
            assert c.reference[c.code] == ref.values[c.code]
    assert any(row for row in codes)
    with pytest.raises(ConfigError, match="from_model"):
        TreeExplainer.from_booster(model.booster_).explain(frame, ref)


def test_from_model_refuses_an_unfitted_model():
    with pytest.raises(ConfigError, match="not a fitted LightGBM model"):
        TreeExplainer.from_model(LightGBMModel())


# --------------------------------------------------------------------------- refusals
def test_shapes_are_checked(seed):
    rng = np.random.default_rng(seed)
    X, y = synthetic(rng, 200, 3, 0)
    explainer = TreeExplainer.from_booster(
        train(X, y, 0, missing="nan", monotone=False, leaves=4, trees=5, seed=1)
    )
    with pytest.raises(DataValidationError, match=r"shape \(n_rows, 3\).*got shape \(2, 4\)"):
        explainer.contributions(np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(
        DataValidationError, match=r"reference must be one encoded row of shape \(3,\)"
    ):
        explainer.contributions(np.zeros((2, 3)), np.zeros((1, 3)))
    assert explainer.contributions(np.zeros((0, 3)), np.zeros(3)).shape == (0, 3)


def test_unsupported_models_are_refused(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 3))
    y3 = rng.integers(0, 3, 300)
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1},
        lgb.Dataset(X, y3),
        num_boost_round=3,
    )
    with pytest.raises(ConfigError, match="num_class=3"):
        TreeExplainer.from_booster(multi)
    y = (X[:, 0] > 0).astype(float)
    linear = lgb.train(
        {"objective": "binary", "linear_tree": True, "verbosity": -1},
        lgb.Dataset(X, y),
        num_boost_round=3,
    )
    with pytest.raises(ConfigError, match="linear leaves"):
        TreeExplainer.from_booster(linear)
    rf = lgb.train(
        {
            "objective": "binary",
            "boosting": "rf",
            "bagging_fraction": 0.5,
            "bagging_freq": 1,
            "verbosity": -1,
        },
        lgb.Dataset(X, y),
        num_boost_round=3,
    )
    with pytest.raises(ConfigError, match="boosting='rf'"):
        TreeExplainer.from_booster(rf)


def test_a_dump_with_an_unknown_decision_type_is_refused():
    dump = {
        "max_feature_idx": 0,
        "feature_names": ["a"],
        "tree_info": [
            {
                "tree_structure": {
                    "split_feature": 0,
                    "threshold": 1.0,
                    "decision_type": "<",
                    "default_left": True,
                    "missing_type": "None",
                    "left_child": {"leaf_value": 1.0},
                    "right_child": {"leaf_value": 2.0},
                }
            }
        ],
    }
    with pytest.raises(ConfigError, match="decision_type '<'"):
        TreeExplainer.from_dump(dump)


# --------------------------------------------------------------------------- reason codes
NAMES = ["dti", "income", "util_card", "util_loc", "age", "inquiries"]


def test_reasons_rank_positive_contributions_largest_first():
    phi = np.array([0.30, -0.50, 0.10, 0.05, 0.0, 0.20])
    codes = reason_codes(phi, NAMES, top=4)
    assert [c.code for c in codes] == ["dti", "inquiries", "util_card", "util_loc"]
    assert [c.contribution for c in codes] == [0.30, 0.20, 0.10, 0.05]
    assert all(isinstance(c, ReasonCode) and c.features == (c.code,) for c in codes)
    assert [c.code for c in reason_codes(phi, NAMES, top=2)] == ["dti", "inquiries"]


def test_only_strictly_positive_contributions_are_reasons():
    assert reason_codes(np.array([0.0, -0.1, -0.0, 0.0, -2.0, 0.0]), NAMES) == []
    assert [c.code for c in reason_codes(np.array([0.0, 0.0, 1e-300, 0, 0, 0]), NAMES)] == [
        "util_card"
    ]


def test_ties_are_broken_by_name_whatever_the_column_order():
    phi = np.array([0.2, 0.2, 0.2, 0.1, 0.2, 0.0])
    first = [c.code for c in reason_codes(phi, NAMES, top=3)]
    assert first == ["age", "dti", "income"]
    perm = [5, 4, 3, 2, 1, 0]
    again = [c.code for c in reason_codes(phi[perm], [NAMES[i] for i in perm], top=3)]
    assert again == first


def test_groups_sum_their_features():
    phi = np.array([0.30, 0.0, 0.20, 0.15, 0.0, -0.1])
    groups = {"util_card": "utilisation", "util_loc": "utilisation"}
    codes = reason_codes(phi, NAMES, groups=groups)
    assert [c.code for c in codes] == ["utilisation", "dti"]
    assert codes[0].contribution == pytest.approx(0.35)
    assert codes[0].features == ("util_card", "util_loc")
    # a group whose members cancel out is no reason
    phi2 = np.array([0.0, 0.0, 0.20, -0.25, 0.0, 0.0])
    assert reason_codes(phi2, NAMES, groups=groups) == []


def test_excluded_attributes_never_appear_even_inside_a_group():
    phi = np.array([0.1, 0.0, 0.05, 0.30, 0.9, 0.0])
    groups = {"util_card": "utilisation", "util_loc": "utilisation", "age": "utilisation"}
    codes = reason_codes(phi, NAMES, groups=groups, exclude=["age", "sex"])
    assert [c.code for c in codes] == ["utilisation", "dti"]
    assert codes[0].contribution == pytest.approx(0.35)
    assert "age" not in codes[0].features
    assert reason_codes(phi, NAMES, groups=groups, exclude=["utilisation"])[0].code == "dti"
    assert reason_codes(phi, NAMES, exclude=["age"])[0].code == "util_loc"


def test_favourable_direction_ranks_negative_contributions():
    phi = np.array([0.30, -0.50, 0.10, -0.05, 0.0, -0.5])
    codes = reason_codes(phi, NAMES, direction="favourable")
    assert [(c.code, c.contribution) for c in codes] == [
        ("income", -0.5),
        ("inquiries", -0.5),
        ("util_loc", -0.05),
    ]


def test_many_rows_and_readable_values():
    phi = np.array([[0.3, 0.0, 0.0, 0.0, 0.0, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    values = pd.DataFrame({n: [i, i + 10] for i, n in enumerate(NAMES)})
    values.loc[0, "inquiries"] = np.nan
    reference = {n: float(i) / 2 for i, n in enumerate(NAMES)}
    codes = reason_codes(phi, NAMES, values=values, reference=reference)
    assert codes[1] == []
    dti, inq = codes[0]
    assert (dti.values, dti.reference) == ({"dti": 0}, {"dti": 0.0})
    assert (inq.values, inq.reference) == ({"inquiries": None}, {"inquiries": 2.5})
    assert json.loads(json.dumps(dti.to_dict()))["code"] == "dti"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"top": 0}, ConfigError, "top must be a positive integer"),
        ({"top": True}, ConfigError, "top must be a positive integer"),
        ({"direction": "up"}, ConfigError, "direction must be 'adverse' or 'favourable'; got 'up'"),
        ({"groups": {"utilization": "u"}}, ConfigError, r"\['utilization'\] that are not model"),
        ({"groups": {"util_card": "dti"}}, ConfigError, r"Group code\(s\) \['dti'\]"),
        ({"values": np.zeros((1, 5))}, DataValidationError, "one column per feature"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        reason_codes(np.zeros(6), NAMES, **kwargs)


def test_contribution_shape_must_match_names():
    with pytest.raises(
        DataValidationError, match=r"one column per feature \(6 names\); got shape \(5,\)"
    ):
        reason_codes(np.zeros(5), NAMES)


# --------------------------------------------------------------------------- reference point
def _frame_and_model():
    schema = FeatureSchema(
        (
            FeatureSpec("x"),
            FeatureSpec("home", "categorical", ("mortgage", "own", "rent")),
            FeatureSpec("y"),
        )
    )

    class Scored:  # reference_point needs only the schema
        schema_ = schema

    frame = pd.DataFrame(
        {
            "x": [1.0, 2.0, np.nan, 4.0, 100.0, 7.0],
            "home": ["rent", "own", "rent", "own", "mortgage", None],
            "y": [np.nan, np.nan, np.nan, np.nan, 5.0, 1.0],
        }
    )
    scores = np.array([0.50, 0.51, 0.515, 0.519, 0.90, 0.10])
    return Scored(), frame, scores


def test_reference_point_averages_the_rows_just_above_the_cutoff():
    model, frame, scores = _frame_and_model()
    ref = reference_point(model, frame, scores, cutoff=0.5, band=0.02, min_rows=1)
    assert ref.n_rows == 4 and ref.band == 0.02 and ref.side == "above"
    assert ref.values == {"x": pytest.approx(7.0 / 3.0), "home": "own", "y": None}
    np.testing.assert_array_equal(ref.encoded[1:], [1.0, np.nan])  # 'own' ties 'rent': first
    assert ref.encoded[0] == pytest.approx(7.0 / 3.0)
    stored = json.loads(json.dumps(ref.to_dict()))
    again = ReferencePoint.from_dict(stored, model.schema_)
    np.testing.assert_array_equal(again.encoded, ref.encoded)
    assert again.values == ref.values


def test_reference_point_widens_the_band_and_can_look_below():
    model, frame, scores = _frame_and_model()
    ref = reference_point(model, frame, scores, cutoff=0.5, band=0.01, min_rows=5)
    assert ref.n_rows == 5 and ref.band == pytest.approx(0.64)
    below = reference_point(model, frame, scores, cutoff=0.5, band=0.5, side="below")
    assert below.n_rows == 1 and below.values == {"x": 7.0, "home": None, "y": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cutoff": 0.95}, DataValidationError, r"No row scores above the cutoff 0.95"),
        ({"cutoff": 0.5, "band": 0.0}, ConfigError, "band must be a positive number"),
        ({"cutoff": 0.5, "side": "left"}, ConfigError, "side must be 'above' or 'below'"),
        ({"cutoff": 0.5, "min_rows": 0}, ConfigError, "min_rows must be a positive integer"),
    ],
)
def test_reference_point_refusals(kwargs, error, match):
    model, frame, scores = _frame_and_model()
    with pytest.raises(error, match=match):
        reference_point(model, frame, scores, **kwargs)


def test_reference_point_checks_scores_and_stored_features():
    model, frame, scores = _frame_and_model()
    with pytest.raises(DataValidationError, match=r"one score per row of frame \(6\)"):
        reference_point(model, frame, scores[:3], cutoff=0.5)
    with pytest.raises(DataValidationError, match="1 missing or infinite"):
        reference_point(model, frame, np.r_[scores[:5], np.nan], cutoff=0.5)
    stored = reference_point(model, frame, scores, cutoff=0.5).to_dict()
    stored["features"] = ["x", "home"]
    with pytest.raises(DataValidationError, match="belongs to another model version"):
        ReferencePoint.from_dict(stored, model.schema_)


# --------------------------------------------------------------------------- the docs
def test_the_docs_example_runs():
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/reason-codes.md has no python example"
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(DOC), "exec"), namespace)
    assert namespace["codes"], "the example should print at least one applicant's reasons"


def test_all_is_sorted():
    from lendml.models import explain

    assert explain.__all__ == sorted(explain.__all__)
    assert all(hasattr(explain, name) for name in explain.__all__)
