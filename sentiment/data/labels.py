"""Label schemes: the class names each one implies, and those a model's ``meta.json`` names."""

from __future__ import annotations

from typing import Any

LABEL_NAMES = {
    "binary": ["negative", "positive"],
    "ternary": ["negative", "neutral", "positive"],
}


def require_binary(labels: Any, stage: str) -> None:
    """Refuse clearly when a stage that only handles two classes gets more."""
    classes = sorted(set(int(x) for x in labels))
    if not set(classes) <= {0, 1}:
        raise ValueError(
            f"{stage} supports the binary label scheme only; got classes {classes} "
            "(set prepare.label_scheme: binary)"
        )


def label_names(meta: dict[str, Any], where: str) -> list[str]:
    """The model's class names, in class-id order (``meta.json``: ``labels``, else implied
    by ``n_classes``); refuses a model whose names it cannot tell."""
    if meta.get("labels"):
        return list(meta["labels"])
    n_classes = meta.get("n_classes", 2)
    for names in LABEL_NAMES.values():
        if len(names) == n_classes:
            return names
    raise ValueError(f"{where}: {n_classes} classes and no 'labels' in meta.json")
