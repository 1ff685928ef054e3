"""Metric helpers shared by evaluate and the benches."""

from __future__ import annotations

from itertools import pairwise

import numpy as np


def macro_f1(y_true: np.ndarray | list[int], y_pred: np.ndarray | list[int]) -> float:
    """Macro-F1 over the labels either side holds, a class neither predicts nor has scoring
    0: scikit-learn's ``f1_score(average="macro", zero_division=0)``, the same float (tested),
    without its input checks, which cost 25 times the sum (evaluate calls it ~9,000 times)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    truth, predicted = codes[: len(y_true)], codes[len(y_true) :]
    true_sum = np.bincount(truth, minlength=len(labels)).astype(np.float64)
    pred_sum = np.bincount(predicted, minlength=len(labels)).astype(np.float64)
    tp = np.bincount(truth[truth == predicted], minlength=len(labels)).astype(np.float64)
    denominator = true_sum + pred_sum
    scores = 2.0 * tp / np.where(denominator == 0, 1.0, denominator)
    scores[denominator == 0] = 0.0
    return float(np.nanmean(scores))


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
