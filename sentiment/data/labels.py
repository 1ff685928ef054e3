"""Label schemes: the class names each one implies."""

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
