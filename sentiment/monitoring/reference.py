"""The drift reference: a seeded sample of the training reviews at their natural
multiplicity, the champion's scores for it, the vocabulary and the TF-IDF->SVD projection
fitted on the rest, saved as ``models/drift-reference``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer

from sentiment.data.dataset import Dataset, class_ids, joined_text, read_table
from sentiment.data.splits import quarantine_reasons
from sentiment.data.text import clean_text
from sentiment.fileio import atomic_path
from sentiment.models.predictor import Predictor, label_ids
from sentiment.models.trust import load_skops, save_skops
from sentiment.monitoring.statistics import TOKENIZER


@dataclass
class Reference:
    texts: list[str]
    scores: np.ndarray
    labels: np.ndarray
    vocabulary: set[str]
    projection: Pipeline

    def save(self, directory: Path) -> None:
        with atomic_path(directory) as tmp:
            tmp.mkdir()
            pd.DataFrame({"text": self.texts}).to_parquet(tmp / "sample.parquet")
            pd.DataFrame({"score": self.scores, "predicted": self.labels}).to_parquet(
                tmp / "scores.parquet"
            )
            (tmp / "vocabulary.json").write_text(json.dumps(sorted(self.vocabulary)))
            save_skops(self.projection, tmp / "projection.skops")

    @classmethod
    def load(cls, directory: Path) -> Reference:
        sample = pd.read_parquet(directory / "sample.parquet")
        scores = pd.read_parquet(directory / "scores.parquet")
        return cls(
            sample["text"].tolist(),
            scores["score"].to_numpy(),
            scores["predicted"].to_numpy(),
            set(json.loads((directory / "vocabulary.json").read_text())),
            load_skops(directory / "projection.skops"),
        )


def raw_traffic(dataset: Dataset) -> pd.DataFrame:
    """Every valid raw review of the dataset (cleaned ``text``, class id ``label``, and
    ``rating`` and the declared metadata where it has them), repeats kept: reviews as
    traffic brings them.

    prepare keeps one row per distinct review ("Good" once); traffic repeats it hundreds
    of times, so drift compares windows with a sample of these rows, not of the splits.
    """
    raw = read_table(dataset)
    text, ids = joined_text(dataset, raw), class_ids(dataset, raw, dataset.classes)
    valid = quarantine_reasons(text, ids, dataset.no_class_reason) == ""
    traffic = pd.DataFrame(
        {"text": text[valid].map(clean_text).tolist(), "label": ids[valid].astype(int).tolist()}
    )
    if dataset.rating is not None:
        traffic["rating"] = pd.to_numeric(raw.loc[valid, dataset.rating]).tolist()
    for name, column in dataset.metadata.items():
        traffic[name] = raw.loc[valid, column].tolist()
    return traffic


def build_reference(
    rows: list[str], predictor: Predictor, params: dict[str, Any], holdout: int
) -> tuple[Reference, np.ndarray]:
    """Reference artefacts from reviews at their natural multiplicity, and a held-out pool.

    A seeded row-level split of ``rows`` (not a split by distinct text: "Good" must reach
    every part in proportion, as it reaches every window of traffic) gives the reference
    sample (``reference_size`` rows), the indices of ``holdout`` rows never used here (for
    in-distribution windows), and the rest, on which the vocabulary and the TF-IDF->SVD
    projection are fitted: a frequent text is then known to both, a rare one to neither, as with new
    traffic. The champion's scores are those of the reference rows themselves.
    """
    rng = np.random.default_rng(params["seed"])
    order = rng.permutation(len(rows))
    size = min(params["reference_size"], len(rows) // 3)
    sample = [rows[i] for i in order[:size]]
    held = order[size : size + holdout]
    rest = [rows[i] for i in order[size + holdout :]]
    vocabulary = {token for text in rest for token in TOKENIZER(text)}
    projection = Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    tokenizer=TOKENIZER,
                    token_pattern=None,
                    lowercase=False,
                    sublinear_tf=True,
                    min_df=2,
                ),
            ),
            ("svd", TruncatedSVD(params["svd_components"], random_state=params["seed"])),
            ("l2", Normalizer()),
        ]
    ).fit(rest)
    proba = predictor.predict_proba(sample)
    threshold = predictor.meta.get("threshold")
    return Reference(
        sample, proba[:, -1], label_ids(proba, threshold), vocabulary, projection
    ), held
