"""ingest: new rated reviews into the raw data, so that the next `make run` retrains on them.

    python -m sentiment.ingest --input new-reviews.csv     # or .parquet, .jsonl
    make ingest INPUT=new-reviews.csv

The input has a text and a star-rating column (``text``/``rating``, or the raw file's own
``Review text``/``Ratings``); ``title`` and ``month`` (or ``Review Title``/``Month``) are
kept where present, and personal columns are not taken in. Every row is validated as
``prepare`` validates raw rows. One unusable row refuses the whole file, with the rows and
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

from sentiment import paths
from sentiment.cli import entry_point
from sentiment.data.splits import (
    PERSONAL_COLUMNS,
    RATING,
    TEXT,
    DataValidationError,
    quarantine_reasons,
    read_csv,
)
from sentiment.data.tables import read_table
from sentiment.fileio import atomic_path

ALIASES = {"text": TEXT, "rating": RATING, "title": "Review Title", "month": "Month"}
SHOWN_BAD_ROWS = 5


def read_rated(path: Path) -> pd.DataFrame:
    """The input file with its columns named as in the raw file; text and rating required."""
    frame = read_table(path)
    frame = frame.rename(columns=ALIASES)
    missing = [name for name in ("text", "rating") if ALIASES[name] not in frame.columns]
    if missing:
        raise DataValidationError(f"{path}: no {' or '.join(missing)} column")
    if frame.empty:
        raise DataValidationError(f"{path}: no rows")
    return frame


def rows_to_append(
    incoming: pd.DataFrame, columns: list[str], skip_invalid: bool, source: Path
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The usable rows in the raw file's ``columns`` (personal ones left empty) and the
    count of rows skipped by reason; refuses the file on any unusable row unless told."""
    reasons = quarantine_reasons(incoming)
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
    usable[RATING] = pd.to_numeric(usable[RATING]).astype(int)
    kept = [c for c in columns if c in usable.columns and c not in PERSONAL_COLUMNS]
    return usable[kept].reindex(columns=columns), bad.value_counts().to_dict()


def appended_bytes(raw: bytes, rows: pd.DataFrame) -> bytes:
    """``raw`` unchanged, then ``rows`` as CSV lines in the same columns."""
    buffer = io.StringIO()
    rows.to_csv(buffer, header=False, index=False, lineterminator="\n")
    separator = b"" if raw.endswith(b"\n") else b"\n"
    return raw + separator + buffer.getvalue().encode()


def append_rows(raw_csv: Path, rows: pd.DataFrame, source: Path | str) -> dict[str, int]:
    """Write ``raw_csv`` grown by ``rows`` (its existing bytes unchanged) in one replace,
    after checking the grown file reads back; the rows before and after, and how many
    ``rows`` repeat a (text, rating) already there."""
    existing = read_csv(raw_csv)
    grown = appended_bytes(raw_csv.read_bytes(), rows)
    check = pd.read_csv(io.BytesIO(grown))
    read_back = check[TEXT].iloc[len(existing) :].tolist()
    if len(check) != len(existing) + len(rows) or read_back != rows[TEXT].tolist():
        raise DataValidationError(f"{source}: its rows do not read back as written")
    known = set(zip(existing[TEXT], existing[RATING], strict=True))
    repeats = sum((t, r) in known for t, r in zip(rows[TEXT], rows[RATING], strict=True))
    with atomic_path(raw_csv) as tmp:
        tmp.write_bytes(grown)
    return {"repeats": repeats, "rows_before": len(existing), "rows_after": len(check)}


def ingest(source: Path, raw_csv: Path, skip_invalid: bool = False) -> dict[str, Any]:
    """Append ``source``'s usable rows to ``raw_csv`` and record it with DVC; the summary."""
    from dvc.repo import Repo

    incoming = read_rated(source)
    columns = list(read_csv(raw_csv).columns)
    before = raw_csv.read_bytes()
    rows, skipped = rows_to_append(incoming, columns, skip_invalid, source)
    grown = append_rows(raw_csv, rows, source)
    try:
        project = Repo(Repo.find_root(str(raw_csv.resolve().parent)))
        project.commit(f"{raw_csv.resolve()}.dvc", force=True)
    except Exception:
        with atomic_path(raw_csv) as tmp:
            tmp.write_bytes(before)
        raise
    return {"appended": len(rows), "skipped": skipped, **grown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="CSV, Parquet or JSON Lines")
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="append the usable rows and count the others, instead of refusing the file",
    )
    args = parser.parse_args()
    summary = ingest(args.input, paths.RAW_REVIEWS, args.skip_invalid)
    skipped = sum(summary["skipped"].values())
    print(
        f"ingest: {summary['appended']} rows appended to {paths.RAW_REVIEWS} "
        f"({summary['rows_before']} -> {summary['rows_after']} rows; "
        f"{summary['repeats']} repeat a review already there, prepare keeps the first"
        + (f"; {skipped} skipped {summary['skipped']}" if skipped else "")
        + f"); {paths.RAW_REVIEWS}.dvc updated: `make run` retrains and gates"
    )


if __name__ == "__main__":
    entry_point(main)
