"""Benchmark: batch scoring of a file (compiled trees) vs LightGBM's Booster.predict.

Run: .venv/bin/python benchmarks/serving/bench_batch.py --repeat 3
Smoke run: .venv/bin/python benchmarks/serving/bench_batch.py --quick

A LightGBM model of 500 trees x 63 leaves (lendml's ``LightGBMModel``, saved and loaded
back as an artifact) over 200 features — 180 numeric (amounts, ratios, counts with many
zeros, scores; some with 5-15% missing) and 20 categorical (3 to 60 levels, some
missing) — scores a 1M-row Parquet file. Figures, in one process, the contenders
interleaved, medians of ``--repeat`` runs:

* lendml ``score_file`` (read Parquet in 100k-row chunks, check and encode, compiled
  lleaves code on every core, write Parquet) against LightGBM ``Booster.predict(X,
  raw_score=True)`` on the same rows already encoded in memory (LightGBM's default
  threads: every core). The anchor reads and writes nothing, so the ratio is
  conservative; the compiled scorer alone on the in-memory matrix is printed beside it.
  Goal: >= 6x.
* with reasons: ``score_file(..., reasons=True)`` (scores + exact Shapley attributions
  against the model's reference point + top-4 reason codes) on a 10k-row sample file,
  against ``Booster.predict(X, pred_contrib=True)`` on the same 10k rows. Goal: >= 10x.
* compiling the model (once, uncached) and loading the cached object, separately.

Every run checks that the file's scores equal ``Booster.predict(raw_score=True)`` to 1e-9.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lendml.models import load_model, reference_point
from lendml.models.compiled import CompiledScorer
from lendml.models.lightgbm import LightGBMModel
from lendml.serving.batch import score_file

GOAL_SCORE = 6.0
GOAL_REASONS = 10.0


def applicants(
    n: int, n_numeric: int, n_categorical: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` synthetic applicants and a bad outcome tied to some of their features."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    logit = -2.0 + 0.9 * latent
    cols: dict[str, object] = {}
    for i in range(n_numeric):
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
        cols[f"num_{i:03d}"] = x
        if i < 16:
            logit = logit + 0.1 * np.nan_to_num(x - np.nanmean(x)) / (np.nanstd(x) + 1e-9)
    for i in range(n_categorical):
        levels = [f"c{j}" for j in range(3 + 3 * i)]
        codes = np.clip(
            ((rng.normal(size=n) + 0.5 * latent) * len(levels) / 4 + len(levels) / 2).astype(int),
            0,
            len(levels) - 1,
        )
        logit = logit + 0.2 * (codes % 3 == 0)
        codes[rng.random(n) < 0.03] = -1  # missing
        cols[f"cat_{i:02d}"] = pd.Categorical.from_codes(codes, categories=levels)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(cols)
    frame.insert(0, "application_id", np.arange(n, dtype=np.int64) + seed * 10**9)
    return frame, y


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the scored file")
    parser.add_argument("--features", type=int, default=200, help="of which 10%% categorical")
    parser.add_argument("--trees", type=int, default=500)
    parser.add_argument("--leaves", type=int, default=63)
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--reason-rows", type=int, default=10_000, help="the reasons sample")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--contrib-repeat", type=int, default=1, help="pred_contrib runs")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100k rows, 50 trees: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.trees, args.train_rows, args.reason_rows = 100_000, 50, 20_000, 2_000
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lendml-bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    n_cat = args.features // 10
    n_num = args.features - n_cat
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, work: {work}")

    # ------------------------------------------------------------------ model
    t = time.perf_counter()
    X_train, y_train = applicants(args.train_rows, n_num, n_cat, args.seed + 1)
    features = [c for c in X_train.columns if c != "application_id"]
    fitted = LightGBMModel(
        n_estimators=args.trees,
        num_leaves=args.leaves,
        learning_rate=0.05,
        min_child_samples=20,
        early_stopping_rounds=0,
        seed=args.seed,
    ).fit(X_train[features], y_train)
    p_bad = fitted.predict_proba(X_train[features])[:, 1]
    ref = reference_point(
        fitted, X_train[features], p_bad, cutoff=float(np.quantile(p_bad, 0.8)), side="below"
    )
    fitted.save(work / "model", metadata={"reference_point": ref.to_dict(), "protected": []})
    model = load_model(work / "model")
    booster = model.booster_
    leaves = [t["num_leaves"] for t in booster.dump_model()["tree_info"]]
    print(
        f"model: {len(leaves)} trees, {np.mean(leaves):.1f} leaves per tree on average, "
        f"{len(features)} features ({n_cat} categorical); trained in "
        f"{time.perf_counter() - t:.0f} s"
    )

    # ------------------------------------------------------------------ data
    t = time.perf_counter()
    source = work / "applicants.parquet"
    encoded = []
    writer = None
    for start in range(0, args.rows, 100_000):
        n = min(100_000, args.rows - start)
        part, _ = applicants(n, n_num, n_cat, args.seed + 100 + start)
        encoded.append(model.schema_.encode(part[features]))
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(source, table.schema)
        writer.write_table(table, row_group_size=100_000)
    writer.close()
    E = np.vstack(encoded)
    del encoded
    sample = work / "sample.parquet"
    first = next(pq.ParquetFile(source).iter_batches(batch_size=args.reason_rows))
    pq.write_table(pa.Table.from_batches([first]), sample)
    E_sample = E[: args.reason_rows]
    print(
        f"data: {args.rows:,} rows x {len(features)} features, "
        f"{source.stat().st_size / 1e6:,.0f} MB Parquet, written in {time.perf_counter() - t:.0f} s"
    )

    # ------------------------------------------------------------------ compile
    cache = work / "compiled-cache"
    scorer = CompiledScorer.from_model(model, cache_dir=cache)
    assert scorer.backend_ == "lleaves", scorer.fallback_reason_
    compile_s = scorer.compile_seconds_
    compiled_here = not scorer.from_cache_  # an earlier run with the same --workdir cached it
    t = time.perf_counter()
    scorer = CompiledScorer.from_model(model, cache_dir=cache)
    cached_s = time.perf_counter() - t
    assert scorer.from_cache_
    print(
        f"compile: {compile_s:.1f} s {'once' if compiled_here else '(already cached)'}; "
        "cached object loaded and probe-checked in "
        f"{cached_s:.2f} s ({scorer.cache_path_.stat().st_size / 1e6:.1f} MB)"
    )

    # ------------------------------------------------------------------ scores
    out = work / "scores.parquet"
    t_file, t_anchor, t_compiled = [], [], []
    for _ in range(args.repeat):
        t_anchor.append(timed(lambda: booster.predict(E, raw_score=True)))
        t_file.append(
            timed(
                lambda: score_file(
                    model,
                    source,
                    out,
                    keep=["application_id"],
                    chunk_rows=args.chunk_rows,
                    scorer=scorer,
                )
            )
        )
        t_compiled.append(timed(lambda: scorer.predict_raw(E)))
    anchor_scores = booster.predict(E, raw_score=True)
    got = pq.read_table(out, columns=["score"]).column(0).to_numpy()
    gap = float(np.max(np.abs(got - anchor_scores)))
    assert gap <= 1e-9, gap
    rss_scoring = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    # ------------------------------------------------------------------ reasons
    out_r = work / "reasons.parquet"
    t_reasons, t_contrib = [], []
    for i in range(max(args.repeat, args.contrib_repeat)):
        if i < args.contrib_repeat:
            t_contrib.append(timed(lambda: booster.predict(E_sample, pred_contrib=True)))
        if i < args.repeat:
            t_reasons.append(
                timed(
                    lambda: score_file(
                        model,
                        sample,
                        out_r,
                        reasons=True,
                        keep=["application_id"],
                        chunk_rows=args.chunk_rows,
                        scorer=scorer,
                    )
                )
            )
    n_reasons = pq.read_table(out_r, columns=["reason_1"]).column(0).drop_null().length()

    # ------------------------------------------------------------------ memory
    # score_file alone in a fresh process: its peak RSS (VmHWM: ru_maxrss of a child
    # would include this process's memory at the fork)
    child = (
        "import sys; from lendml.models import load_model; "
        "from lendml.serving.batch import score_file; "
        "score_file(load_model(sys.argv[1]), sys.argv[2], sys.argv[3], "
        "keep=['application_id'], chunk_rows=int(sys.argv[4]), cache_dir=sys.argv[5]); "
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            child,
            str(work / "model"),
            str(source),
            str(out),
            str(args.chunk_rows),
            str(cache),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    rss_child = int(res.stdout.split()[-2]) / 1024  # "VmHWM:  123456 kB"

    file_rps = args.rows / statistics.median(t_file)
    anchor_rps = args.rows / statistics.median(t_anchor)
    compiled_rps = args.rows / statistics.median(t_compiled)
    reasons_rps = args.reason_rows / statistics.median(t_reasons)
    contrib_rps = args.reason_rows / statistics.median(t_contrib)
    r_file, r_compiled = file_rps / anchor_rps, compiled_rps / anchor_rps
    r_reasons = reasons_rps / contrib_rps

    def verdict(ratio: float, goal: float) -> str:
        return f">= {goal:g}x: {'met' if ratio >= goal else 'NOT met'}"

    print()
    print(f"scores equal Booster.predict(raw_score=True): max |difference| = {gap:.1e}")
    print(f"rows with at least one reason: {n_reasons:,} of {args.reason_rows:,}")
    print(
        f"peak RSS of score_file alone (fresh process, {args.chunk_rows:,}-row chunks): "
        f"{rss_child:,.0f} MB for a {E.nbytes / 1e9:.1f} GB encoded file; this process, with "
        f"the anchor's matrix: {rss_scoring:,.0f} MB"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print()
    print("| figure | lendml | anchor (same run) | ratio | goal |")
    print("|---|---|---|---|---|")
    print(
        f"| score {args.rows:,} rows, Parquet file to Parquet file | {file_rps:,.0f} rows/s "
        f"({statistics.median(t_file):.2f} s) | Booster.predict(raw_score=True) on the "
        f"encoded matrix in memory: {anchor_rps:,.0f} rows/s "
        f"({statistics.median(t_anchor):.2f} s) | **{r_file:.1f}x** | "
        f"{verdict(r_file, GOAL_SCORE)} |"
    )
    print(
        f"| the compiled scorer alone, same matrix | {compiled_rps:,.0f} rows/s "
        f"({statistics.median(t_compiled):.2f} s) | same | {r_compiled:.1f}x | — |"
    )
    print(
        f"| with reasons (top 4), {args.reason_rows:,}-row file | {reasons_rps:,.0f} rows/s "
        f"({statistics.median(t_reasons):.2f} s) | pred_contrib on the same rows: "
        f"{contrib_rps:,.0f} rows/s ({statistics.median(t_contrib):.1f} s) | "
        f"**{r_reasons:.1f}x** | {verdict(r_reasons, GOAL_REASONS)} |"
    )
    print(
        f"| compile once / load the cached object | "
        f"{f'{compile_s:.1f} s' if compiled_here else '(cached earlier)'} / {cached_s:.2f} s "
        "| — | — | — |"
    )
    print(
        f"(medians of {args.repeat} runs, {args.contrib_repeat} for pred_contrib; per-run "
        f"ratios file/anchor: {', '.join(f'{a / f:.1f}x' for a, f in zip(t_anchor, t_file, strict=True))})"
    )


if __name__ == "__main__":
    main()
