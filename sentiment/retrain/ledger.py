"""Which rows of a drop are new: each row's key is a hash of its content, and the ledger
(``data/raw/ingested.csv``, tracked by DVC beside the raw file) holds the key of every row a
drop ever added, with the drop's name. A re-run or an overlapping drop adds nothing twice."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from sentiment import paths
from sentiment.data.splits import read_csv

LEDGER = paths.RAW / "ingested.csv"  # not a pipeline dep: prepare reads the raw file only
COLUMNS = ["key", "drop"]


def content_key(values: list) -> str:
    """sha256 of a row's values as JSON (missing values as null)."""
    plain = [None if pd.isna(v) else v.item() if hasattr(v, "item") else v for v in values]
    return hashlib.sha256(json.dumps(plain, ensure_ascii=False).encode()).hexdigest()


def row_keys(rows: pd.DataFrame) -> pd.Series:
    """The content key of every row, over all of its columns in order."""
    return pd.Series(
        [content_key(list(row)) for row in rows.itertuples(index=False)],
        index=rows.index,
        dtype=object,
    )


def read_ledger(path: Path) -> pd.DataFrame:
    """The ledger, or an empty one before the first drop."""
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS, dtype=object)
    ledger = read_csv(path, dtype=str, keep_default_na=False)
    if list(ledger.columns) != COLUMNS:
        raise ValueError(f"{path}: columns {list(ledger.columns)}, expected {COLUMNS}")
    return ledger.astype(object)


def new_rows(rows: pd.DataFrame, ledger: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """``rows`` less those whose key the ledger holds and repeats within ``rows`` (the first
    is kept), with the counts of each; the rows keep their order."""
    keys = row_keys(rows)
    seen = keys.isin(set(ledger["key"]))
    repeated = keys.duplicated() & ~seen
    fresh = rows[~seen & ~repeated]
    return fresh, {"ingested_before": int(seen.sum()), "repeated_in_drop": int(repeated.sum())}


def grown_ledger(ledger: pd.DataFrame, rows: pd.DataFrame, drop: str) -> pd.DataFrame:
    """The ledger with an entry for each of ``rows``, all from ``drop``."""
    added = pd.DataFrame({"key": row_keys(rows).tolist(), "drop": drop}, dtype=object)
    return pd.concat([ledger, added], ignore_index=True)


def proposal_id(rows: pd.DataFrame) -> str:
    """Eight hex digits naming this set of new rows (the same rows, the same id)."""
    digest = hashlib.sha256("".join(sorted(row_keys(rows))).encode()).hexdigest()
    return digest[:8]
