"""A drop: the files of new rated reviews in a folder or under an ``s3://`` prefix, read and
validated as ``ingest`` validates one file. One unusable row refuses the whole drop (nothing
is changed) unless ``skip_invalid``; the bucket is only read."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from pyarrow import fs

from sentiment.data.dataset import Dataset
from sentiment.data.splits import DataValidationError
from sentiment.data.tables import FORMATS
from sentiment.ingest import read_rated, rows_to_append
from sentiment.scoring.storage import Location, locate, matching_files


@dataclass
class Drop:
    """The usable rows of a drop in the raw file's columns, and what was read."""

    name: str
    uri: str
    rows: pd.DataFrame
    files: list[str]
    rows_read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def drop_name(uri: str) -> str:
    """The drop's last path part, as a git branch name may hold it."""
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip(".-")
    if not name:
        raise ValueError(f"{uri}: no name to give the drop's branch (name a folder or prefix)")
    return name


def read_file(where: Location, folder: Path, dataset: Dataset) -> pd.DataFrame:
    """One file of the drop; a bucket object is copied to ``folder`` first, and errors name
    it as the user gave it."""
    if not where.on_bucket:
        return read_rated(Path(where.path), dataset)
    local = folder / where.name
    fs.copy_files(where.path, str(local), source_filesystem=where.filesystem)
    try:
        return read_rated(local, dataset)
    except DataValidationError as err:
        raise DataValidationError(str(err).replace(str(local), where.shown)) from err


def read_drop(uri: str, columns: list[str], dataset: Dataset, skip_invalid: bool = False) -> Drop:
    """Every CSV, Parquet and JSON Lines file directly in ``uri``, in name order, in the
    declared dataset's schema."""
    where = locate(uri)
    if where.info().type != fs.FileType.Directory:
        raise DataValidationError(f"{uri}: not a folder or prefix of files")
    files = matching_files(where, FORMATS)
    if not files:
        raise DataValidationError(f"{uri}: no {', '.join(FORMATS)} file in it")
    parts, skipped, read = [], {}, 0
    with tempfile.TemporaryDirectory(prefix="sentiment-drop-") as folder:
        for file in files:
            incoming = read_file(file, Path(folder), dataset)
            usable, bad = rows_to_append(incoming, columns, skip_invalid, file.shown, dataset)
            parts.append(usable)
            read += len(incoming)
            for reason, count in bad.items():
                skipped[reason] = skipped.get(reason, 0) + count
    rows = pd.concat(parts, ignore_index=True)
    return Drop(drop_name(uri), uri, rows, [f.shown for f in files], read, skipped)
