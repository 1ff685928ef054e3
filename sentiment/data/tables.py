"""Files of reviews, CSV, Parquet or JSON Lines: the one reader of ingest, drift and scoring.

``read_table`` reads a local file whole (ingest's rated reviews, drift's inference logs);
``text_chunks`` streams the text column(s) a chunk at a time from any opener (scoring, local
or on the bucket), so memory does not grow with the file. Every failure is a one-line
``DataValidationError`` that names the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from sentiment.data.splits import DataValidationError, read_csv

FORMATS = (".csv", ".parquet", ".jsonl")


@dataclass(frozen=True)
class TextColumns:
    """The column(s) of a file that hold a review's text, and what joins several (as a
    dataset's ``text`` and ``text_separator`` declare them)."""

    names: tuple[str, ...] = ("text",)
    separator: str = " "

    def join(self, values: list[list[Any]]) -> list[Any]:
        """One text per row from each column's values: one column as read, several joined
        with missing or empty parts left out; None where nothing is left."""
        if len(values) == 1:
            return [None if v is None or v != v else v for v in values[0]]
        joined = []
        for row in zip(*values, strict=True):
            parts = [str(v) for v in row if v is not None and v == v and str(v)]
            joined.append(self.separator.join(parts) if parts else None)
        return joined


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


def text_chunks(
    opener: Callable[[], IO[bytes]], suffix: str, shown: str, text: TextColumns, rows: int
) -> Iterator[list[Any]]:
    """The text of each row of the file ``opener`` opens, ``rows`` rows at a time (None where
    missing); ``shown`` names the file in errors."""
    import pyarrow.parquet as pq

    check_format(shown, suffix)
    wanted = list(text.names)
    if suffix == ".parquet":
        parquet = pq.ParquetFile(opener())
        check_columns(shown, wanted, parquet.schema_arrow.names)
        for batch in parquet.iter_batches(batch_size=rows, columns=wanted):
            yield text.join([batch.column(name).to_pylist() for name in wanted])
        return
    if suffix == ".csv":
        with opener() as head:
            check_columns(shown, wanted, pd.read_csv(head, nrows=0).columns.tolist())
        options: dict[str, Any] = {"usecols": wanted, "dtype": str}
        read = pd.read_csv
    else:
        options, read = {"lines": True, "dtype": False}, pd.read_json
    with opener() as body, read(body, chunksize=rows, **options) as reader:
        for chunk in reader:
            check_columns(shown, wanted, chunk.columns.tolist())
            yield text.join([chunk[name].tolist() for name in wanted])


def check_columns(shown: str, wanted: list[str], columns: list[str]) -> None:
    for column in wanted:
        if column not in columns:
            raise DataValidationError(no_column(shown, column, columns))


def no_column(shown: str, column: str, columns: list[str]) -> str:
    return f"{shown}: no column {column!r} (it has {columns}); pick one with --text-column"
