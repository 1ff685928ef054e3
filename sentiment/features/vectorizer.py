"""The TF-IDF representation featurize fits: word and character n-grams over the project's
tokenizer, with optional stemming, negation marking and stop words."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from sentiment.data.text import Tokenizer

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
