"""The texts of an inference log: a CSV, Parquet or JSONL file with a ``text`` column, or a
directory of the service's worker logs, rotated ones included, in time order."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sentiment.data.tables import read_table


def read_current(path: Path) -> list[str]:
    """Texts from a CSV, Parquet or JSONL file with a 'text' column, or from a directory of
    inference logs (every worker's ``*.jsonl`` and rotated ``*.jsonl.<n>``, in time order)."""
    if path.is_dir():
        logs = sorted(p for p in path.iterdir() if re.fullmatch(r".+\.jsonl(\.\d+)?", p.name))
        if not logs:
            raise ValueError(f"{path}: no inference logs (*.jsonl) in it")
        frame = pd.concat([texts_of(p, ".jsonl") for p in logs], ignore_index=True)
        if "timestamp" in frame.columns:
            frame = frame.sort_values("timestamp", kind="stable")
    elif path.is_file():
        frame = texts_of(path)
    else:
        raise ValueError(f"{path}: no such file or directory")
    if "text" not in frame.columns:
        raise ValueError(f"{path}: no texts")
    texts = frame["text"].dropna().astype(str)
    return texts[texts.str.strip() != ""].tolist()


def texts_of(path: Path, suffix: str | None = None) -> pd.DataFrame:
    """One file as a frame with a 'text' column (an empty file may have none)."""
    frame = read_table(path, suffix)
    if "text" not in frame.columns and not frame.empty:
        raise ValueError(f"{path}: no 'text' column (columns: {list(frame.columns)})")
    return frame
