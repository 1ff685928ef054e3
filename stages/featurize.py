"""featurize: fit the TF-IDF representation on train only and transform every split."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import scipy.sparse as sp
from sklearn.base import TransformerMixin
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from stages.common import (
    atomic_path,
    deterministic_zip,
    entry_point,
    load_params,
    read_split,
    write_json,
)
from stages.model_files import save_skops
from stages.text import Tokenizer
from stages.tracking import stage_run

NEGATIONS = frozenset(
    {
        "no",
        "nor",
        "not",
        "never",
        "none",
        "nothing",
        "nobody",
        "nowhere",
        "cannot",
        "cant",
        "dont",
        "don't",
        "isn't",
        "wasn't",
        "won't",
    }
)
SPLITS = ("train", "val", "test")


def stop_words(choice: str | None) -> list[str] | None:
    """``english`` is scikit-learn's list minus every negation; ``none`` keeps all words."""
    if choice in (None, "none"):
        return None
    if choice == "english":
        return sorted(ENGLISH_STOP_WORDS - NEGATIONS)
    raise ValueError(f"featurize.stop_words must be 'none' or 'english', got {choice!r}")


def make_vectorizer(params: dict[str, Any]) -> TransformerMixin:
    """TF-IDF over word n-grams (NLTK/emoji tokenizer), optionally joined by char n-grams."""
    common = dict(
        min_df=params["min_df"],
        max_df=params["max_df"],
        max_features=params["max_features"],
        sublinear_tf=params["sublinear_tf"],
        dtype=np.float32,
    )
    words = TfidfVectorizer(
        tokenizer=Tokenizer(params["emoji"], params["stem"], params["negation"]),
        token_pattern=None,
        lowercase=False,
        stop_words=stop_words(params["stop_words"]),
        ngram_range=(1, params["word_ngram_max"]),
        **common,
    )
    if not params["char_ngrams"]:
        return words
    chars = TfidfVectorizer(
        analyzer="char_wb", ngram_range=tuple(params["char_ngram_range"]), **common
    )
    return FeatureUnion([("words", words), ("chars", chars)])


def featurize(prepared: Path, out_dir: Path, params: dict[str, Any]) -> dict[str, int]:
    """Fit on train, save the vectorizer and each split's matrix and labels."""
    vectorizer = make_vectorizer(params)
    texts, labels = read_split(prepared / "train.parquet")
    matrices = {"train": vectorizer.fit_transform(texts)}
    label_sets = {"train": labels}
    for split in SPLITS[1:]:
        texts, label_sets[split] = read_split(prepared / f"{split}.parquet")
        matrices[split] = vectorizer.transform(texts)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_skops(vectorizer, tmp / "vectorizer.skops")
        for split, matrix in matrices.items():
            npz = io.BytesIO()
            sp.save_npz(npz, sp.csr_matrix(matrix))
            (tmp / f"{split}.npz").write_bytes(deterministic_zip(npz.getvalue()))
            np.save(tmp / f"{split}_labels.npy", np.asarray(label_sets[split], dtype=np.int64))
    return {
        "n_features": int(matrices["train"].shape[1]),
        **{f"rows.{s}": int(m.shape[0]) for s, m in matrices.items()},
    }


def main() -> None:
    params = load_params("featurize")
    with stage_run("featurize"):
        summary = featurize(Path("data/prepared"), Path("data/features"), params)
        write_json(Path("featurize/summary.json"), summary)
        mlflow.log_metrics(summary)
    print(f"featurize: {summary}")


if __name__ == "__main__":
    entry_point(main)
