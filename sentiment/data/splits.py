"""Raw reviews to prepared rows: reading and validating the raw files, quarantine reasons,
labels per scheme, the reference split protocol (``prepare.reference_rows`` rows split
exactly as published) and the stable placement of rows appended later (``assign_appended``).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from sentiment import paths
from sentiment.data.text import clean_text

TEXT, RATING = "Review text", "Ratings"


REQUIRED_COLUMNS = (TEXT, RATING)


PERSONAL_COLUMNS = ("Reviewer Name", "Place of Review")


OOD_FILES = {name: path.name for name, path in paths.RAW_OOD.items()}  # in the raw folder


class DataValidationError(ValueError):
    """Raw data that the pipeline refuses to use."""


def map_labels(ratings: pd.Series, scheme: str) -> pd.Series:
    """Star ratings to class ids: binary 1-2 -> 0, 3-5 -> 1; ternary adds 3 -> 1 neutral."""
    if scheme == "binary":
        return (ratings >= 3).astype(int)
    if scheme == "ternary":
        return ratings.map({1: 0, 2: 0, 3: 1, 4: 2, 5: 2}).astype(int)
    raise ValueError(f"prepare.label_scheme must be 'binary' or 'ternary', got {scheme!r}")


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


def read_raw(path: str | Path) -> pd.DataFrame:
    """Read the raw reviews CSV, failing with the file and column named."""
    df = read_csv(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(f"{path}: missing required column(s) {missing}")
    if df.empty:
        raise DataValidationError(f"{path}: a header but no reviews")
    return df.drop(columns=[c for c in PERSONAL_COLUMNS if c in df.columns])


def quarantine_reasons(df: pd.DataFrame) -> pd.Series:
    """Per row, why it is unusable ('' when valid): missing text, bad rating, empty text."""
    ratings = pd.to_numeric(df[RATING], errors="coerce")
    reasons = pd.Series("", index=df.index, dtype=object)
    text = df[TEXT]
    reasons[text.isna()] = "missing_text"
    reasons[(reasons == "") & text.fillna("").map(clean_text).eq("")] = "empty_text"
    bad_rating = ratings.isna() | (ratings % 1 != 0) | ~ratings.between(1, 5)
    reasons[(reasons == "") & bad_rating] = "bad_rating"
    return reasons


def split_reference(df: pd.DataFrame, params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Train/val/test as the reference protocol splits the valid, deduplicated rows."""
    y = map_labels(df[RATING], "binary")
    train, test = train_test_split(
        df, test_size=params["test_size"], stratify=y, random_state=params["seed"]
    )
    train, val = train_test_split(
        train,
        test_size=params["val_size"],
        stratify=map_labels(train[RATING], "binary"),
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
    df: pd.DataFrame, cleaned: pd.Series, params: dict[str, Any]
) -> dict[str, pd.DataFrame]:
    """Reference protocol on rows before ``reference_rows``, ``assign_appended`` after."""
    is_reference = df.index < params["reference_rows"]
    splits = (
        split_reference(df[is_reference], params)
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


def to_prepared(df: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """Cleaned text, label and the kept non-personal metadata."""
    out = pd.DataFrame(
        {
            "text": df[TEXT].map(clean_text).astype(str),
            "label": map_labels(df[RATING].astype(int), scheme),
            "rating": df[RATING].astype(int),
        },
        index=df.index,
    )
    if "Month" in df.columns:
        out["month"] = df["Month"].astype("string")
    return out.reset_index(drop=True)


def read_ood(path: str | Path, scheme: str) -> pd.DataFrame:
    """An out-of-domain UCI file (``sentence<TAB>label``), cleaned like the main data."""
    df = read_csv(path, sep="\t", header=None, names=["text", "label"], quoting=csv.QUOTE_NONE)
    if df["label"].isna().any() or not df["label"].isin([0, 1]).all():
        raise DataValidationError(f"{path}: column 'label' must be 0 or 1 on every line")
    df["text"] = df["text"].astype(str).map(clean_text)
    df["label"] = df["label"].astype(int)
    if scheme == "ternary":
        df["label"] = df["label"] * 2
    return df[df["text"] != ""].reset_index(drop=True)
