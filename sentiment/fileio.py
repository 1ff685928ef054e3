"""Atomic writes (files and directories), deterministic zips, prepared-split reading."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where it is used: the model service has none
    import pandas as pd


ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


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


def deterministic_zip(
    data: bytes, rename: dict[str, str] | None = None, replace: dict[str, bytes] | None = None
) -> bytes:
    """The same zip archive with fixed timestamps and permissions and sorted entries (names
    mapped through ``rename``, contents swapped for those in ``replace``), so equal contents
    give equal bytes (and equal DVC md5s)."""
    rename, replace = rename or {}, replace or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in sorted(src.infolist(), key=lambda i: rename.get(i.filename, i.filename)):
            fixed = zipfile.ZipInfo(rename.get(info.filename, info.filename), ZIP_EPOCH)
            fixed.compress_type = info.compress_type
            fixed.external_attr = 0o644 << 16
            body = replace[info.filename] if info.filename in replace else src.read(info.filename)
            dst.writestr(fixed, body)
    return out.getvalue()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_split(path: str | Path, target: str = "label") -> tuple[list[str], list[int]]:
    """Read a prepared split as plain Python lists of texts and integers of ``target``
    (the ``label`` column, or another integer column such as ``rating``)."""
    import pandas as pd

    df = pd.read_parquet(path, columns=["text", target])
    return df["text"].tolist(), df[target].astype(int).tolist()
