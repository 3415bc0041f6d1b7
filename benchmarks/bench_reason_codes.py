"""Benchmark: reason codes (exact Shapley against one reference point) vs LightGBM's SHAP.

Run: .venv/bin/python benchmarks/bench_reason_codes.py --rows 1000 --repeat 3

A 500-tree x 63-leaf LightGBM model (lendml's ``LightGBMModel``) on synthetic credit-like
data: 50 features — 40 numeric (incomes, ratios, counts with many zeros, some with 5-15%
missing) and 10 categorical (3 to 40 levels, some missing). The reference point is the
mean applicant approved just below the cutoff (``reference_point(..., side="below")``).

Figures, in the same process on the same encoded rows:

* rows/s of lendml — ``TreeExplainer.contributions`` + ``reason_codes`` (top 4, with the
  applicants' and the reference's readable values) — against LightGBM's
  ``predict(pred_contrib=True)`` (path-dependent TreeSHAP, LightGBM's default threads);
  medians of ``--repeat`` runs, interleaved; and per core, against ``pred_contrib`` with
  ``num_threads=1``. Goal: >= 10x against LightGBM's default threads.
* single-applicant latency p50 / p99 (serving explains one applicant at a time), against
  a one-row ``pred_contrib`` call.

lendml runs on one core (numpy); LightGBM uses all cores (2 here).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from lendml.models import TreeExplainer, reason_codes, reference_point
from lendml.models.lightgbm import LightGBMModel

GOAL_RATIO = 10.0


def credit_frame(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` applicants with 40 numeric and 10 categorical features and a bad outcome."""
    latent = rng.normal(size=n)
    cols: dict[str, np.ndarray] = {}
    logit = -2.0 + 0.9 * latent
    for i in range(40):
        kind = i % 4
        if kind == 0:  # amounts: log-normal, tied to risk
            x = np.exp(rng.normal(10 - 0.2 * latent * (i % 3), 0.6, size=n))
        elif kind == 1:  # ratios (utilisation, DTI)
            x = np.clip(rng.beta(2, 5, size=n) + 0.08 * latent, 0, 1.5)
        elif kind == 2:  # counts (inquiries, delinquencies): many zeros
            x = rng.poisson(np.exp(-1 + 0.4 * latent)).astype(float)
        else:  # months on book, scores
            x = rng.normal(60 - 8 * latent, 20, size=n)
        if i % 5 == 0:
            x[rng.random(n) < 0.05 + 0.02 * (i % 6)] = np.nan
        cols[f"num_{i:02d}"] = x
        if i < 8:
            logit = logit + 0.15 * np.nan_to_num(x - np.nanmean(x)) / (np.nanstd(x) + 1e-9)
    for i in range(10):
        levels = np.asarray([f"c{j}" for j in range(3 + 4 * i)], dtype=object)
        idx = np.clip(
            (rng.normal(size=n) + 0.5 * latent) * len(levels) / 4 + len(levels) / 2,
            0,
            len(levels) - 1,
        ).astype(int)
        x = levels[idx]
        x[rng.random(n) < 0.03] = None
        cols[f"cat_{i}"] = x
        logit = logit + 0.2 * (idx % 3 == 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame(cols), y


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000, help="applicants explained per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--train-rows", type=int, default=20000)
    parser.add_argument("--single", type=int, default=300, help="one-row calls for latency")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    X_train, y_train = credit_frame(args.train_rows, rng)
    X_pop, _ = credit_frame(20000, rng)
    X_explain, _ = credit_frame(args.rows, rng)

    t = time.perf_counter()
    model = LightGBMModel(
        n_estimators=500,
        num_leaves=63,
        learning_rate=0.05,
        min_child_samples=20,
        early_stopping_rounds=0,
        seed=args.seed,
    ).fit(X_train, y_train)
    print(f"trained in {time.perf_counter() - t:.1f} s")
    booster = model.booster_

    t = time.perf_counter()
    explainer = TreeExplainer.from_model(model)
    build = time.perf_counter() - t
    print(
        f"explainer: {explainer.n_trees_} trees, {explainer.n_leaves_} leaves, "
        f"built in {build:.2f} s"
    )

    pop_scores = model.predict_proba(X_pop)[:, 1]
    cutoff = float(np.quantile(pop_scores, 0.8))  # decline the riskiest 20%
    ref = reference_point(model, X_pop, pop_scores, cutoff=cutoff, band=0.01, side="below")
    print(f"reference: {ref.n_rows} applicants within {ref.band:g} below cutoff {cutoff:.4f}")

    X = model.schema_.encode(X_explain)
    names = model.schema_.names
    raw = model.decision_function(X_explain)
    routing_exact = bool(np.array_equal(explainer.predict_raw(X), raw))
    r_raw = explainer.predict_raw(ref.encoded[None])[0]

    def ours() -> None:
        phi = explainer.contributions(X, ref)
        reason_codes(phi, names, top=4, values=X_explain, reference=ref)

    def anchor() -> None:
        booster.predict(X, pred_contrib=True, num_iteration=model.best_iteration_)

    def anchor_one_thread() -> None:
        booster.predict(X, pred_contrib=True, num_iteration=model.best_iteration_, num_threads=1)

    ours()  # warm the reference plan
    t_ours, t_anchor, t_anchor_1 = [], [], []
    for _ in range(args.repeat):
        t_anchor.append(timed(anchor))
        t_ours.append(timed(ours))
        t_anchor_1.append(timed(anchor_one_thread))
    phi = explainer.contributions(X, ref)
    efficiency = float(np.max(np.abs(phi.sum(axis=1) - (raw - r_raw))))
    n_reasons = np.mean([len(c) for c in reason_codes(phi, names, top=4)])

    single, single_anchor = [], []
    for i in range(args.single):
        row = X[i % len(X) : i % len(X) + 1]
        frame_row = X_explain.iloc[i % len(X) : i % len(X) + 1]

        def one(row=row, frame_row=frame_row) -> None:
            reason_codes(
                explainer.contributions(row, ref)[0], names, values=frame_row, reference=ref
            )

        single.append(timed(one))
        if i % 3 == 0:
            single_anchor.append(timed(lambda row=row: booster.predict(row, pred_contrib=True)))

    ours_rps = len(X) / statistics.median(t_ours)
    anchor_rps = len(X) / statistics.median(t_anchor)
    anchor_1_rps = len(X) / statistics.median(t_anchor_1)
    ratio = ours_rps / anchor_rps
    p50, p99 = np.percentile(single, [50, 99]) * 1e3
    a50, a99 = np.percentile(single_anchor, [50, 99]) * 1e3
    print()
    print(f"routing reproduces booster.predict(raw_score=True) exactly: {routing_exact}")
    print(f"efficiency: max |sum(phi) - (f(x) - f(r))| = {efficiency:.2e}")
    print(f"mean reasons per applicant (top 4): {n_reasons:.2f}")
    print()
    print("| figure | lendml | anchor (same run) | ratio | goal |")
    print("|---|---|---|---|---|")
    verdict = "met" if ratio >= GOAL_RATIO else "NOT met"
    print(
        f"| {len(X):,} applicants: contributions + top-4 reasons | {ours_rps:,.0f} rows/s "
        f"({statistics.median(t_ours) / len(X) * 1e3:.2f} ms/row) | LightGBM pred_contrib: "
        f"{anchor_rps:,.0f} rows/s ({statistics.median(t_anchor) / len(X) * 1e3:.2f} ms/row) "
        f"| **{ratio:.1f}x** | >= {GOAL_RATIO:g}x: {verdict} |"
    )
    print(
        f"| the same, per core | {ours_rps:,.0f} rows/s (one thread) | pred_contrib with "
        f"num_threads=1: {anchor_1_rps:,.0f} rows/s | {ours_rps / anchor_1_rps:.1f}x | — |"
    )
    print(
        f"| one applicant, p50 / p99 | {p50:.2f} ms / {p99:.2f} ms | one-row pred_contrib: "
        f"{a50:.2f} ms / {a99:.2f} ms | {a50 / p50:.1f}x / {a99 / p99:.1f}x | — |"
    )
    print(
        f"(medians of {args.repeat} runs; latency over {args.single} and "
        f"{len(single_anchor)} calls)"
    )


if __name__ == "__main__":
    main()
