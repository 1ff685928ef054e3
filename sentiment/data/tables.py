"""Files of reviews, CSV, Parquet or JSON Lines: the one reader of ingest, drift and scoring.

``read_table`` reads a local file whole (ingest's rated reviews, drift's inference logs);
``column_chunks`` streams one column a chunk at a time from any opener (scoring, local or on
the bucket), so memory does not grow with the file. Every failure is a one-line
``DataValidationError`` that names the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

from sentiment.data.splits import DataValidationError, read_csv

FORMATS = (".csv", ".parquet", ".jsonl")


def check_format(shown: str | Path, suffix: str) -> None:
    if suffix.lower() not in FORMATS:
        raise DataValidationError(
            f"{shown}: not .csv, .parquet or .jsonl (unsupported format {suffix!r})"
        )


def read_table(path: Path, suffix: str | None = None) -> pd.DataFrame:
    """A whole local file as a frame (JSON Lines values as written, not re-typed); ``suffix``
    names the format where the name does not end in it (a rotated ``log.jsonl.1``)."""
    suffix = (suffix or path.suffix).lower()
    check_format(path, suffix)
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file")
    if suffix == ".csv":
        return read_csv(path)  # its own one-line errors
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=True, dtype=False)
    except (ValueError, OSError) as err:
        raise DataValidationError(f"{path}: cannot read it as {suffix[1:]}: {err}") from err


def column_chunks(
    opener: Callable[[], IO[bytes]], suffix: str, shown: str, column: str, rows: int
) -> Iterator[list[Any]]:
    """Column ``column`` of the file ``opener`` opens, ``rows`` values at a time (None where
    missing); ``shown`` names the file in errors."""
    import pyarrow.parquet as pq

    check_format(shown, suffix)
    if suffix == ".parquet":
        parquet = pq.ParquetFile(opener())
        if column not in parquet.schema_arrow.names:
            raise DataValidationError(no_column(shown, column, parquet.schema_arrow.names))
        for batch in parquet.iter_batches(batch_size=rows, columns=[column]):
            yield batch.column(0).to_pylist()
        return
    if suffix == ".csv":
        with opener() as head:
            header = pd.read_csv(head, nrows=0).columns.tolist()
        if column not in header:
            raise DataValidationError(no_column(shown, column, header))
        options: dict[str, Any] = {"usecols": [column], "dtype": str}
        read = pd.read_csv
    else:
        options, read = {"lines": True, "dtype": False}, pd.read_json
    with opener() as body, read(body, chunksize=rows, **options) as reader:
        for chunk in reader:
            if column not in chunk.columns:
                raise DataValidationError(no_column(shown, column, chunk.columns.tolist()))
            yield [None if v is None or v != v else v for v in chunk[column].tolist()]


def no_column(shown: str, column: str, columns: list[str]) -> str:
    return f"{shown}: no column {column!r} (it has {columns}); pick one with --text-column"
