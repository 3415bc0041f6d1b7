"""Training: configs, out-of-time splits, tuning (Optuna), tracked runs (MLflow)."""
