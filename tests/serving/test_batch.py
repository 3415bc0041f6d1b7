"""Batch scoring of files: same scores as the model, any chunking, CSV and Parquet, reasons
that match the explainer, clear errors and no output when the input is bad."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lendml.errors import ConfigError, DataValidationError
from lendml.models import (
    FeatureSchema,
    ReferencePoint,
    TreeExplainer,
    load_model,
    reason_codes,
    reference_point,
)
from lendml.models.lightgbm import LightGBMModel
from lendml.serving.batch import score_file

TOL = 1e-9
LEVELS = ("rent", "own", "mortgage", "other")


def applicants(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    dti = rng.normal(size=n)
    dti[rng.random(n) < 0.1] = np.nan
    housing = rng.choice(np.asarray(LEVELS, dtype=object), size=n)
    housing[rng.random(n) < 0.05] = None
    frame = pd.DataFrame(
        {
            "application_id": [f"A{i:05d}" for i in range(n)],
            "dti": dti,
            "housing": pd.Series(list(housing), dtype=object),
            "utilization": rng.uniform(size=n),
            "inquiries": rng.poisson(1.0, n).astype(np.int64),
            "age": rng.integers(21, 80, n),  # a protected attribute, and a model input here
        }
    )
    logit = (
        -1.0
        + np.nan_to_num(dti)
        + 1.5 * frame["utilization"]
        + 0.3 * frame["inquiries"]
        + 0.7 * (frame["housing"] == "rent")
        + 0.02 * (frame["age"] - 50)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y.to_numpy()


FEATURES = ["dti", "housing", "utilization", "inquiries", "age"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> LightGBMModel:
    """A small LightGBM model saved and loaded back, with a reference point and
    ``age`` recorded as protected, as training stores them."""
    X, y = applicants(2000, 1)
    schema = FeatureSchema.infer(X[FEATURES], monotone={"utilization": 1})
    fitted = LightGBMModel(
        n_estimators=15, num_leaves=15, min_child_samples=10, early_stopping_rounds=0
    ).fit(X[FEATURES], y, schema=schema)
    p_bad = fitted.predict_proba(X[FEATURES])[:, 1]
    ref = reference_point(fitted, X[FEATURES], p_bad, cutoff=0.5, side="below")
    folder = tmp_path_factory.mktemp("model") / "artifact"
    fitted.save(folder, metadata={"reference_point": ref.to_dict(), "protected": ["age"]})
    return load_model(folder)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    X, _ = applicants(1234, 2)
    X.loc[3, "housing"] = "caravan"  # never seen in training
    X.loc[7, "housing"] = "castle"
    return X


@pytest.fixture
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "compiled-cache"


def read(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_scores_match_the_model(model, frame, tmp_path, cache) -> None:
    frame.to_parquet(tmp_path / "in.parquet")
    summary = score_file(
        model,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        keep=["application_id"],
        cache_dir=cache,
    )
    out = read(tmp_path / "out.parquet")
    assert list(out.columns) == ["application_id", "score", "probability"]
    assert summary.columns == list(out.columns)
    assert summary.rows == len(frame) == len(out) and summary.backend == "lleaves"
    assert out["application_id"].tolist() == frame["application_id"].tolist()
    expected = model.decision_function(frame)
    assert np.max(np.abs(out["score"].to_numpy() - expected)) <= TOL
    assert np.max(np.abs(out["probability"] - model.predict_proba(frame)[:, 1])) <= TOL
    assert summary.unknown_categories == {
        "housing": {"count": 2, "examples": ["caravan", "castle"]}
    }
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("chunk_rows", [1, 7, 500])
def test_chunk_boundaries_do_not_change_the_result(model, frame, tmp_path, cache, chunk_rows):
    small = frame.iloc[:40] if chunk_rows == 1 else frame
    pq.write_table(pa.Table.from_pandas(small), tmp_path / "in.parquet", row_group_size=13)
    one = score_file(
        model, tmp_path / "in.parquet", tmp_path / "one.parquet", reasons=True, cache_dir=cache
    )
    many = score_file(
        model,
        tmp_path / "in.parquet",
        tmp_path / "many.parquet",
        reasons=True,
        chunk_rows=chunk_rows,
        cache_dir=cache,
    )
    assert one.chunks == 1 and many.chunks == -(-len(small) // chunk_rows)
    pd.testing.assert_frame_equal(read(tmp_path / "one.parquet"), read(tmp_path / "many.parquet"))


def test_csv_and_gzipped_csv_give_the_parquet_scores(model, frame, tmp_path, cache) -> None:
    frame.to_parquet(tmp_path / "in.parquet")
    frame.to_csv(tmp_path / "in.csv", index=False)
    with gzip.open(tmp_path / "in.csv.gz", "wt") as fh:
        frame.to_csv(fh, index=False)
    score_file(model, tmp_path / "in.parquet", tmp_path / "p.parquet", cache_dir=cache)
    for name in ("in.csv", "in.csv.gz"):
        summary = score_file(
            model,
            tmp_path / name,
            tmp_path / f"{name}.parquet",
            keep=["application_id", "age"],
            chunk_rows=300,
            cache_dir=cache,
        )
        out = read(tmp_path / f"{name}.parquet")
        assert summary.rows == len(frame) and summary.chunks == 5
        # CSV carries no types: kept columns are copied as text, exactly as written,
        # unless they are features (then they are read as the model reads them)
        assert out["application_id"].tolist() == frame["application_id"].tolist()
        assert out["age"].tolist() == frame["age"].astype(float).tolist()
        np.testing.assert_allclose(
            out["score"], read(tmp_path / "p.parquet")["score"], rtol=0, atol=TOL
        )


def test_column_types_are_read_as_the_schema_reads_them(model, frame, tmp_path, cache) -> None:
    """Categoricals as dictionary, numerics as text and float32: same encoding as
    ``schema.encode`` of the frame."""
    table = pa.table(
        {
            "dti": pa.array(frame["dti"].astype("float32")),
            "housing": pa.array(frame["housing"]).dictionary_encode(),
            "utilization": pa.array(frame["utilization"].map(repr)),
            "inquiries": pa.array(frame["inquiries"], pa.int16()),
            "age": pa.array(frame["age"].astype(float)),
        }
    )
    pq.write_table(table, tmp_path / "typed.parquet")
    score_file(model, tmp_path / "typed.parquet", tmp_path / "out.parquet", cache_dir=cache)
    as_frame = pd.DataFrame(
        {
            "dti": frame["dti"].astype("float32").astype("float64"),
            "housing": frame["housing"],
            "utilization": frame["utilization"],
            "inquiries": frame["inquiries"],
            "age": frame["age"],
        }
    )
    expected = model.decision_function(as_frame)
    assert np.max(np.abs(read(tmp_path / "out.parquet")["score"] - expected)) <= TOL


def test_reasons_match_the_explainer(model, frame, tmp_path, cache) -> None:
    frame.to_parquet(tmp_path / "in.parquet")
    summary = score_file(
        model,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        reasons=True,
        keep=["application_id"],
        threads=2,
        chunk_rows=600,
        cache_dir=cache,
    )
    out = read(tmp_path / "out.parquet")
    assert summary.reference["source"] == "model metadata"
    assert summary.excluded == ["age"]
    explainer = TreeExplainer.from_model(model)
    ref = ReferencePoint.from_dict(model.metadata_["reference_point"], model.schema_)
    phi = explainer.contributions(model.schema_.encode(frame), ref)
    expected = reason_codes(phi, model.schema_.names, top=4, exclude=["age"])
    for i, reasons in enumerate(expected):
        codes = [None if pd.isna(c) else c for c in (out.at[i, f"reason_{k}"] for k in range(1, 5))]
        assert codes == [r.code for r in reasons] + [None] * (4 - len(reasons))
        for k, r in enumerate(reasons, start=1):
            assert abs(out.at[i, f"reason_{k}_contribution"] - r.contribution) <= 1e-12
    assert "age" not in set(out[[f"reason_{k}" for k in range(1, 5)]].stack())
    # age does raise the risk of some applicants: excluding it is what keeps it out
    unguarded = reason_codes(phi, model.schema_.names, top=4)
    assert any(r.code == "age" for row in unguarded for r in row)


def test_reference_from_a_file_and_extra_exclusions(model, frame, tmp_path, cache) -> None:
    frame.iloc[:200].to_parquet(tmp_path / "in.parquet")
    values = dict(model.metadata_["reference_point"]["values"], utilization=0.2)
    ref_doc = dict(model.metadata_["reference_point"], values=values)
    (tmp_path / "ref.json").write_text(json.dumps({"reference_point": ref_doc}))
    summary = score_file(
        model,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        reasons=True,
        reference=tmp_path / "ref.json",
        exclude=["dti"],
        top=2,
        cache_dir=cache,
    )
    out = read(tmp_path / "out.parquet")
    assert summary.reference["source"] == str(tmp_path / "ref.json")
    assert summary.excluded == ["age", "dti"]
    assert [c for c in out.columns if c.startswith("reason")] == [
        "reason_1",
        "reason_1_contribution",
        "reason_2",
        "reason_2_contribution",
    ]
    assert not ({"age", "dti"} & set(out[["reason_1", "reason_2"]].stack()))
    assert "utilization" in set(out["reason_1"])  # measured against the file's reference


def test_scorecard_scores_through_decision_function(frame, tmp_path) -> None:
    from lendml.models.scorecard import ScorecardModel

    X, y = applicants(1500, 4)
    card = ScorecardModel().fit(X[FEATURES], y)
    frame.to_csv(tmp_path / "in.csv", index=False)
    summary = score_file(card, tmp_path / "in.csv", tmp_path / "out.parquet", chunk_rows=500)
    assert summary.backend == "decision_function" and summary.chunks == 3
    expected = card.decision_function(frame[FEATURES])
    assert np.max(np.abs(read(tmp_path / "out.parquet")["score"] - expected)) <= TOL
    with pytest.raises(ConfigError, match="Reason codes are computed for LightGBM"):
        score_file(card, tmp_path / "in.csv", tmp_path / "r.parquet", reasons=True)


def test_empty_input_gives_an_empty_output_with_the_columns(model, frame, tmp_path, cache):
    frame.iloc[:0].to_parquet(tmp_path / "in.parquet")
    summary = score_file(
        model,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        keep=["application_id"],
        reasons=True,
        top=1,
        cache_dir=cache,
    )
    out = pq.read_table(tmp_path / "out.parquet")
    assert summary.rows == 0 and out.num_rows == 0
    assert out.column_names == [
        "application_id",
        "score",
        "probability",
        "reason_1",
        "reason_1_contribution",
    ]


# --------------------------------------------------------------------------- bad input
def fails(model, source: Path, target: Path, error, match: str, **options) -> None:
    with pytest.raises(error, match=match):
        score_file(model, source, target, cache_dir=source.parent / "cache", **options)
    assert not target.exists()
    assert leftovers(target.parent) == []


def test_missing_columns_are_named(model, frame, tmp_path) -> None:
    bad = frame.drop(columns=["dti", "inquiries"]).rename(columns={"utilization": "Utilization"})
    bad.to_parquet(tmp_path / "in.parquet")
    fails(
        model,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        DataValidationError,
        r"3 model feature\(s\) are not columns of the input: 'dti', 'utilization' "
        r"\(did you mean 'Utilization'\?\), 'inquiries'",
    )
    frame.to_parquet(tmp_path / "ok.parquet")
    fails(
        model,
        tmp_path / "ok.parquet",
        tmp_path / "out.parquet",
        DataValidationError,
        r"kept column\(s\) not in the input: 'app_id'",
        keep=["app_id"],
    )


def test_text_in_a_numeric_feature_is_shown(model, frame, tmp_path) -> None:
    bad = frame.astype({"dti": object})
    bad.loc[1100, "dti"] = "n.a."
    bad["dti"] = bad["dti"].map(lambda v: None if pd.isna(v) else str(v))
    bad.to_parquet(tmp_path / "in.parquet")
    fails(
        model,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        DataValidationError,
        r"Feature 'dti' must be numeric; .* such as \['n\.a\.'\] \(rows \[1100\]",
        chunk_rows=500,  # the bad value is in the third chunk: two were already written
    )


def test_bad_value_deep_in_a_csv(model, frame, tmp_path) -> None:
    bad = frame.copy().astype({"utilization": object})
    bad.loc[1200, "utilization"] = "high"
    bad.to_csv(tmp_path / "in.csv", index=False)
    fails(
        model,
        tmp_path / "in.csv",
        tmp_path / "out.parquet",
        DataValidationError,
        r"'high'.*Column 'utilization' must hold numbers",
        chunk_rows=100,
    )


def test_failed_run_keeps_the_previous_output(model, frame, tmp_path, cache) -> None:
    frame.to_parquet(tmp_path / "in.parquet")
    score_file(model, tmp_path / "in.parquet", tmp_path / "out.parquet", cache_dir=cache)
    before = (tmp_path / "out.parquet").read_bytes()
    frame.drop(columns=["age"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataValidationError, match="'age'"):
        score_file(model, tmp_path / "bad.parquet", tmp_path / "out.parquet", cache_dir=cache)
    assert (tmp_path / "out.parquet").read_bytes() == before
    assert leftovers(tmp_path) == []


def test_wrong_column_type_and_bad_options(model, frame, tmp_path) -> None:
    typed = frame.assign(age=pd.Timestamp("2026-01-01", tz="UTC"))
    typed.to_parquet(tmp_path / "in.parquet")
    fails(
        model,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        DataValidationError,
        r"'age' \(numeric\) is timestamp",
    )
    frame.to_parquet(tmp_path / "ok.parquet")
    for options, match in [
        ({"keep": ["score"]}, "Kept column"),
        ({"chunk_rows": 0}, "chunk_rows must be a positive"),
        ({"top": 5}, "top must be 1 to 4"),
        ({"threads": 0}, "threads must be a positive"),
    ]:
        fails(
            model, tmp_path / "ok.parquet", tmp_path / "out.parquet", ConfigError, match, **options
        )
    (tmp_path / "in.json").write_text("{}")
    fails(
        model, tmp_path / "in.json", tmp_path / "out.parquet", ConfigError, "Cannot tell the format"
    )
    fails(
        model,
        tmp_path / "missing.parquet",
        tmp_path / "out.parquet",
        DataValidationError,
        "does not exist",
    )
    with pytest.raises(ConfigError, match="is the input file"):
        score_file(model, tmp_path / "ok.parquet", tmp_path / "ok.parquet")


def test_reasons_need_a_reference(frame, tmp_path) -> None:
    X, y = applicants(500, 5)
    bare = LightGBMModel(n_estimators=3, early_stopping_rounds=0).fit(X[FEATURES], y)
    frame.to_parquet(tmp_path / "in.parquet")
    fails(
        bare,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        ConfigError,
        "has none stored with it",
        reasons=True,
    )
    (tmp_path / "ref.json").write_text('{"features": ["x"], "values": {"x": 1}}')
    fails(
        bare,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        DataValidationError,
        "belongs to another model version",
        reasons=True,
        reference=tmp_path / "ref.json",
    )
    (tmp_path / "broken.json").write_text("{not json")
    fails(
        bare,
        tmp_path / "in.parquet",
        tmp_path / "out.parquet",
        ConfigError,
        "not readable JSON",
        reasons=True,
        reference=tmp_path / "broken.json",
    )


def test_a_folder_of_parquet_files(model, frame, tmp_path, cache) -> None:
    (tmp_path / "book").mkdir()
    frame.iloc[:500].to_parquet(tmp_path / "book" / "part-0.parquet")
    frame.iloc[500:].to_parquet(tmp_path / "book" / "part-1.parquet")
    summary = score_file(
        model, tmp_path / "book", tmp_path / "out.parquet", keep=["application_id"], cache_dir=cache
    )
    out = read(tmp_path / "out.parquet")
    assert (
        summary.rows == len(frame)
        and out["application_id"].tolist() == frame["application_id"].tolist()
    )
    assert np.max(np.abs(out["score"] - model.decision_function(frame))) <= TOL
    with pytest.raises(ConfigError, match="inside the input folder"):
        score_file(model, tmp_path / "book", tmp_path / "book" / "scores.parquet")
    frame.iloc[:10].drop(columns=["dti"]).to_parquet(tmp_path / "book" / "part-2.parquet")
    fails(
        model,
        tmp_path / "book",
        tmp_path / "out2.parquet",
        DataValidationError,
        r"part-2.parquet.*lacks the column\(s\) \['dti'\]",
    )
