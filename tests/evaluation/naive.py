"""Brute-force references the evaluation is checked against: slow, obvious, O(n²)."""

from __future__ import annotations

import numpy as np


def psi_kernel(x: float, y: float) -> float:
    """1 if a bad scored x outranks a good scored y, 1/2 on a tie."""
    return 1.0 if x > y else 0.5 if x == y else 0.0


def auc_pairs(y, s) -> float:
    """AUC over every (bad, good) pair, ties counting one half."""
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    bads, goods = s[y == 1], s[y == 0]
    return sum(psi_kernel(x, g) for x in bads for g in goods) / (len(bads) * len(goods))


def delong_structural(y, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and the DeLong covariance from the structural components, pair by pair.

    DeLong, DeLong & Clarke-Pearson (1988): V10(x_i) = mean_j ψ(x_i, y_j),
    V01(y_j) = mean_i ψ(x_i, y_j); S = S10/m + S01/n with sample covariances.
    """
    y = np.asarray(y)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    k = scores.shape[0]
    bads = [row[y == 1] for row in scores]
    goods = [row[y == 0] for row in scores]
    m, n = len(bads[0]), len(goods[0])
    v10 = np.array(
        [[np.mean([psi_kernel(x, g) for g in goods[r]]) for x in bads[r]] for r in range(k)]
    )
    v01 = np.array(
        [[np.mean([psi_kernel(x, g) for x in bads[r]]) for g in goods[r]] for r in range(k)]
    )
    aucs = v10.mean(axis=1)
    s10 = np.zeros((k, k))
    s01 = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            s10[a, b] = np.sum((v10[a] - aucs[a]) * (v10[b] - aucs[b])) / (m - 1)
            s01[a, b] = np.sum((v01[a] - aucs[a]) * (v01[b] - aucs[b])) / (n - 1)
    return aucs, s10 / m + s01 / n


def ks_thresholds(y, s) -> tuple[float, float]:
    """max over thresholds t of share(bads ≥ t) − share(goods ≥ t), and the first argmax t."""
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    best, where = 0.0, float("nan")
    for t in sorted(set(s.tolist()), reverse=True):
        gap = np.mean(s[y == 1] >= t) - np.mean(s[y == 0] >= t)
        if gap > best + 1e-15:
            best, where = gap, t
    return best, where
