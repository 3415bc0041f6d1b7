"""evaluate(): the full result, its JSON, the offline HTML report and the model card."""

from __future__ import annotations

import ast
import doctest
import importlib
import json
import pkgutil
import re
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lendml.evaluation as evaluation
from lendml.errors import ConfigError
from lendml.evaluation import Evaluation, evaluate
from lendml.evaluation.model_card import SECTIONS

ROOT = Path(__file__).resolve().parents[2]
N = 4000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    z = rng.normal(size=N)
    p = 1 / (1 + np.exp(-(-2.2 + 1.1 * z)))
    y = (rng.uniform(size=N) < p).astype(int)
    score = 1 / (1 + np.exp(-(-2.2 + z + rng.normal(scale=0.4, size=N))))
    champion = 1 / (1 + np.exp(-(-2.2 + 0.7 * z + rng.normal(scale=0.9, size=N))))
    ref_z = rng.normal(size=N)
    reference_score = 1 / (1 + np.exp(-(-2.2 + ref_z)))
    features = pd.DataFrame({"x": z + rng.normal(size=N), "grade": rng.choice(list("ABC"), N)})
    reference_features = pd.DataFrame(
        {"x": ref_z + rng.normal(size=N), "grade": rng.choice(list("ABCD"), N)}
    )
    sex = rng.choice(["F", "M", None], N, p=[0.45, 0.5, 0.05])
    protected = pd.DataFrame({"sex": sex, "age_band": rng.choice(["18-25", "26-64", "65+"], N)})
    # A segment with one class only: its AUC must be NaN, with the reason in the table.
    product = np.where(np.arange(N) < 12, "tiny", rng.choice(["card", "loan"], N))
    y[:12] = 0
    periods = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 200, N), unit="D")
    # Score the decline rule so that one group is clearly disadvantaged.
    score = np.where(sex == "M", np.minimum(score * 1.8, 1.0), score)
    return {
        "y": y,
        "score": score,
        "kwargs": {
            "reference_score": reference_score,
            "features": features,
            "reference_features": reference_features,
            "segments": pd.DataFrame({"product": product}),
            "periods": pd.Series(periods),
            "protected": protected,
            "cutoff": 0.15,
            "champion_score": champion,
            "info": {
                "model_name": "pd_<card>",
                "model_version": "4",
                "model_kind": "lightgbm",
                "run_id": "run-123",
                "feature_service": "card_v2",
                "feature_service_version": 3,
                "training_set_fingerprint": "sha256:abc",
                "data_windows": {"train": "2022-01..2023-06", "test": "2024-01..2024-07"},
                "intended_use": "Approve or decline card applications.",
                "immature_labels": 321,
                "limitations": ["Trained before the 2024 rate rise."],
            },
        },
    }


@pytest.fixture(scope="module")
def ev(data) -> Evaluation:
    return evaluate(data["y"], data["score"], **data["kwargs"])


def test_every_part_is_computed(ev, data):
    assert ev.n == N and ev.n_bad == data["y"].sum()
    assert 0.5 < ev.discrimination.auc.auc < 1
    assert ev.score_stability is not None and set(ev.feature_stability) == {"x", "grade"}
    assert list(ev.segments) == ["product"]
    assert ev.periods is not None and ev.periods["period"].iloc[0] == "2024-01"
    assert ev.fairness is not None and ev.comparison is not None
    assert ev.comparison.auc_challenger == pytest.approx(ev.discrimination.auc.auc)
    summary = ev.stability_summary
    assert summary["variable"].tolist()[0] == "score"
    assert summary.set_index("variable").loc["grade", "level"] == "significant"  # 'D' vanished


def test_one_class_segment_is_nan_with_its_reason(ev):
    tiny = ev.segments["product"].set_index("product").loc["tiny"]
    assert np.isnan(tiny["auc"]) and "one class only" in tiny["note"]
    assert any("AUC is undefined (one class only) in: product = tiny" in x for x in ev.limitations)


def test_limitations_collect_what_a_reader_must_know(ev):
    text = "\n".join(ev.limitations)
    assert "321 rows were left out" in text
    assert "Adverse impact ratio below 0.8" in text and "sex = M" in text
    assert "grade" in text  # significant CSI
    assert "Trained before the 2024 rate rise." in text


def test_json_round_trips_with_no_nan_tokens(ev, tmp_path):
    path = ev.write_json(tmp_path / "out" / "evaluation.json")
    text = Path(path).read_text()
    assert not re.search(r"\bNaN\b|\bInfinity\b", text)

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    d = json.loads(text, parse_constant=refuse)
    assert d["format"] == "lendml.evaluation/1"
    assert d["discrimination"]["auc"]["auc"] == pytest.approx(ev.discrimination.auc.auc)
    assert d["metrics"]["auc"] == pytest.approx(ev.discrimination.auc.auc)
    tiny = next(r for r in d["segments"]["product"] if r["product"] == "tiny")
    assert tiny["auc"] is None  # NaN → null
    assert len(d["gains"]) == len(ev.gains)
    assert d["stability"]["features"]["x"]["bins"]["kind"] == "numeric"
    assert d["fairness"]["n_flagged"] >= 1
    assert d["comparison"]["verdict"] == ev.comparison.verdict
    assert d["info"]["data_windows"]["test"] == "2024-01..2024-07"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["evaluation.json"]  # no temp left


def test_html_is_self_contained_and_has_every_figure(ev, tmp_path):
    path = ev.write_html(tmp_path / "report.html")
    html = Path(path).read_text()
    assert not re.search(r"https?://", html)
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\((?!#)", html, re.I)
    for salt in ("roc", "reliability", "gains", "distribution", "psi", "fairness", "periods"):
        assert f'aria-label="{salt}"' in html, salt
    assert html.count("<svg") == 7
    assert html.count("<table") >= 12
    # Escaped, never injected.
    assert "pd_&lt;card&gt;" in html and "pd_<card>" not in html
    for heading in (
        "Discrimination",
        "Calibration",
        "Gains and lift",
        "Stability",
        "Fair lending",
        "Champion comparison",
        "Limitations",
    ):
        assert f"<h2>{heading}" in html
    assert f"{ev.discrimination.auc.auc:.4f}" in html


def test_every_json_table_is_in_the_html(ev):
    html = ev.to_html()
    d = ev.to_dict()
    # A few figures from each table, formatted as the report prints them.
    assert f"{d['calibration']['ece']:.4f}" in html
    assert f"{ev.gains['lift'].iloc[0]:.4f}" in html
    assert f"{ev.score_stability.value:.4f}" in html
    flagged = ev.fairness.flagged.iloc[0]
    assert f"{flagged['air']:.4f}" in html
    assert f"{ev.comparison.diff:.4f}" in html


def test_model_card_mentions_every_section(ev, tmp_path):
    card = ev.model_card()
    for section in SECTIONS:
        assert f"## {section}" in card, section
    assert card.startswith("# Model card: pd_<card> 4")
    assert "Approve or decline card applications." in card
    assert "sha256:abc" in card and "card_v2" in card
    assert "FLAG" in card and "four-fifths" in card
    assert f"{ev.discrimination.auc.ci_low:.4f}" in card
    assert ev.comparison.verdict in card
    path = ev.write_model_card(tmp_path / "card.md")
    assert Path(path).read_text() == card


def test_other_info_keys_are_listed_readably():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.6, 300)
    y = (rng.uniform(size=300) < p).astype(int)
    info = {"excluded": {"immature": 12, "no_label": 3}, "tags": ["a", "b"]}
    ev = evaluate(y, p, info=info)
    card = ev.model_card()
    assert "| excluded | immature: 12; no_label: 3 |" in card and "| tags | a, b |" in card
    assert "<th>excluded</th><td>immature: 12; no_label: 3</td>" in ev.to_html()


def test_minimal_evaluation_says_what_was_not_assessed():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.6, 500)
    y = (rng.uniform(size=500) < p).astype(int)
    ev = evaluate(y, p)
    assert ev.score_stability is None and ev.fairness is None and ev.comparison is None
    text = " ".join(ev.limitations)
    assert "Score stability was not assessed" in text and "Fair lending was not assessed" in text
    html = ev.to_html()
    assert html.count("<svg") == 4 and "Not assessed" in html
    card = ev.model_card()
    assert all(f"## {s}" in card for s in SECTIONS) and "No champion score was given." in card
    d = json.loads(ev.to_json())
    assert d["fairness"] is None and d["stability"]["score"] is None


def test_fairness_without_cutoff_is_reported_as_score_gaps(data):
    kwargs = {**data["kwargs"], "cutoff": None}
    ev = evaluate(data["y"], data["score"], **kwargs)
    assert ev.fairness.table["air"].isna().all()
    assert any("No cutoff was given" in x for x in ev.limitations)
    assert ev.to_html().count("<svg") == 6  # no approval-rate chart


def test_protected_attribute_among_features_is_called_out(data):
    kw = data["kwargs"]
    feats = kw["features"].assign(sex=kw["protected"]["sex"])
    ref = kw["reference_features"].assign(sex=kw["protected"]["sex"])
    ev = evaluate(
        data["y"],
        data["score"],
        features=feats,
        reference_features=ref,
        protected=kw["protected"],
        cutoff=0.15,
    )
    assert any("['sex'] also appear among the features" in x for x in ev.limitations)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"features": pd.DataFrame({"x": np.zeros(N)})},
            "features and reference_features go together",
        ),
        (
            {
                "features": pd.DataFrame({"x": np.zeros(N)}),
                "reference_features": pd.DataFrame({"y": [1.0]}),
            },
            r"only in features: \['x'\], only in reference_features: \['y'\]",
        ),
        ({"segments": pd.DataFrame({"s": ["a"] * 3})}, f"segments has 3 rows but y_true has {N:,}"),
        ({"champion_score": np.full(N, np.nan)}, f"champion has {N:,} NaN score"),
        ({"cutoff": 1.5}, r"cutoff must be a number in \(0.0, 1.0\); got 1.5"),
        ({"alpha": 0.7}, r"alpha must be a number in \(0.0, 0.5\); got 0.7"),
        ({"info": ["model"]}, "info must be a mapping of model facts"),
        ({"info": {"immature_labels": -3}}, r"immature_labels.*got -3"),
        ({"period_freq": "fortnight", "periods": None}, "period_freq 'fortnight'"),
        ({"reference_score": [np.nan]}, r"reference_score has 1 NaN score"),
    ],
)
def test_evaluate_refusals(data, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        evaluate(data["y"], data["score"], **kwargs)


def test_evaluate_refuses_one_class_and_nan_scores():
    with pytest.raises(ConfigError, match=r"one class only \(0 bad out of 3 rows\)"):
        evaluate([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match=r"score has 1 NaN score\(s\) out of 3"):
        evaluate([0, 1, 0], [0.1, np.nan, 0.3])


def test_metrics_are_flat_floats(ev):
    m = ev.metrics()
    assert all(isinstance(v, float) for v in m.values())
    assert {"auc", "gini", "ks", "psi_score", "air_min", "p_noninferiority"} <= set(m)


def test_docs_example_runs(tmp_path):
    mod = runpy.run_path(str(ROOT / "docs" / "examples" / "evaluation_example.py"))
    ev = mod["main"](tmp_path)
    assert isinstance(ev, Evaluation)
    for name in ("evaluation.json", "evaluation.html", "model_card.md"):
        assert (tmp_path / name).stat().st_size > 1000
    assert ev.comparison is not None and ev.comparison.diff > 0
    doc = (ROOT / "docs" / "evaluation.md").read_text()
    assert "docs/examples/evaluation_example.py" in doc


def test_public_api_is_sorted_and_importable():
    assert evaluation.__all__ == sorted(evaluation.__all__)
    for name in evaluation.__all__:
        assert hasattr(evaluation, name), name


def test_docstring_examples_run():
    failures = 0
    for info in pkgutil.iter_modules(evaluation.__path__, "lendml.evaluation."):
        module = importlib.import_module(info.name)
        failures += doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed
    assert failures == 0


def test_evaluation_imports_only_errors_and_core_from_lendml():
    package = Path(evaluation.__file__).parent
    allowed = ("lendml.errors", "lendml.core", "lendml.evaluation")
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name == "lendml" or name.startswith("lendml."):
                    assert name.startswith(allowed), f"{path.name} imports {name}"


def test_nothing_changes_matplotlib_global_backend(ev):
    import matplotlib

    before = matplotlib.get_backend()
    rc = dict(matplotlib.rcParams)
    ev.to_html()
    assert matplotlib.get_backend() == before
    assert dict(matplotlib.rcParams) == rc
