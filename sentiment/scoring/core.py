"""What one chunk of texts becomes: a label and score per row, or the reason it has none.

The output's columns (``SCHEMA``) are the same for every engine: ``row`` (0-based, across
every input file), ``label``, ``score`` (as the service defines it), ``model_version`` and
``error``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sentiment.data.labels import label_names
from sentiment.models.predictor import Predictor, label_ids, read_meta
from sentiment.models.trust import bento_model_dir, file_digests
from sentiment.serving.rules import nothing_to_score

SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("model_version", pa.string()),
        ("error", pa.string()),
    ]
)


class ChunkScorer:
    """A loaded predictor that turns chunks of cell values into output tables."""

    def __init__(self, predictor: Predictor, version: str, where: str) -> None:
        self.predictor, self.version = predictor, version
        self.names = label_names(predictor.meta, where)

    def table(self, first_row: int, values: list[Any]) -> pa.Table:
        """The output rows for ``values``, numbered from ``first_row``."""
        labels, scores, errors = score_chunk(self.predictor, self.names, values)
        return pa.table(
            {
                "row": np.arange(first_row, first_row + len(values)),
                "label": labels,
                "score": scores,
                "model_version": [self.version] * len(values),
                "error": errors,
            },
            schema=SCHEMA,
        )


def why_not_scored(value: Any) -> str | None:
    """Why a cell cannot be scored, or None."""
    if value is None:
        return "no text"
    if not isinstance(value, str):
        return f"not text ({type(value).__name__})"
    return nothing_to_score(value)


def score_chunk(
    predictor: Predictor, names: list[str], values: list[Any]
) -> tuple[list[str | None], list[float | None], list[str | None]]:
    """Labels, scores and errors for one chunk; unscorable rows get a reason, not a label."""
    errors = [why_not_scored(v) for v in values]
    good = [i for i, e in enumerate(errors) if e is None]
    labels: list[str | None] = [None] * len(values)
    scores: list[float | None] = [None] * len(values)
    if good:
        proba = predictor.predict_proba([values[i] for i in good])
        ids = label_ids(proba, predictor.meta.get("threshold"))
        chosen = proba[:, 1] if len(names) == 2 else proba[np.arange(len(ids)), ids]
        for i, label, score in zip(good, ids, chosen, strict=True):
            labels[i], scores[i] = names[label], float(score)
    return labels, scores, errors


def resolve_model(model: str) -> tuple[Path, str]:
    """A model directory, or a BentoML store tag: the directory and a version to record
    (the registry version, else the directory's name and a digest of its files)."""
    path = Path(model)
    if path.is_dir():
        meta = read_meta(path)
        files = hashlib.sha256(repr(sorted(file_digests(path).items())).encode())
        return path, str(meta.get("registry_version") or f"{path.name}@{files.hexdigest()[:12]}")
    import bentoml

    stored = bentoml.models.get(model)
    return bento_model_dir(stored), stored.info.labels.get("registry_version") or str(stored.tag)
