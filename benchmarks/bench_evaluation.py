"""Benchmark: the full evaluation of 1M scored rows, report and JSON included.

Run: .venv/bin/python benchmarks/bench_evaluation.py --rows 1000000 --repeat 3

Synthetic rows: labels drawn from a latent risk, a model score and a champion score, the
training scores as the PSI reference, 20 features (16 numeric, 4 categorical) for the CSI
against a reference of the same size, a protected attribute with missing values, a
product segment and 12 months of application dates. One run = ``evaluate(...)`` +
``write_html`` + ``write_json``; the figure is the median of ``--repeat`` runs.

Anchor, in the same process on the same rows: scikit-learn's ``roc_auc_score`` +
``log_loss`` + ``brier_score_loss``, i.e. the three numbers a bare training script would
print. Goal: ≤ 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from lendml.evaluation import evaluate

GOAL_SECONDS = 30.0


def synth(rows: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=rows)
    p_true = 1 / (1 + np.exp(-(-2.8 + 1.1 * latent)))
    y = (rng.uniform(size=rows) < p_true).astype(np.int8)
    score = 1 / (1 + np.exp(-(-2.8 + latent + rng.normal(scale=0.5, size=rows))))
    champion = 1 / (1 + np.exp(-(-2.8 + 0.8 * latent + rng.normal(scale=0.8, size=rows))))
    ref_latent = rng.normal(loc=0.05, size=rows)
    reference_score = 1 / (1 + np.exp(-(-2.8 + ref_latent + rng.normal(scale=0.5, size=rows))))

    def features(base: np.ndarray, shift: float) -> pd.DataFrame:
        cols = {}
        for i in range(16):
            x = 0.3 * base + rng.normal(loc=shift * (i % 3), size=rows)
            x[rng.uniform(size=rows) < 0.02] = np.nan
            cols[f"num_{i:02d}"] = x
        for i in range(4):
            levels = [f"L{j}" for j in range(3 + 2 * i)]
            cols[f"cat_{i}"] = rng.choice(levels, rows)
        return pd.DataFrame(cols)

    return {
        "y": y,
        "score": score,
        "reference_score": reference_score,
        "champion": champion,
        "features": features(latent, 0.05),
        "reference_features": features(ref_latent, 0.0),
        "protected": pd.DataFrame(
            {"sex": rng.choice(np.array(["F", "M", None], dtype=object), rows, p=[0.47, 0.5, 0.03])}
        ),
        "segments": pd.DataFrame({"product": rng.choice(["card", "loan", "bnpl", "auto"], rows)}),
        "periods": pd.Series(
            pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
        ),
    }


def run_once(d: dict, out: Path) -> tuple[float, dict[str, float], object]:
    t0 = time.perf_counter()
    ev = evaluate(
        d["y"],
        d["score"],
        reference_score=d["reference_score"],
        features=d["features"],
        reference_features=d["reference_features"],
        segments=d["segments"],
        periods=d["periods"],
        protected=d["protected"],
        cutoff=0.1,
        champion_score=d["champion"],
        info={"model_name": "bench", "model_version": "1"},
    )
    t1 = time.perf_counter()
    ev.write_html(out / "evaluation.html")
    t2 = time.perf_counter()
    ev.write_json(out / "evaluation.json")
    t3 = time.perf_counter()
    return t3 - t0, {"evaluate": t1 - t0, "html": t2 - t1, "json": t3 - t2}, ev


def anchor_once(d: dict) -> float:
    t0 = time.perf_counter()
    roc_auc_score(d["y"], d["score"])
    log_loss(d["y"], d["score"])
    brier_score_loss(d["y"], d["score"])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    d = synth(args.rows)
    print(
        f"synthetic data: {args.rows:,} rows, 20 features x 2 frames in {time.perf_counter() - t0:.1f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        times, anchors = [], []
        ev = None
        for i in range(args.repeat):
            anchors.append(anchor_once(d))
            secs, parts, ev = run_once(d, out)
            times.append(secs)
            split = ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
            print(f"run {i + 1}: {secs:.2f} s ({split}); anchor {anchors[-1]:.2f} s")
        html_kb = (out / "evaluation.html").stat().st_size / 1024
        json_kb = (out / "evaluation.json").stat().st_size / 1024
    med, med_anchor = statistics.median(times), statistics.median(anchors)
    auc = ev.discrimination.auc
    print()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cores available: {os.cpu_count()}, peak RSS {rss_mib:,.0f} MiB (data included)")
    print(
        f"AUC {auc.auc:.4f} ± {auc.se:.5f} (DeLong), PSI(score) {ev.score_stability.value:.4f}, "
        f"vs champion {ev.comparison.verdict}"
    )
    print(f"report: HTML {html_kb:,.0f} KiB, JSON {json_kb:,.0f} KiB")
    print(
        f"lendml evaluate + write_html + write_json, median of {args.repeat}: {med:.2f} s "
        f"(goal <= {GOAL_SECONDS:.0f} s: {'met' if med <= GOAL_SECONDS else 'NOT met'})"
    )
    print(f"anchor roc_auc_score + log_loss + brier_score_loss, median: {med_anchor:.2f} s")
    print(f"ratio: {med / med_anchor:.1f}x the anchor")


if __name__ == "__main__":
    main()
