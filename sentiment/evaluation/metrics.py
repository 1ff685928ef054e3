"""Metric helpers shared by evaluate and the benches."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from sklearn.metrics import f1_score


def macro_f1(y_true: np.ndarray | list[int], y_pred: np.ndarray | list[int]) -> float:
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def bootstrap_ci(
    y_true: np.ndarray | list[int],
    y_pred: np.ndarray | list[int],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of macro-F1, resampling (label, prediction) pairs."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y_true), size=(n_resamples, len(y_true)))
    scores = [macro_f1(y_true[i], y_pred[i]) for i in idx]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return round(float(low), 4), round(float(high), 4)


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> float:
    """ECE: |accuracy - confidence| of the predicted class, averaged over confidence bins."""
    y_true = np.asarray(y_true)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for low, high in pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)
