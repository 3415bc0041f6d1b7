"""Training overhead: ``lendml train`` vs raw ``lightgbm.train`` on the same 200k × 200 matrix.

Both fit 200 trees with the same LightGBM parameters, no tuning, no early stopping. lendml's
time covers everything a run does: reading the Parquet file, the out-of-time split,
encoding, the fit, scoring train/valid/test, the evaluation (metrics, calibration, PSI/CSI
of 200 features, HTML report, model card) and tracking (parameters, metrics, the model
artifact) in MLflow. The anchor times ``lightgbm.Dataset`` + ``lightgbm.train`` on the
training rows, in the same process. Prints the median of --repeat runs and the ratio.
Goal: ratio ≤ 1.15.

    python benchmarks/bench_train.py [--rows 200000] [--features 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd


def make_table(rows: int, features: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    logit = X[:, :10] @ rng.normal(size=10) * 0.4 - 2.0
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    frame = pd.DataFrame(X, columns=[f"f{i:03d}" for i in range(features)])
    frame["month"] = np.repeat(np.arange(12), -(-rows // 12))[:rows]
    frame["bad"] = y
    return frame


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=200)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from lendml.core.config import TrackingSettings
    from lendml.models.lightgbm import LightGBMModel
    from lendml.models.schema import FeatureSchema
    from lendml.registry.tracking import Tracker
    from lendml.training.data import TableSpec
    from lendml.training.run import train_table
    from lendml.training.trainer import ModelPlan

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    frame = make_table(args.rows, args.features)
    data = tmp / "train.parquet"
    frame.to_parquet(data)
    params = {"n_estimators": args.trees, "early_stopping_rounds": 0}
    spec = TableSpec(label="bad", time="month", test_from="10")
    tracker = Tracker(TrackingSettings(uri="sqlite:///mlflow.db", artifacts="art"), root=tmp)
    # A tracking database is created once per project, not per run: warm it up.
    with tracker.start_run(experiment="bench", run_name="warmup"):
        pass

    from lendml.training.splits import time_holdout_split

    split = time_holdout_split(frame["month"], frame["bad"], test_from="10", seed=spec.seed)
    train_rows = frame.iloc[split.train]  # the very rows lendml fits on
    inputs = [c for c in frame.columns if c.startswith("f")]
    model = LightGBMModel(**params)
    lgb_params = model.lgb_params(FeatureSchema.infer(train_rows[inputs]))

    lendml_times, raw_times = [], []
    for i in range(args.repeat):
        t = time.perf_counter()
        result = train_table(
            data, spec, ModelPlan(params=params), tracker=tracker, name=f"bench{i}",
            experiment="bench", report_dir=tmp / f"report{i}",
        )
        lendml_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        ds = lgb.Dataset(train_rows[inputs].to_numpy(np.float64), label=train_rows["bad"])
        lgb.train(lgb_params, ds, num_boost_round=args.trees)
        raw_times.append(time.perf_counter() - t)
        print(
            f"run {i}: lendml train {lendml_times[-1]:.2f} s (test AUC {result.auc:.4f}), "
            f"lightgbm.train {raw_times[-1]:.2f} s",
            flush=True,
        )
    ours, anchor = statistics.median(lendml_times), statistics.median(raw_times)
    print(
        f"{args.rows:,} x {args.features}, {args.trees} trees: lendml train {ours:.2f} s, "
        f"raw lightgbm.train {anchor:.2f} s (median of {args.repeat}); ratio {ours / anchor:.2f}x "
        "(goal <= 1.15x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
