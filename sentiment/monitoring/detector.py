"""Windows of current texts tested against the reference by the whole battery."""

from __future__ import annotations

from typing import Any

import numpy as np

from sentiment.models.predictor import Predictor, label_ids
from sentiment.monitoring.reference import Reference
from sentiment.monitoring.statistics import (
    Side,
    holm,
    oov_rates,
    run_battery,
    unit_rows,
    word_counts,
)


class DriftDetector:
    """Runs the battery (``statistics.BATTERY``) on windows of current texts against one
    reference; the reference's side is measured once."""

    def __init__(self, reference: Reference, predictor: Predictor | None, params: dict[str, Any]):
        self.ref = reference
        self.predictor = predictor
        self.params = params
        semantic = getattr(predictor, "has_embedding", False)
        self.reference_side = Side(
            texts=reference.texts,
            scores=reference.scores,
            labels=reference.labels,
            words=word_counts(reference.texts),
            oov=oov_rates(reference.texts, reference.vocabulary),
            projected=reference.projection.transform(reference.texts),
            semantic=unit_rows(predictor.embeddings(reference.texts)) if semantic else None,
        )

    def test_window(
        self,
        texts: list[str],
        scores: np.ndarray | None = None,
        seed: int | None = None,
        embeddings: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """All tests on one window; ``scores`` (champion P(positive)) and ``embeddings``
        (its pooled vectors) skip re-scoring.

        Windows are taken as they arrive, repeats included: the reference is sampled from
        the training reviews at the same natural multiplicity (``build_reference``).
        """
        params = self.params
        if len(texts) < params["min_window"]:
            return {
                "status": "insufficient data",
                "drift_detected": False,
                "n": len(texts),
                "min_window": params["min_window"],
            }
        rng = np.random.default_rng(params["seed"] if seed is None else seed)
        current = self.measure(texts, scores, embeddings)
        results = run_battery(self.reference_side, current, rng, params["permutations"])
        adjusted = holm({name: r["p_value"] for name, r in results.items()})
        for name, result in results.items():
            result["p_adjusted"] = adjusted[name]
            result["drift"] = adjusted[name] < params["alpha"]
        drifting = any(r["drift"] for r in results.values())
        return {
            "status": "drift" if drifting else "no drift",
            "drift_detected": drifting,
            "n": len(texts),
            "tests": results,
            "length": {
                "reference": self.reference_side.words.tolist(),
                "current": current.words.tolist(),
            },
            "scores": {"reference": self.ref.scores.tolist(), "current": current.scores.tolist()},
        }

    def measure(
        self, texts: list[str], scores: np.ndarray | None, embeddings: np.ndarray | None
    ) -> Side:
        """The window's side (raw texts on purpose: a format change, e.g. a scraping
        artifact, is drift too)."""
        if scores is None:
            proba = self.predictor.predict_proba(texts)
            scores = proba[:, -1]
            predicted = label_ids(proba, self.predictor.meta.get("threshold"))
        else:
            threshold = self.predictor.meta.get("threshold") if self.predictor else None
            predicted = label_ids(np.c_[1 - scores, scores], threshold)
        semantic = None
        if self.reference_side.semantic is not None:  # what the transformer itself sees
            semantic = unit_rows(
                self.predictor.embeddings(texts) if embeddings is None else embeddings
            )
        return Side(
            texts=texts,
            scores=scores,
            labels=predicted,
            words=word_counts(texts),
            oov=oov_rates(texts, self.ref.vocabulary),
            projected=self.ref.projection.transform(texts),
            semantic=semantic,
        )
