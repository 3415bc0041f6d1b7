"""A tuning worker for the shared-study test: ``python -m tests.integration.tuning_worker``.

It prepares its data, says it is ready and waits for the go file, so the workers tune at
the same time; it then runs :func:`lendml.training.tuning.tune` on the shared study,
waits until every worker has finished, and prints one JSON line: its own result, the
wall-clock span of its tuning, and the finished study as it reads it from storage. The
storage URL comes from the environment (``LENDML_TUNING_STORAGE``), never the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_ROWS = 900


def dataset() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """The same small dataset in every worker (a fixed seed)."""
    rng = np.random.default_rng(11)
    X = pd.DataFrame(
        {"a": rng.normal(size=N_ROWS), "b": rng.normal(size=N_ROWS), "c": rng.random(N_ROWS)}
    )
    y = (rng.random(N_ROWS) < 1 / (1 + np.exp(-(1.5 * X["a"] - X["b"])))).astype(int).to_numpy()
    cut = 2 * N_ROWS // 3
    return X.iloc[:cut], y[:cut], X.iloc[cut:], y[cut:]


def wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument(
        "--sync", type=Path, required=True, help="folder for the ready/go/done files"
    )
    args = parser.parse_args()
    storage = os.environ["LENDML_TUNING_STORAGE"]

    import optuna

    from lendml.models import FeatureSchema
    from lendml.training.tuning import tune

    X_train, y_train, X_valid, y_valid = dataset()
    schema = FeatureSchema.infer(X_train)
    (args.sync / f"ready-{args.worker}").touch()
    wait_for(args.sync / "go", timeout=120)

    start = time.time()
    result = tune(
        "lightgbm",
        X_train=X_train,
        y_train=y_train,
        X_valid=X_valid,
        y_valid=y_valid,
        schema=schema,
        base_params={"n_estimators": 15, "n_jobs": 1},  # each iteration is a row in storage
        trials=args.trials,
        storage=storage,
        study_name=args.study,
        seed=args.worker,
    )
    end = time.time()
    (args.sync / f"done-{args.worker}").touch()
    for other in range(args.workers):
        wait_for(args.sync / f"done-{other}", timeout=300)

    study = optuna.load_study(study_name=args.study, storage=storage)
    print(
        json.dumps(
            {
                "worker": args.worker,
                "start": start,
                "end": end,
                "own_best_value": result.best_value,
                "own_n_trials": result.n_trials,
                "final_best_value": study.best_value,
                "final_best_params": study.best_params,
                "final_n_trials": len(study.trials),
            }
        )
    )


if __name__ == "__main__":
    main()
