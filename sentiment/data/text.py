"""Text cleaning (prepare) and tokenisation (featurize); the only place text is shaped."""

from __future__ import annotations

import re
from functools import cache

import emoji
import ftfy
from nltk.sentiment.util import mark_negation
from nltk.stem import PorterStemmer
from nltk.tokenize import TweetTokenizer

# The scraper glued "READ MORE" to the end of almost every Flipkart review.
READ_MORE = re.compile(r"\s*READ MORE\s*$")
# Mojibake that lost a byte on the way ("â?¹" was "₹"): ftfy cannot recover it.
LOSSY_MOJIBAKE = {"â?¹": "₹"}
EMOJI_MODES = ("keep", "remove", "demojize")


def clean_text(text: str) -> str:
    """Repair mojibake, strip the READ MORE artifact and normalise whitespace.

    Emoji, case, punctuation and negations are kept: models decide what to do with them.
    """
    text = ftfy.fix_text(text)
    for bad, good in LOSSY_MOJIBAKE.items():
        text = text.replace(bad, good)
    text = READ_MORE.sub("", text)
    return " ".join(text.split())


def emoji_as_words(text: str) -> str:
    """👍 -> "thumbs up": for models whose vocabulary has no emoji (MiniLM's maps them to UNK)."""
    return " ".join(emoji.demojize(text, delimiters=(" ", " ")).replace("_", " ").split())


def model_text(text: str) -> str:
    """Raw review -> the text the transformer sees (training and inference alike)."""
    return emoji_as_words(clean_text(text))


@cache
def _tweet_tokenizer() -> TweetTokenizer:
    return TweetTokenizer(preserve_case=False, reduce_len=True)


@cache
def _stemmer() -> PorterStemmer:
    return PorterStemmer()


class Tokenizer:
    """Callable word tokenizer for ``TfidfVectorizer(tokenizer=...)``.

    Lower-cases with NLTK's TweetTokenizer (emoji and emoticons stay tokens), then
    optionally rewrites emoji, stems with Porter and marks negation scope (``good_NEG``).
    Holds only plain attributes so skops can persist it without pickle.
    """

    def __init__(self, emoji_mode: str = "demojize", stem: bool = False, negation: bool = False):
        if emoji_mode not in EMOJI_MODES:
            raise ValueError(f"emoji mode must be one of {EMOJI_MODES}, got {emoji_mode!r}")
        self.emoji_mode = emoji_mode
        self.stem = stem
        self.negation = negation

    def __call__(self, text: str) -> list[str]:
        if self.emoji_mode == "demojize":
            text = emoji.demojize(text, delimiters=(" ", " "))
        elif self.emoji_mode == "remove":
            text = emoji.replace_emoji(text, replace=" ")
        tokens = _tweet_tokenizer().tokenize(text)
        if self.stem:
            tokens = [_stemmer().stem(token) for token in tokens]
        if self.negation:
            tokens = mark_negation(tokens)
        return tokens

    def __repr__(self) -> str:
        return (
            f"Tokenizer(emoji_mode={self.emoji_mode!r}, stem={self.stem}, negation={self.negation})"
        )
