"""Behavioural tests of a sentiment model (CheckList style), fixed templates in the repository.

Each test type yields a pass rate in [0, 1]:
- ``negation``: "X is good" is positive and "X is not good" is negative;
- ``invariance_names`` / ``invariance_numbers``: swapping brand names, quantities or prices
  never changes the predicted label;
- ``emoji``: emoji-only reviews (👍 positive, 👎 negative, ...);
- ``short``: one- or two-word reviews with an obvious label.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import product

import numpy as np

POSITIVE = ["good", "great", "nice", "excellent", "durable", "worth the price"]
SUBJECTS = ["The shuttle", "This product", "The quality", "The cork"]
NAMES = ["Yonex", "Li-Ning", "Victor", "Cosco", "Ashaway"]
NAME_TEMPLATES = [
    "{} shuttles are excellent, will buy again",
    "{} shuttles broke in one game, very bad",
    "Ordered {} mavis 350, delivered on time and good quality",
    "Fake {} product, waste of money",
]
NUMBERS = ["2", "6", "12", "24"]
NUMBER_TEMPLATES = [
    "Bought {} boxes, all of them are good",
    "Bought {} boxes, every shuttle was damaged",
]
PRICES = ["₹620", "₹850", "Rs 1200", "499 rupees"]
PRICE_TEMPLATES = [
    "Paid {} and the quality is superb",
    "Paid {} for this and it is a total waste",
]
EMOJI = {"👍": 1, "👍👍": 1, "❤️": 1, "😍": 1, "👌": 1, "👎": 0, "👎👎": 0, "😡": 0, "😞": 0}
SHORT = {
    "Good": 1,
    "Nice": 1,
    "Excellent": 1,
    "Value for money": 1,
    "Super": 1,
    "Bad": 0,
    "Worst": 0,
    "Waste of money": 0,
    "Poor quality": 0,
    "Very bad": 0,
}

# Sentiment words and their antonyms, both ways: a shift that keeps the vocabulary and
# turns the meaning (drift's calibration bench swaps them in held-out reviews).
ANTONYMS = {
    **{"good": "bad", "nice": "poor", "excellent": "worst", "best": "worst", "great": "bad"},
    **{"awesome": "awful", "love": "hate", "happy": "disappointed", "satisfied": "unhappy"},
    **{"bad": "good", "poor": "nice", "worst": "best", "awful": "awesome", "hate": "love"},
    **{"disappointed": "satisfied", "unhappy": "happy"},
}
SENTIMENT_WORD = re.compile(r"\b(" + "|".join(ANTONYMS) + r")\b", re.IGNORECASE)

Labeller = Callable[[list[str]], np.ndarray]


def swap_antonyms(text: str) -> str:
    """``text`` with each word of ``ANTONYMS`` swapped for its antonym, capitals kept."""

    def swap(match: re.Match[str]) -> str:
        found = match.group(0)
        word = ANTONYMS[found.lower()]
        if found.isupper() and len(found) > 1:
            return word.upper()
        return word.capitalize() if found[0].isupper() else word

    return SENTIMENT_WORD.sub(swap, text)


def negation_cases() -> list[tuple[str, str]]:
    return [(f"{s} is {a}", f"{s} is not {a}") for s, a in product(SUBJECTS, POSITIVE)]


def invariance_groups() -> dict[str, list[list[str]]]:
    return {
        "invariance_names": [[t.format(n) for n in NAMES] for t in NAME_TEMPLATES],
        "invariance_numbers": [[t.format(n) for n in NUMBERS] for t in NUMBER_TEMPLATES]
        + [[t.format(p) for p in PRICES] for t in PRICE_TEMPLATES],
    }


def polarity(ids: np.ndarray, n_classes: int) -> np.ndarray:
    """Each class id's side: 1 positive, 0 negative (the cases' labels), -1 neither. Classes
    run from most negative to most positive (``classes`` in the dataset's declaration): the
    lower half is negative, the upper half positive, the middle one of an odd count neither.
    With two classes this is the id itself."""
    twice = 2 * np.asarray(ids) - (n_classes - 1)
    return np.where(twice > 0, 1, np.where(twice < 0, 0, -1))


def run_suite(label: Labeller, n_classes: int = 2) -> dict[str, float]:
    """Pass rate per test type for a function mapping texts to label ids of ``n_classes``
    classes: a case passes when the predicted class is on the expected side (``polarity``);
    invariance asks for the same class."""

    def side(texts: list[str]) -> np.ndarray:
        return polarity(label(texts), n_classes)

    rates: dict[str, float] = {}
    pairs = negation_cases()
    originals = side([p for p, _ in pairs])
    negated = side([n for _, n in pairs])
    rates["negation"] = float(np.mean((originals == 1) & (negated == 0)))
    for name, groups in invariance_groups().items():
        rates[name] = float(np.mean([len(set(label(group).tolist())) == 1 for group in groups]))
    for name, cases in (("emoji", EMOJI), ("short", SHORT)):
        predicted = side(list(cases))
        rates[name] = float(np.mean(predicted == np.array(list(cases.values()))))
    return {k: round(v, 4) for k, v in rates.items()}
