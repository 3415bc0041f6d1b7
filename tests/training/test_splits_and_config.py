"""Splits (out-of-time with maturity gaps, K-fold, grouped), train.yaml validation, input rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lendml.errors import ConfigError, TrainingError
from lendml.training.config import load_train_config, parse_train_config
from lendml.training.splits import kfold, out_of_time_split, random_split, time_holdout_split
from lendml.training.trainer import binary_target, check_inputs

DAY = pd.Timedelta(days=1)


def _times(days: list[int]) -> pd.Series:
    return pd.Series(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(days, unit="D"))


def test_out_of_time_windows_are_half_open_and_ordered():
    t = _times([0, 1, 9, 10, 11, 19, 20, 21])  # day 10 is 2024-01-11, day 20 2024-01-21
    y = pd.Series([0, 1, 0, 1, 0, 1, 0, 1])
    s = out_of_time_split(t, y, valid_from="2024-01-11", test_from="2024-01-21")
    # a row exactly at valid_from belongs to valid; exactly at test_from to test
    assert s.train.tolist() == [0, 1, 2]
    assert s.valid.tolist() == [3, 4, 5]
    assert s.test.tolist() == [6, 7]
    assert s.excluded == {}
    assert t[s.train].max() < t[s.valid].min() and t[s.valid].max() < t[s.test].min()


def test_gap_of_label_maturity_drops_rows_whose_label_is_not_known_at_the_next_window():
    t = _times([0, 5, 8, 9, 10, 15, 18, 19, 20, 25])
    y = pd.Series([0, 1] * 5)
    s = out_of_time_split(
        t, y, valid_from="2024-01-11", test_from="2024-01-21", gap=pd.Timedelta(days=3)
    )
    # train needs t < valid_from - 3d = day 7 (day 10 is 2024-01-11)
    assert s.train.tolist() == [0, 1]
    assert s.valid.tolist() == [4, 5]
    assert s.test.tolist() == [8, 9]
    assert s.excluded == {"gap_before_valid": 2, "gap_before_test": 2}


def test_observed_at_decides_maturity_and_missing_labels_are_counted():
    t = _times([0, 1, 2, 12, 13, 25])
    y = pd.Series([0, 1, np.nan, 0, 1, 1])
    observed = t + pd.to_timedelta([1, 30, 1, 1, 1, 1], unit="D")
    s = out_of_time_split(
        t, y, valid_from="2024-01-11", test_from="2024-01-21", observed_at=observed
    )
    assert s.train.tolist() == [0]  # row 1 is observed after valid_from; row 2 has no label
    assert s.excluded == {"label_not_observed": 1, "label_immature_at_valid_from": 1}
    assert s.valid.tolist() == [3, 4] and s.test.tolist() == [5]


def test_fractions_without_dates_keep_ties_together():
    t = _times([0] * 10 + [1] * 10 + [2] * 10)
    y = pd.Series([0, 1] * 15)
    s = out_of_time_split(t, y, valid_fraction=0.3, test_fraction=0.3)
    for part in (s.train, s.valid, s.test):
        assert t[part].nunique() == 1


def test_out_of_order_windows_and_empty_parts_are_refused():
    t, y = _times([0, 1, 2]), pd.Series([0, 1, 0])
    with pytest.raises(ConfigError, match="must be before test_from"):
        out_of_time_split(t, y, valid_from="2024-01-05", test_from="2024-01-02")
    with pytest.raises(TrainingError, match="no rows in test"):
        out_of_time_split(t, y, valid_from="2024-01-02", test_from="2024-02-01")


def test_time_holdout_on_a_numeric_year_column():
    years = pd.Series([2012] * 40 + [2013] * 40 + [2014] * 20)
    y = pd.Series(([0] * 4 + [1]) * 20)
    s = time_holdout_split(years, y, test_from="2014", valid_fraction=0.25)
    assert set(years[s.test]) == {2014}
    assert set(years[s.train]) | set(years[s.valid]) == {2012, 2013}
    assert len(s.valid) == 20 and not set(s.train) & set(s.valid)
    with pytest.raises(ConfigError, match="must be a number"):
        time_holdout_split(years, y, test_from="last year")


@settings(max_examples=30, deadline=None)
@given(
    n_groups=st.integers(10, 40),
    k=st.integers(2, 5),
    seed=st.integers(0, 1000),
)
def test_grouped_kfold_never_puts_a_group_in_two_folds(n_groups, k, seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, 300)
    y = (rng.random(300) < 0.3).astype(int)
    folds = kfold(y, k, groups=groups, seed=seed)
    assert len(folds) == k
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen) == list(range(300))  # every row tested exactly once
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])


def test_random_split_is_stratified_and_disjoint():
    y = pd.Series([0] * 800 + [1] * 200)
    s = random_split(y, valid_fraction=0.2, test_fraction=0.2, seed=1)
    parts = [set(s.train), set(s.valid), set(s.test)]
    assert sum(map(len, parts)) == 1000 and not (parts[0] & parts[1] or parts[1] & parts[2])
    assert y[s.test].mean() == pytest.approx(0.2, abs=0.01)


# ------------------------------------------------------------------------- train.yaml


GOOD = {
    "name": "pd",
    "feature_service": "credit_v1",
    "spine": "spine.parquet",
    "label": {"column": "defaulted", "observed_at": "observed_at"},
}


def test_a_good_config_parses_with_defaults():
    cfg = parse_train_config(GOOD)
    assert cfg.model.kind == "lightgbm" and cfg.split.kind == "out_of_time"
    assert cfg.tuning.trials == 0 and cfg.as_of == "as_of"


@pytest.mark.parametrize(
    ("patch", "path", "shown"),
    [
        ({"model": {"kind": "xgboost"}}, "model.kind", "'lightgbm', 'scorecard' or 'torch_mlp'"),
        ({"split": {"gapp": "30d"}}, "split.gapp", "Extra inputs are not permitted"),
        ({"split": {"gap": "30 days"}}, "split.gap", "30 days"),
        ({"tuning": {"trials": -1}}, "tuning.trials", "greater than or equal to 0"),
        ({"model": {"monotone": {"fico": 2}}}, "model.monotone.fico", "-1, 0 or 1"),
        ({"split": {"test_from": "not a date"}}, "split.test_from", "not a date"),
        ({"evaluation": {"cutoff": 1.5}}, "evaluation.cutoff", "less than 1"),
    ],
)
def test_bad_config_values_name_the_path_the_value_and_the_allowed(patch, path, shown):
    bad = {**GOOD, **patch}
    with pytest.raises(ConfigError) as info:
        parse_train_config(bad, where="train.yaml")
    msg = str(info.value)
    assert "train.yaml is invalid" in msg and path in msg and shown in msg


def test_missing_required_keys_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="label: Field required"):
        parse_train_config({k: v for k, v in GOOD.items() if k != "label"})
    f = tmp_path / "train.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "nope.yaml")


# ------------------------------------------------------------------------- inputs & labels


def test_protected_attributes_are_refused_as_inputs_unless_allowed():
    with pytest.raises(ConfigError, match=r"Protected attributes \['gender'\]"):
        check_inputs(["fico", "gender"], protected=["gender"])
    with pytest.raises(ConfigError, match=r"\['age_group'\] look like protected"):
        check_inputs(["fico", "age_group"], protected=[])
    check_inputs(["fico", "age_group"], protected=[], allow_protected=["age_group"])
    check_inputs(["fico", "page_views", "usage"], protected=[])  # no false alarms on substrings


def test_binary_target_maps_the_positive_value_and_keeps_missing():
    out = binary_target(pd.Series(["bad", "good", None, "bad"]), "bad")
    assert out[[0, 1, 3]].tolist() == [1.0, 0.0, 1.0] and np.isnan(out[2])
    with pytest.raises(ConfigError, match="No label equals the positive value 'yes'"):
        binary_target(pd.Series(["bad", "good"]), "yes")
