"""The files a ``--input`` names, and their text column(s) read a chunk at a time.

One file, every CSV/Parquet/JSONL file of a folder, or a glob's matches, local or on the
bucket (``storage``); only the text column(s) are kept, so memory does not grow with the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from sentiment.data.tables import FORMATS, TextColumns, text_chunks
from sentiment.scoring.storage import Location, locate, matching_files


def read_chunks(source: Location, text: TextColumns, rows: int) -> Iterator[list[Any]]:
    """The texts of ``source``, ``rows`` values at a time (None where missing)."""
    return text_chunks(source.open, source.suffix, source.shown, text, rows)


def input_files(source: str | Path) -> list[Location]:
    """One file, every CSV/Parquet/JSONL file of a folder, or a glob's matches (in the last
    path part), sorted; local or on the bucket."""
    found = matching_files(locate(source), FORMATS)
    if not found:
        raise FileNotFoundError(f"{source}: no such file (or no {'/'.join(FORMATS)} files)")
    return found


def parquet_rows(files: list[Location]) -> int:
    """The rows the Parquet inputs hold, from their footers (for the progress bar)."""
    total = 0
    for source in files:
        if source.suffix == ".parquet":
            with source.open() as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
    return total
