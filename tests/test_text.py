"""Unit tests of text cleaning and tokenisation."""

import pytest

from sentiment.data.text import Tokenizer, clean_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Nice product. Thank You.READ MORE", "Nice product. Thank You."),
        ("Good product ?READ MORE", "Good product ?"),
        ("Over pricedJust â?¹620 ..from retailer", "Over pricedJust ₹620 ..from retailer"),
        ("The quality is â€œgreatâ€\x9d", 'The quality is "great"'),
        ("  too   many\n\tspaces  ", "too many spaces"),
        ("Loved it 👍👍", "Loved it 👍👍"),
        ("Not good, don't buy.READ MORE", "Not good, don't buy."),
        ("READ MORE", ""),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_clean_text_keeps_read_more_inside_a_sentence() -> None:
    assert clean_text("please READ MORE reviews first") == "please READ MORE reviews first"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("keep", ["great", "👍"]), ("remove", ["great"]), ("demojize", ["great", "thumbs_up"])],
)
def test_tokenizer_emoji_modes(mode: str, expected: list[str]) -> None:
    assert Tokenizer(emoji_mode=mode)("Great 👍") == expected


def test_tokenizer_keeps_negations_and_marks_scope() -> None:
    assert "not" in Tokenizer()("This is NOT good")
    tokens = Tokenizer(negation=True)("not good at all. loved the box")
    assert tokens[:3] == ["not", "good_NEG", "at_NEG"]
    assert "loved" in tokens


def test_tokenizer_stems() -> None:
    assert Tokenizer(stem=True)("loved shuttles") == ["love", "shuttl"]


def test_tokenizer_rejects_unknown_emoji_mode() -> None:
    with pytest.raises(ValueError, match="emoji mode"):
        Tokenizer(emoji_mode="drop")
