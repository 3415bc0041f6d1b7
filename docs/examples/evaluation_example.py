"""docs/evaluation.md in one file: score a test set, evaluate it, write the report.

Run: python docs/examples/evaluation_example.py [FOLDER]

The data is a small synthetic portfolio so the example runs anywhere in a few seconds; in
a training run the same call receives the test-set labels and the model's P(bad).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lendml.evaluation import Evaluation, evaluate


def portfolio(n: int, *, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Applications with two features, a segment, a date, a protected attribute and an outcome."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5 + shift, 0.5, n)
    utilization = np.clip(rng.beta(2, 5, n) + shift, 0, 1)
    risk = -3.0 + 2.5 * utilization - 0.6 * (np.log(income) - 10.5) + rng.normal(0, 0.6, n)
    return pd.DataFrame(
        {
            "income": income,
            "utilization": utilization,
            "product": rng.choice(["card", "personal_loan", "bnpl"], n, p=[0.5, 0.3, 0.2]),
            "applied_at": pd.Timestamp("2024-01-01")
            + pd.to_timedelta(rng.integers(0, 180, n), unit="D"),
            # Protected attributes: never model inputs, only used to test the decisions.
            "age_band": rng.choice(["18-25", "26-40", "41-65", "65+"], n, p=[0.15, 0.4, 0.35, 0.1]),
            "defaulted": (rng.uniform(size=n) < 1 / (1 + np.exp(-risk))).astype(int),
        }
    )


def p_bad(frame: pd.DataFrame, *, use_income: bool = True) -> np.ndarray:
    """A stand-in model: a logistic score of the features (the champion lacks income)."""
    z = -3.0 + 2.5 * frame["utilization"]
    if use_income:
        z = z - 0.6 * (np.log(frame["income"]) - 10.5)
    return (1 / (1 + np.exp(-z))).to_numpy()


def main(folder: Path) -> Evaluation:
    train = portfolio(20_000, seed=1)
    test = portfolio(10_000, seed=2, shift=0.03)
    features = ["income", "utilization"]

    ev = evaluate(
        test["defaulted"],
        p_bad(test),
        reference_score=p_bad(train),  # PSI of the score, bins frozen on training
        features=test[features],  # CSI per feature
        reference_features=train[features],
        segments=test[["product"]],
        periods=test["applied_at"],  # by month
        protected=test[["age_band"]],
        cutoff=0.10,  # approve when P(bad) < 10 %
        champion_score=p_bad(test, use_income=False),  # the model in production today
        margin=0.01,
        info={
            "model_name": "pd_unsecured",
            "model_version": "7",
            "model_kind": "logistic (example)",
            "intended_use": "Probability of 12-month default for unsecured lending decisions.",
            "data_windows": {"train": "2023-01..2023-12", "test": "2024-01..2024-06"},
            "feature_service": "unsecured_v2",
            "training_set_fingerprint": "sha256:example",
            "run_id": "example-run",
            "immature_labels": 0,
        },
    )
    folder.mkdir(parents=True, exist_ok=True)
    ev.write_json(folder / "evaluation.json")
    ev.write_html(folder / "evaluation.html")
    ev.write_model_card(folder / "model_card.md")
    return ev


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    result = main(out)
    d = result.discrimination
    print(f"AUC {d.auc.auc:.4f} [{d.auc.ci_low:.4f}, {d.auc.ci_high:.4f}], KS {d.ks:.4f}")
    print(f"vs champion: {result.comparison.verdict} (diff {result.comparison.diff:+.4f})")
    print(f"report: {out / 'evaluation.html'}")
