"""Class names: those a dataset declares (``classes``, from most negative to most positive,
recorded in ``data/prepared/stats.json``), and those a model's ``meta.json`` names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The names a model of two or three classes is read with when its meta.json names none.
IMPLIED_NAMES = {
    2: ["negative", "positive"],
    3: ["negative", "neutral", "positive"],
}


def prepared_classes(stats: Path) -> list[str]:
    """The class names ``prepare`` labelled the splits with, in class-id order."""
    return list(json.loads(stats.read_text())["classes"])


def labels_record(classes: list[str]) -> dict[str, list[str]]:
    """What a model's meta.json records of its class names: ``labels``, unless they are
    the names its class count implies anyway (so the default dataset's models keep their
    bytes)."""
    return {} if IMPLIED_NAMES.get(len(classes)) == list(classes) else {"labels": list(classes)}


def label_names(meta: dict[str, Any], where: str) -> list[str]:
    """The model's class names, in class-id order (``meta.json``: ``labels``, else implied
    by ``n_classes``); refuses a model whose names it cannot tell."""
    if meta.get("labels"):
        return list(meta["labels"])
    n_classes = meta.get("n_classes", 2)
    if n_classes in IMPLIED_NAMES:
        return IMPLIED_NAMES[n_classes]
    raise ValueError(f"{where}: {n_classes} classes and no 'labels' in meta.json")
