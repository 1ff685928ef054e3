"""Raw reviews to prepared rows: the one-line errors of reading raw files, quarantine
reasons, the reference split protocol (a dataset's ``reference_rows`` rows split exactly as
published, stratified by class) and the stable placement of rows appended later
(``assign_appended``), or the split a dataset's own column gives.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from sentiment.data.text import clean_text

SPLIT_NAMES = ("train", "val", "test")


class DataValidationError(ValueError):
    """Raw data that the pipeline refuses to use."""


def read_csv(path: str | Path, **options: Any) -> pd.DataFrame:
    """``pd.read_csv`` whose failures name the file and what is wrong with it."""
    if not Path(path).is_file():
        raise DataValidationError(f"{path}: no such file (dvc pull fetches the raw data)")
    try:
        return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError as err:
        raise DataValidationError(f"{path}: empty file") from err
    except UnicodeDecodeError as err:
        raise DataValidationError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.object[err.start : err.end]!r})"
        ) from err
    except (OSError, pd.errors.ParserError) as err:
        raise DataValidationError(f"{path}: cannot read CSV: {err}") from err


def quarantine_reasons(text: pd.Series, ids: pd.Series, bad_label: str) -> pd.Series:
    """Per row, why it is unusable ('' when valid): missing text, text empty once cleaned, or
    no class (``bad_label``: the rating or label is missing or not a number)."""
    reasons = pd.Series("", index=text.index, dtype=object)
    reasons[text.isna()] = "missing_text"
    reasons[(reasons == "") & text.fillna("").map(clean_text).eq("")] = "empty_text"
    reasons[(reasons == "") & ids.isna()] = bad_label
    return reasons


def split_reference(
    df: pd.DataFrame, labels: pd.Series, params: dict[str, Any]
) -> dict[str, pd.DataFrame]:
    """Train/val/test as the reference protocol splits the valid, deduplicated rows:
    ``test_size`` stratified by class with ``random_state=seed``, then ``val_size`` of train."""
    train, test = train_test_split(
        df, test_size=params["test_size"], stratify=labels, random_state=params["seed"]
    )
    train, val = train_test_split(
        train,
        test_size=params["val_size"],
        stratify=labels[train.index],
        random_state=params["seed"],
    )
    return {"train": train, "val": val, "test": test}


def hash_split(text: str, params: dict[str, Any]) -> str:
    """The split a stable hash of the cleaned text (salted by the seed) assigns it to."""
    digest = hashlib.sha256(f"{params['seed']}:{text}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < params["test_size"]:
        return "test"
    if u < params["test_size"] + (1 - params["test_size"]) * params["val_size"]:
        return "val"
    return "train"


def assign_appended(
    earlier: dict[str, str], appended: list[str], params: dict[str, Any]
) -> list[str]:
    """Splits of appended rows' cleaned texts: an earlier row's split, else the hash's.

    ``earlier`` maps each cleaned text of the reference rows to the split of its first
    row. The result depends on the text alone, so equal texts never straddle splits and
    later appends agree with earlier ones.
    """
    return [earlier.get(text) or hash_split(text, params) for text in appended]


def split_rows(
    df: pd.DataFrame,
    cleaned: pd.Series,
    labels: pd.Series,
    params: dict[str, Any],
    reference_rows: int,
) -> dict[str, pd.DataFrame]:
    """Reference protocol on rows before ``reference_rows``, ``assign_appended`` after."""
    is_reference = df.index < reference_rows
    splits = (
        split_reference(df[is_reference], labels[is_reference], params)
        if is_reference.any()
        else {name: df.iloc[:0] for name in ("train", "val", "test")}
    )
    split_of = pd.concat([pd.Series(n, index=p.index) for n, p in splits.items()]).sort_index()
    first = pd.Series(split_of.to_numpy(), index=cleaned[split_of.index].to_numpy())
    earlier = first[~first.index.duplicated()].to_dict()
    appended = df[~is_reference]
    names = assign_appended(earlier, cleaned[appended.index].tolist(), params)
    return {
        name: pd.concat([part, appended[[n == name for n in names]]])
        for name, part in splits.items()
    }


def split_by_column(
    df: pd.DataFrame, given: pd.Series, labels: pd.Series, params: dict[str, Any], where: str
) -> dict[str, pd.DataFrame]:
    """The split a dataset's own column gives (train/val/test, case-insensitive); without
    val rows, ``val_size`` of train is carved out, stratified and seeded."""
    names = given.astype(str).str.strip().str.casefold()
    other = sorted(set(names) - set(SPLIT_NAMES))
    if other:
        raise DataValidationError(f"{where}: values {other[:3]} are not train, val or test")
    splits = {name: df[names == name] for name in SPLIT_NAMES}
    if splits["val"].empty:
        train = splits["train"]
        kept, val = train_test_split(
            train,
            test_size=params["val_size"],
            stratify=labels[train.index],
            random_state=params["seed"],
        )
        splits |= {"train": kept, "val": val}
    return splits
