"""The compiled scorer: agreement with LightGBM to 1e-9, the guarded cache, the fallback."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from lendml.errors import ConfigError, DataValidationError
from lendml.models import load_model
from lendml.models.compiled import CompiledScorer, default_cache_dir, model_text_sha256
from lendml.models.lightgbm import LightGBMModel

from .conftest import credit_frame

TOL = 1e-9


def _max_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


@pytest.fixture(scope="module")
def fitted() -> tuple[LightGBMModel, pd.DataFrame]:
    """Numeric features with missing values and a monotone constraint, a categorical."""
    rng = np.random.default_rng(3)
    X, y = credit_frame(1500, rng)
    from lendml.models import FeatureSchema

    schema = FeatureSchema.infer(X, monotone={"utilization": 1})
    model = LightGBMModel(
        n_estimators=12, num_leaves=15, min_child_samples=10, early_stopping_rounds=0
    ).fit(X, y, schema=schema)
    return model, X


def _awkward_rows(model: LightGBMModel, X: pd.DataFrame) -> np.ndarray:
    """Encoded rows at, just below and just above every split threshold, zeros, tiny
    values, NaN, infinities, unseen and negative category codes."""
    enc = model.schema_.encode(X)
    dump = model.booster_.dump_model()
    thresholds: dict[int, list[float]] = {}

    def walk(node: dict) -> None:
        if "split_feature" in node:
            if node["decision_type"] == "<=":
                thresholds.setdefault(node["split_feature"], []).append(float(node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in dump["tree_info"]:
        walk(tree["tree_structure"])
    rng = np.random.default_rng(11)
    rows = [enc[:300]]
    for j, values in thresholds.items():
        for thr in values:
            for v in (thr, np.nextafter(thr, -np.inf), np.nextafter(thr, np.inf)):
                row = enc[rng.integers(len(enc))].copy()
                row[j] = v
                rows.append(row[None])
    special = enc[:40].copy()
    special[:8] = np.nan
    special[8:16] = 0.0
    special[16:20] = 1e-36
    special[20:24] = -1e-40
    special[24:28] = np.inf
    special[28:32] = -np.inf
    housing = model.schema_.names.index("housing")
    special[32:, housing] = [-1.0, 99.0, 2.0, 0.0, np.nan, 4.0, 1.0, 3.0]
    rows.append(special)
    return np.vstack(rows)


def test_agrees_with_lightgbm_on_awkward_rows(fitted, tmp_path: Path) -> None:
    model, X = fitted
    scorer = CompiledScorer.from_model(model, cache_dir=tmp_path)
    assert scorer.backend_ == "lleaves", scorer.fallback_reason_
    rows = _awkward_rows(model, X)
    expected = model.booster_.predict(rows, raw_score=True)
    got = scorer.predict_raw(rows)
    assert got.shape == expected.shape
    assert _max_gap(got, expected) <= TOL
    # the model's own path on frames agrees too
    assert _max_gap(scorer.predict_raw(model.schema_.encode(X)), model.decision_function(X)) <= TOL


def test_zero_as_missing_and_tiny_values(tmp_path: Path) -> None:
    """A model trained with zero_as_missing: values within 1e-35 of zero are missing to
    LightGBM; the compiled code must route them the same way."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 4))
    X[rng.random(X.shape) < 0.3] = 0.0
    y = ((X[:, 0] == 0) ^ (X[:, 1] > 0.2)).astype(float)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 8, "zero_as_missing": True},
        lgb.Dataset(X, y),
        num_boost_round=10,
    )
    rows = X[:200].copy()
    rows[:50, 0] = 1e-36
    rows[50:100, 0] = -1e-37
    rows[100:120, 1] = np.nan
    scorer = CompiledScorer.from_text(booster.model_to_string(), cache_dir=tmp_path)
    assert scorer.backend_ == "lleaves", scorer.fallback_reason_
    assert _max_gap(scorer.predict_raw(rows), booster.predict(rows, raw_score=True)) <= TOL


def test_many_trees_and_threads_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    X = rng.normal(size=(4000, 6))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + rng.normal(size=4000) > 0).astype(float)
    booster = lgb.train(
        {"objective": "binary", "verbosity": -1, "num_leaves": 31, "min_data_in_leaf": 5},
        lgb.Dataset(X, y),
        num_boost_round=60,
    )
    scorer = CompiledScorer.from_text(booster.model_to_string(), cache_dir=tmp_path, n_jobs=2)
    expected = booster.predict(X, raw_score=True)
    assert _max_gap(scorer.predict_raw(X), expected) <= TOL
    assert _max_gap(scorer.predict_raw(X, n_jobs=1), expected) <= TOL
    assert scorer.predict_raw(X[:0]).shape == (0,)


def test_cache_is_written_once_and_reused(fitted, tmp_path: Path) -> None:
    model, X = fitted
    first = CompiledScorer.from_model(model, cache_dir=tmp_path)
    assert not first.from_cache_
    assert first.cache_path_ is not None and first.cache_path_.is_file()
    assert first.cache_path_.name.startswith(model_text_sha256(model.model_text()))
    key = tmp_path / ".key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p != key]
    stamp = first.cache_path_.stat().st_mtime_ns
    second = CompiledScorer.from_model(model, cache_dir=tmp_path)
    assert second.from_cache_ and second.backend_ == "lleaves"
    assert second.cache_path_.stat().st_mtime_ns == stamp  # not rewritten
    enc = model.schema_.encode(X)
    assert np.array_equal(second.predict_raw(enc), first.predict_raw(enc))


def test_a_loaded_artifact_compiles_to_the_same_key(fitted, tmp_path: Path) -> None:
    model, X = fitted
    model.save(tmp_path / "artifact")
    loaded = load_model(tmp_path / "artifact")
    a = CompiledScorer.from_model(model, cache_dir=tmp_path / "cache")
    b = CompiledScorer.from_model(loaded, cache_dir=tmp_path / "cache")
    assert a.model_sha256_ == b.model_sha256_ and b.from_cache_
    assert _max_gap(b.predict_raw(loaded.schema_.encode(X)), model.decision_function(X)) <= TOL


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_object_is_refused_and_recompiled(fitted, tmp_path: Path, caplog) -> None:
    model, X = fitted
    first = CompiledScorer.from_model(model, cache_dir=tmp_path)
    _flip_last_byte(first.cache_path_)
    with caplog.at_level(logging.WARNING, logger="lendml.models.compiled"):
        again = CompiledScorer.from_model(model, cache_dir=tmp_path)
    assert not again.from_cache_ and again.backend_ == "lleaves"
    assert "does not match the sha256" in caplog.text
    enc = model.schema_.encode(X)
    assert _max_gap(again.predict_raw(enc), model.decision_function(X)) <= TOL
    assert CompiledScorer.from_model(model, cache_dir=tmp_path).from_cache_  # rewritten


def test_object_with_a_rewritten_header_is_refused(fitted, tmp_path: Path, caplog) -> None:
    """Someone who changes the object and fixes its sha256 in the header still lacks the
    cache's key: the signature fails."""
    import hashlib

    model, _ = fitted
    first = CompiledScorer.from_model(model, cache_dir=tmp_path)
    path = first.cache_path_
    data = path.read_bytes()
    magic = len(b"LENDML-COMPILED\x00")
    head_len = int.from_bytes(data[magic : magic + 8], "big")
    head = json.loads(data[magic + 8 : magic + 8 + head_len])
    tag = data[magic + 8 + head_len : magic + 8 + head_len + 32]
    obj = bytearray(data[magic + 8 + head_len + 32 :])
    obj[-1] ^= 0xFF
    head["object_sha256"] = hashlib.sha256(bytes(obj)).hexdigest()
    new_head = json.dumps(head, sort_keys=True).encode()
    path.write_bytes(data[:magic] + len(new_head).to_bytes(8, "big") + new_head + tag + bytes(obj))
    with caplog.at_level(logging.WARNING, logger="lendml.models.compiled"):
        again = CompiledScorer.from_model(model, cache_dir=tmp_path)
    assert not again.from_cache_
    assert "signature does not verify" in caplog.text


def test_foreign_object_is_refused(fitted, tmp_path: Path, caplog) -> None:
    """Another model's entry copied under this model's name, and an entry signed with
    another cache's key (e.g. copied from another machine or a registry download)."""
    model, X = fitted
    other = LightGBMModel(n_estimators=3, num_leaves=4, early_stopping_rounds=0).fit(
        X, (X["utilization"] > 0.5).astype(int)
    )
    mine = CompiledScorer.from_model(model, cache_dir=tmp_path / "a")
    theirs = CompiledScorer.from_model(other, cache_dir=tmp_path / "a")
    theirs.cache_path_.replace(mine.cache_path_)
    with caplog.at_level(logging.WARNING, logger="lendml.models.compiled"):
        again = CompiledScorer.from_model(model, cache_dir=tmp_path / "a")
    assert not again.from_cache_
    assert "compiled from another model" in caplog.text
    enc = model.schema_.encode(X)
    assert _max_gap(again.predict_raw(enc), model.decision_function(X)) <= TOL

    caplog.clear()
    elsewhere = CompiledScorer.from_model(model, cache_dir=tmp_path / "b")
    (tmp_path / "a" / elsewhere.cache_path_.name).write_bytes(elsewhere.cache_path_.read_bytes())
    with caplog.at_level(logging.WARNING, logger="lendml.models.compiled"):
        again = CompiledScorer.from_model(model, cache_dir=tmp_path / "a")
    assert not again.from_cache_
    assert "signature does not verify" in caplog.text


def test_garbage_in_the_cache_is_refused(fitted, tmp_path: Path, caplog) -> None:
    model, _ = fitted
    first = CompiledScorer.from_model(model, cache_dir=tmp_path)
    first.cache_path_.write_bytes(b"\x7fELF not an entry")
    with caplog.at_level(logging.WARNING, logger="lendml.models.compiled"):
        again = CompiledScorer.from_model(model, cache_dir=tmp_path)
    assert not again.from_cache_ and again.backend_ == "lleaves"
    assert "not a lendml compiled-object file" in caplog.text


def test_no_cache_writes_nothing(fitted, tmp_path: Path) -> None:
    model, X = fitted
    scorer = CompiledScorer.from_model(model, cache_dir=tmp_path, use_cache=False)
    assert scorer.backend_ == "lleaves" and scorer.cache_path_ is None
    assert list(tmp_path.iterdir()) == []
    assert _max_gap(scorer.predict_raw(model.schema_.encode(X)), model.decision_function(X)) <= TOL


def test_fallback_when_compiling_fails(fitted, tmp_path: Path, monkeypatch, caplog) -> None:
    model, X = fitted

    def broken(self, *args, **kwargs):
        raise RuntimeError("LLVM is not available")

    import lleaves

    monkeypatch.setattr(lleaves.Model, "compile", broken)
    with caplog.at_level(logging.WARNING, logger="lendml.models.compiled"):
        scorer = CompiledScorer.from_model(model, cache_dir=tmp_path)
    assert scorer.backend_ == "lightgbm"
    assert "LLVM is not available" in scorer.fallback_reason_
    assert "Booster.predict instead of compiled code" in caplog.text
    enc = model.schema_.encode(X)
    assert np.array_equal(scorer.predict_raw(enc), model.decision_function(X))


def test_fallback_when_the_compiled_code_disagrees(fitted, tmp_path, monkeypatch) -> None:
    model, _ = fitted
    import lleaves

    real = lleaves.Model.predict
    monkeypatch.setattr(
        lleaves.Model, "predict", lambda self, data, n_jobs=None: real(self, data, n_jobs) + 1e-6
    )
    scorer = CompiledScorer.from_model(model, cache_dir=tmp_path)
    assert scorer.backend_ == "lightgbm"
    assert "differs from LightGBM" in scorer.fallback_reason_


def test_compile_off_and_bad_arguments(fitted, tmp_path: Path) -> None:
    model, _ = fitted
    off = CompiledScorer.from_model(model, cache_dir=tmp_path, compile=False)
    assert off.backend_ == "lightgbm" and list(tmp_path.iterdir()) == []
    with pytest.raises(DataValidationError, match=r"shape \(n_rows, 4\)"):
        off.predict_raw(np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="n_jobs"):
        CompiledScorer.from_model(model, n_jobs=0)
    from lendml.models.scorecard import ScorecardModel

    with pytest.raises(ConfigError, match="only LightGBM models compile"):
        CompiledScorer.from_model(ScorecardModel())


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LENDML_COMPILED_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("LENDML_COMPILED_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "lendml" / "compiled"
    assert os.fspath(default_cache_dir()).endswith(os.path.join("lendml", "compiled"))


def test_an_unwritable_cache_still_scores_compiled(fitted, tmp_path: Path, caplog) -> None:
    model, X = fitted
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="lendml.models.compiled"):
        scorer = CompiledScorer.from_model(model, cache_dir=blocker)
    assert scorer.backend_ == "lleaves" and not scorer.from_cache_
    assert "Could not cache the compiled model" in caplog.text
    assert _max_gap(scorer.predict_raw(model.schema_.encode(X)), model.decision_function(X)) <= TOL
