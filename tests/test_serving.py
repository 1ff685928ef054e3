"""What the service decides, without a server: content, redaction, labels, log files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sentiment.data.labels import label_names
from sentiment.serving.rules import (
    VISIBLE,
    decades_up_to,
    doubling_up_to,
    nothing_to_score,
    redact,
    redaction_kinds,
    worker_log_path,
)


@pytest.mark.parametrize(
    "text", ["", " ", "\x00", "\ufeff", "\u200b\u200c\u200d", "\x07\x1b", "READ MORE", "\u00ad"]
)
def test_texts_with_nothing_to_score(text: str) -> None:
    assert "nothing to score" in nothing_to_score(text)


@pytest.mark.parametrize("text", ["good", "👍", "٣", "à", "\u200bok", "5 stars READ MORE"])
def test_texts_with_something_to_score(text: str) -> None:
    assert nothing_to_score(text) is None
    assert re.search(VISIBLE, text)  # the pattern /docs.json declares agrees


def test_a_lone_surrogate_is_refused() -> None:
    assert "not valid Unicode" in nothing_to_score("ok \ud800")


def test_personal_data_is_redacted_by_kind() -> None:
    text = (
        "Mail a.b+c@mail.example.co.in, call +91 98765 43210 or see https://x.io/p?q=1 (2021-03-04)"
    )
    assert redact(text, redaction_kinds("all")) == (
        "Mail <email>, call <phone> or see <url> (2021-03-04)"
    )
    assert redact(text, redaction_kinds("email")) == text.replace(
        "a.b+c@mail.example.co.in", "<email>"
    )
    assert redact(text, redaction_kinds("off")) == text
    with pytest.raises(ValueError, match=r"SENTIMENT_LOG_REDACT: unknown \['names'\]"):
        redaction_kinds("email,names")


def test_prices_dates_and_counts_are_not_phone_numbers() -> None:
    text = "Paid Rs 1,299 on 12-02-2021 for 6 shuttles, order 12345678"
    assert redact(text, redaction_kinds("all")) == text


def test_label_names_follow_the_model() -> None:
    assert label_names({"n_classes": 2}, "m") == ["negative", "positive"]
    assert label_names({"n_classes": 3}, "m") == ["negative", "neutral", "positive"]
    assert label_names({"labels": ["bad", "ok", "good", "great"]}, "m") == [
        "bad",
        "ok",
        "good",
        "great",
    ]
    with pytest.raises(ValueError, match=r"model x: 5 classes and no 'labels'"):
        label_names({"n_classes": 5}, "model x")


def test_each_worker_has_its_own_log_file() -> None:
    assert worker_log_path("logs/predictions.jsonl", 2) == Path("logs/predictions.worker-2.jsonl")


def test_histogram_bounds_end_at_the_limits() -> None:
    assert doubling_up_to(256) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert doubling_up_to(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    assert doubling_up_to(1) == (1,)
    assert decades_up_to(5000) == (10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
    assert decades_up_to(20000) == (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)
    assert decades_up_to(5) == (5,)
