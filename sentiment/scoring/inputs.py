"""The files a ``--input`` names, and their text column read a chunk at a time.

One file, every CSV/Parquet/JSONL file of a folder, or a glob's matches, local or on the
bucket (``storage``); only the text column is kept, so memory does not grow with the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from sentiment.scoring.storage import Location, locate, matching_files

READERS = (".csv", ".parquet", ".jsonl")


def read_chunks(source: Location, column: str, rows: int) -> Iterator[list[Any]]:
    """The text column of ``source``, ``rows`` values at a time (None where missing)."""
    if source.suffix == ".parquet":
        parquet = pq.ParquetFile(source.open())
        if column not in parquet.schema_arrow.names:
            raise ValueError(no_column(source, column, parquet.schema_arrow.names))
        for batch in parquet.iter_batches(batch_size=rows, columns=[column]):
            yield batch.column(0).to_pylist()
        return
    import pandas as pd

    if source.suffix == ".csv":
        with source.open() as head:
            header = pd.read_csv(head, nrows=0).columns.tolist()
        if column not in header:
            raise ValueError(no_column(source, column, header))
        options: dict[str, Any] = {"usecols": [column], "dtype": str}
        read = pd.read_csv
    elif source.suffix == ".jsonl":
        options, read = {"lines": True, "dtype": False}, pd.read_json
    else:
        kind = source.suffix
        raise ValueError(f"{source.shown}: unknown input type {kind!r}; use one of {READERS}")
    with source.open() as body, read(body, chunksize=rows, **options) as reader:
        for chunk in reader:
            if column not in chunk.columns:
                raise ValueError(no_column(source, column, chunk.columns.tolist()))
            yield [None if v is None or v != v else v for v in chunk[column].tolist()]


def no_column(source: Location, column: str, columns: list[str]) -> str:
    return f"{source.shown}: no column {column!r} (it has {columns}); pick one with --text-column"


def input_files(source: str | Path) -> list[Location]:
    """One file, every CSV/Parquet/JSONL file of a folder, or a glob's matches (in the last
    path part), sorted; local or on the bucket."""
    found = matching_files(locate(source), READERS)
    if not found:
        raise FileNotFoundError(f"{source}: no such file (or no {'/'.join(READERS)} files)")
    return found


def parquet_rows(files: list[Location]) -> int:
    """The rows the Parquet inputs hold, from their footers (for the progress bar)."""
    total = 0
    for source in files:
        if source.suffix == ".parquet":
            with source.open() as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
    return total
