"""featurize: train-only fit, negations kept, saved without pickle, matrices for tune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from stages.common import load_skops
from stages.featurize import featurize, make_vectorizer, stop_words

PARAMS = {
    "emoji": "demojize",
    "stem": False,
    "negation": False,
    "stop_words": "none",
    "word_ngram_max": 2,
    "char_ngrams": False,
    "char_ngram_range": [2, 4],
    "min_df": 1,
    "max_df": 1.0,
    "max_features": None,
    "sublinear_tf": True,
}


def test_english_stop_words_keep_negations() -> None:
    words = set(stop_words("english"))
    assert {"the", "a"} <= words
    assert not {"not", "no", "nor", "never"} & words
    assert stop_words("none") is None
    with pytest.raises(ValueError, match="stop_words"):
        stop_words("french")


def test_vocabulary_has_negation_bigrams_and_emoji_words() -> None:
    vectorizer = make_vectorizer(PARAMS).fit(["not good 👍", "very good"])
    vocab = set(vectorizer.get_feature_names_out())
    assert {"not good", "thumbs_up", "not"} <= vocab


def test_char_ngrams_join_word_features() -> None:
    union = make_vectorizer(PARAMS | {"char_ngrams": True}).fit(["good", "bad"])
    names = union.get_feature_names_out()
    assert any(n.startswith("words__") for n in names)
    assert any(n.startswith("chars__") for n in names)


def test_featurize_fits_on_train_only_and_saves_without_pickle(tmp_path: Path) -> None:
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    splits = {
        "train": ["good shuttle", "bad shuttle", "good"],
        "val": ["unseenword good"],
        "test": ["bad"],
    }
    for split, texts in splits.items():
        pd.DataFrame({"text": texts, "label": [1] * len(texts)}).to_parquet(
            prepared / f"{split}.parquet"
        )
    summary = featurize(prepared, tmp_path / "features", PARAMS)
    out = tmp_path / "features"
    vectorizer = load_skops(out / "vectorizer.skops")
    assert "unseenword" not in vectorizer.vocabulary_
    assert summary["n_features"] == len(vectorizer.vocabulary_)
    val = sp.load_npz(out / "val.npz")
    assert val.shape == (1, summary["n_features"])
    assert np.load(out / "train_labels.npy").tolist() == [1, 1, 1]
    assert not list(tmp_path.glob(".features.*")), "no temporary directory left behind"
