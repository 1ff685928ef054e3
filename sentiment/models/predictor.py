"""The one inference path: evaluate, gate, drift and the service all score text through here.

A model directory holds ``meta.json`` (flavor, label names, decision threshold, version)
beside the flavor's files. ``load_predictor(dir)`` returns an object with
``predict_proba(texts) -> (n, n_classes)`` and ``predict(texts) -> label ids``; raw text
goes in, cleaning happens here and nowhere else. A transformer is scored by ONNX Runtime
when its directory has an ONNX export, else by torch (``SENTIMENT_INFERENCE_BACKEND``
forces either).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sentiment.data.text import clean_text
from sentiment.evaluation.metrics import macro_f1
from sentiment.fileio import write_json
from sentiment.models.onnx_backend import collapse
from sentiment.models.trust import load_skops, save_skops
from sentiment.params import ParamsError
from sentiment.settings import setting

META_FILE = "meta.json"


class Predictor(Protocol):
    """What every flavor offers."""

    meta: dict[str, Any]

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


def label_ids(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Label ids from probabilities: binary uses the threshold on P(positive), else argmax."""
    if proba.shape[1] == 2 and threshold is not None:
        return (proba[:, 1] >= threshold).astype(int)
    return proba.argmax(axis=1)


def predict(predictor: Predictor, texts: list[str]) -> np.ndarray:
    """Label ids for raw texts, with the predictor's own decision threshold."""
    return label_ids(predictor.predict_proba(texts), predictor.meta.get("threshold"))


TARGETS = ("label", "rating")  # what a model learns: the labels, or the 1-5 star ratings


def check_target(param: str, target: str) -> None:
    """Refuse a ``target`` param that is neither, naming it."""
    if target not in TARGETS:
        raise ParamsError(f"{param}: {target!r} is not one of {TARGETS}")


def rating_groups(ratings: list[int], labels: list[int]) -> list[list[int]]:
    """For each label, the head classes (star rating - 1) that make it up, read off the
    rows: the grouping is the one ``prepare`` labelled with, whatever its scheme. A rating
    seen with two labels (or a label with no rating) is refused."""
    label_of: dict[int, int] = {}
    for rating, label in zip(ratings, labels, strict=True):
        if label_of.setdefault(rating, label) != label:
            raise ValueError(f"rating {rating} occurs with labels {label_of[rating]} and {label}")
    if set(label_of) - set(range(1, 6)):
        raise ValueError(f"ratings must be 1-5, got {sorted(set(label_of) - set(range(1, 6)))}")
    groups = [[r - 1 for r in sorted(label_of) if label_of[r] == c] for c in range(max(labels) + 1)]
    if not all(groups):
        raise ValueError("a label has no rating in the training rows")
    return groups


INVARIANCE_BOUND = 1e-5  # largest |change of a probability| a text's batch-mates may cause


def batch_invariance_error(
    score: Callable[[list[str]], np.ndarray], texts: list[str], seed: int = 0
) -> float:
    """The largest |difference| between the probabilities of ``texts`` scored in one call
    and the same texts scored one at a time, in a shuffled order, and in shuffled calls of
    random sizes (1-64): how much a text's score depends on its batch-mates, its position
    and padding. 0 for a batch-invariant backend, up to float noise."""
    together = score(texts)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    alone = np.vstack([score([text]) for text in texts])
    shuffled = np.empty_like(together)
    shuffled[order] = score([texts[i] for i in order])
    chunked = np.empty_like(together)
    start = 0
    while start < len(order):
        rows = order[start : start + int(rng.integers(1, 65))]
        chunked[rows] = score([texts[i] for i in rows])
        start += len(rows)
    return float(max(np.abs(other - together).max() for other in (alone, shuffled, chunked)))


def best_threshold(y_true: list[int], positive_proba: np.ndarray) -> float:
    """The P(positive) cut-off that maximises macro-F1 (ties: closest to 0.5)."""
    candidates = np.round(np.arange(0.05, 0.951, 0.01), 2)
    scores = [macro_f1(y_true, positive_proba >= t) for t in candidates]
    best = max(scores)
    return float(
        min((abs(t - 0.5), t) for t, s in zip(candidates, scores, strict=True) if s == best)[1]
    )


class ClassicalPredictor:
    """A scikit-learn Pipeline (vectorizer + classifier) taking cleaned text; a classifier
    fitted on star ratings (``tune.target: rating``) has its probabilities summed into
    labels."""

    def __init__(self, model_dir: Path, meta: dict[str, Any]):
        self.meta = meta
        self.pipeline = load_skops(model_dir / "model.skops")

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        proba = self.pipeline.predict_proba([clean_text(t) for t in texts])
        return collapse(proba, self.meta.get("head_groups"))


def save_classical(pipeline: Any, model_dir: Path, meta: dict[str, Any]) -> None:
    """Write a classical model directory (skops, no pickle)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    save_skops(pipeline, model_dir / "model.skops")
    write_json(model_dir / META_FILE, {"flavor": "classical", **meta})


class EnsemblePredictor:
    """The weighted average of its members' probabilities (``meta["weights"]``, in member
    order; equal weights when absent)."""

    def __init__(self, members: list[Predictor], meta: dict[str, Any]):
        self.meta = meta
        self.members = members

    @classmethod
    def load(cls, model_dir: Path, meta: dict[str, Any]) -> EnsemblePredictor:
        """Members are model directories stored inside the ensemble's own directory."""
        return cls([load_predictor(model_dir / name) for name in meta["members"]], meta)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        weights = self.meta.get("weights") or [1.0] * len(self.members)
        return np.average([m.predict_proba(texts) for m in self.members], axis=0, weights=weights)


def read_meta(model_dir: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of a model directory, with a clear error when it is missing."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: not a model directory (no {META_FILE})")
    return json.loads(path.read_text())


def transformer_backend(model_dir: Path) -> str:
    """``onnx`` when the directory has an ONNX export, else ``torch``;
    ``SENTIMENT_INFERENCE_BACKEND=torch|onnx`` forces one (``auto`` is the default)."""
    from sentiment.models.onnx_backend import ONNX_FILE

    chosen = setting("SENTIMENT_INFERENCE_BACKEND")
    if chosen == "auto":
        return "onnx" if (model_dir / ONNX_FILE).is_file() else "torch"
    return chosen


def load_predictor(model_dir: str | Path) -> Predictor:
    """Load a model directory of either flavor."""
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    if meta["flavor"] == "classical":
        return ClassicalPredictor(model_dir, meta)
    if meta["flavor"] == "ensemble":
        return EnsemblePredictor.load(model_dir, meta)
    if meta["flavor"] == "transformer":
        if transformer_backend(model_dir) == "onnx":
            from sentiment.models.onnx_backend import OnnxPredictor

            return OnnxPredictor(model_dir, meta)
        try:
            from sentiment.models.transformer import TransformerPredictor
        except ImportError as err:  # the serving image has no torch
            raise RuntimeError(
                f"{model_dir}: scoring with torch needs requirements/main.lock ({err}); "
                "a model directory with model.onnx is scored without it"
            ) from err
        return TransformerPredictor(model_dir, meta)
    raise ValueError(f"{model_dir}: unknown model flavor {meta['flavor']!r}")
