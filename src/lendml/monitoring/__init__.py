"""Drift, delayed-label performance and the checks that trigger retraining."""
