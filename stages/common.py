"""Helpers shared by the stages: repository paths, params, atomic writes, split I/O."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = "params.yaml"
LABEL_NAMES = {
    "binary": ["negative", "positive"],
    "ternary": ["negative", "neutral", "positive"],
}


def load_params(section: str, path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Return one section of params.yaml: a stage reads only the keys it declares."""
    with open(path, encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if section not in params:
        raise KeyError(f"{path}: no '{section}:' section")
    return params[section]


def require_binary(labels: Any, stage: str) -> None:
    """Refuse clearly when a stage that only handles two classes gets more."""
    classes = sorted(set(int(x) for x in labels))
    if not set(classes) <= {0, 1}:
        raise ValueError(
            f"{stage} supports the binary label scheme only; got classes {classes} "
            "(set prepare.label_scheme: binary)"
        )


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only on success.

    Works for files and directories: a failure leaves any previous ``target`` intact
    and no partial output behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staged = tmp / target.name
    try:
        yield staged
        if target.is_dir() and not target.is_symlink():
            old = tmp / "old"
            target.rename(old)
        os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically, pretty-printed with sorted keys (stable diffs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    """Write a DataFrame to Parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_split(path: str | Path) -> tuple[list[str], list[int]]:
    """Read a prepared split as plain Python lists of texts and integer labels."""
    df = pd.read_parquet(path, columns=["text", "label"])
    return df["text"].tolist(), df["label"].astype(int).tolist()


# Types skops may rebuild: the scientific stack and this project's own classes.
SKOPS_TRUSTED_PREFIXES = ("builtins.", "numpy.", "scipy.", "sklearn.", "stages.")


def save_skops(obj: Any, path: str | Path) -> None:
    """Persist a scikit-learn object with skops (no pickle), atomically."""
    import skops.io as sio

    with atomic_path(path) as tmp:
        sio.dump(obj, tmp)


def load_skops(path: str | Path) -> Any:
    """Load a skops file, refusing any type outside ``SKOPS_TRUSTED_PREFIXES``."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(SKOPS_TRUSTED_PREFIXES)]
    if refused:
        raise ValueError(f"{path}: refusing to load untrusted types {refused}")
    return sio.load(path, trusted=untrusted)
