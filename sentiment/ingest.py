"""ingest: new rated reviews into the raw data, so that the next `make run` retrains on them.

    python -m sentiment.ingest --input new-reviews.csv     # or .parquet, .jsonl
    make ingest INPUT=new-reviews.csv

The input has the declared dataset's columns (params.yaml's ``dataset``): its text and its
rating or label, by the raw file's own names or as ``text``/``rating``/``label``; declared
metadata (``month`` for Flipkart's ``Month``) is kept where present, and no other column is
taken in. The dataset's source must be one CSV file. Every row is validated as ``prepare``
validates raw rows. One unusable row refuses the whole file, with the rows and
reasons named in one line, unless ``--skip-invalid`` appends only the usable ones. The rows
are appended after the raw file's existing bytes, which do not change, so that ``prepare``
keeps every earlier row in its split and places the new ones by their text. The new raw
file replaces the old one whole, and ``data/raw/reviews.csv.dvc`` records its hash (``dvc
commit``); if that fails, the old file is put back.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pandas as pd

from sentiment.cli import entry_point
from sentiment.data.dataset import (
    Dataset,
    class_ids,
    joined_text,
    load_dataset,
    wanted_columns,
)
from sentiment.data.splits import DataValidationError, quarantine_reasons, read_csv
from sentiment.data.tables import read_table
from sentiment.fileio import atomic_path

SHOWN_BAD_ROWS = 5


def aliases(dataset: Dataset) -> dict[str, str]:
    """Short input names for the dataset's columns: ``text`` (one text column), ``rating`` or
    ``label``, and each metadata name."""
    short = {"rating": dataset.rating, "label": dataset.label} | dataset.metadata
    if len(dataset.text) == 1:
        short["text"] = dataset.text[0]
    return {k: v for k, v in short.items() if v}


def read_rated(path: Path, dataset: Dataset) -> pd.DataFrame:
    """The input file with its columns named as in the raw file; text and class required."""
    frame = read_table(path).rename(columns=aliases(dataset))
    target = dataset.rating or dataset.label
    missing = [c for c in (*dataset.text, target) if c not in frame.columns]
    if missing:
        short = {v: k for k, v in aliases(dataset).items()}
        raise DataValidationError(
            f"{path}: no {' or '.join(short.get(c, c) for c in missing)} column"
        )
    if frame.empty:
        raise DataValidationError(f"{path}: no rows")
    return frame


def rows_to_append(
    incoming: pd.DataFrame,
    columns: list[str],
    skip_invalid: bool,
    source: Path,
    dataset: Dataset,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The usable rows in the raw file's ``columns`` (undeclared ones left empty) and the
    count of rows skipped by reason; refuses the file on any unusable row unless told."""
    text = joined_text(dataset, incoming)
    ids = class_ids(dataset, incoming, dataset.classes, strict=False)
    reasons = quarantine_reasons(text, ids, dataset.no_class_reason)
    bad = reasons[reasons != ""]
    if len(bad) and not skip_invalid:
        shown = ", ".join(f"row {i + 1}: {why}" for i, why in bad.head(SHOWN_BAD_ROWS).items())
        more = f" and {len(bad) - SHOWN_BAD_ROWS} more" if len(bad) > SHOWN_BAD_ROWS else ""
        raise DataValidationError(
            f"{source}: {len(bad)} of {len(incoming)} rows are not usable ({shown}{more}); "
            "nothing was appended (--skip-invalid appends the others)"
        )
    usable = incoming[reasons == ""].copy()
    if usable.empty:
        raise DataValidationError(f"{source}: none of its {len(incoming)} rows is usable")
    if dataset.rating is not None:
        rating = pd.to_numeric(usable[dataset.rating])
        usable[dataset.rating] = rating.astype(int) if (rating % 1 == 0).all() else rating
    declared = wanted_columns(dataset)
    kept = [c for c in columns if c in usable.columns and c in declared]
    return usable[kept].reindex(columns=columns), bad.value_counts().to_dict()


def appended_bytes(raw: bytes, rows: pd.DataFrame) -> bytes:
    """``raw`` unchanged, then ``rows`` as CSV lines in the same columns."""
    buffer = io.StringIO()
    rows.to_csv(buffer, header=False, index=False, lineterminator="\n")
    separator = b"" if raw.endswith(b"\n") else b"\n"
    return raw + separator + buffer.getvalue().encode()


def append_rows(
    raw_csv: Path, rows: pd.DataFrame, source: Path | str, dataset: Dataset
) -> dict[str, int]:
    """Write ``raw_csv`` grown by ``rows`` (its existing bytes unchanged) in one replace,
    after checking the grown file reads back; the rows before and after, and how many
    ``rows`` repeat a (text, rating or label) already there."""
    text, target = dataset.text[0], dataset.rating or dataset.label
    existing = read_csv(raw_csv)
    grown = appended_bytes(raw_csv.read_bytes(), rows)
    check = pd.read_csv(io.BytesIO(grown))
    read_back = check[text].iloc[len(existing) :].tolist()
    if len(check) != len(existing) + len(rows) or read_back != rows[text].tolist():
        raise DataValidationError(f"{source}: its rows do not read back as written")
    known = set(zip(existing[text], existing[target], strict=True))
    repeats = sum((t, r) in known for t, r in zip(rows[text], rows[target], strict=True))
    with atomic_path(raw_csv) as tmp:
        tmp.write_bytes(grown)
    return {"repeats": repeats, "rows_before": len(existing), "rows_after": len(check)}


def ingest(
    source: Path, raw_csv: Path, skip_invalid: bool = False, dataset: Dataset | None = None
) -> dict[str, Any]:
    """Append ``source``'s usable rows to ``raw_csv`` (the dataset's source file) and record
    it with DVC; the summary."""
    from dvc.repo import Repo

    dataset = dataset or load_dataset()
    incoming = read_rated(source, dataset)
    columns = list(read_csv(raw_csv).columns)
    before = raw_csv.read_bytes()
    rows, skipped = rows_to_append(incoming, columns, skip_invalid, source, dataset)
    grown = append_rows(raw_csv, rows, source, dataset)
    try:
        project = Repo(Repo.find_root(str(raw_csv.resolve().parent)))
        project.commit(f"{raw_csv.resolve()}.dvc", force=True)
    except Exception:
        with atomic_path(raw_csv) as tmp:
            tmp.write_bytes(before)
        raise
    return {"appended": len(rows), "skipped": skipped, **grown}


def single_csv(dataset: Dataset) -> Path:
    """The dataset's source, which rows are appended to: one CSV file with one text column."""
    if dataset.path.suffix.lower() != ".csv" or len(dataset.text) != 1:
        raise DataValidationError(
            f"{dataset.where}: ingest appends to a source that is one CSV file with one text "
            f"column; {dataset.path} with text {list(dataset.text)} is not"
        )
    return dataset.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="CSV, Parquet or JSON Lines")
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="append the usable rows and count the others, instead of refusing the file",
    )
    args = parser.parse_args()
    dataset = load_dataset()
    raw = single_csv(dataset)
    summary = ingest(args.input, raw, args.skip_invalid, dataset)
    skipped = sum(summary["skipped"].values())
    print(
        f"ingest: {summary['appended']} rows appended to {raw} "
        f"({summary['rows_before']} -> {summary['rows_after']} rows; "
        f"{summary['repeats']} repeat a review already there, prepare keeps the first"
        + (f"; {skipped} skipped {summary['skipped']}" if skipped else "")
        + f"); {raw}.dvc updated: `make run` retrains and gates"
    )


if __name__ == "__main__":
    entry_point(main)
