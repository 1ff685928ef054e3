"""The dataset a pipeline runs on, declared in params.yaml: which files, which columns, which
classes (docs/your-reviews.md).

``dataset`` names one entry of ``datasets``; its files live in ``data/raw/<name>/``, the
folder ``dvc.yaml`` tracks for it. An entry says how to read its source (a file, or every
table file of a folder in path order; CSV, TSV, Parquet or JSON Lines, gzip'd or not), which
column(s) hold the text, and how rows get their class: a numeric rating through
``rating_bins``, or a label column through ``label_values``. Only the declared columns are
read. ``ood`` lists out-of-domain sets, each read the same way.

This module decides (the declaration, checked; labels from values) and reads; ``prepare``
writes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sentiment import paths
from sentiment.data.splits import DataValidationError, read_csv
from sentiment.params import ParamsError, read_params_file

FORMATS = ("auto", "csv", "tsv", "parquet", "jsonl")
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}
SHOWN = 3  # example values named in an error

# The keys of a declaration (``datasets.<name>``) and of one of its ``ood`` sets.
READ_KEYS = ("source", "format", "encoding", "header", "columns", "text", "text_separator")
LABEL_KEYS = ("rating", "rating_bins", "label", "label_values")
DATASET_KEYS = (
    *READ_KEYS,
    *LABEL_KEYS,
    "classes",
    "split_column",
    "reference_rows",
    "metadata",
    "ood",
)
OOD_KEYS = ("name", *READ_KEYS, *LABEL_KEYS)


@dataclass(frozen=True)
class Table:
    """How to read one declared source and label its rows."""

    where: str  # the params path that declares it, for errors: "datasets.flipkart"
    folder: Path  # data/raw/<dataset>
    source: str
    format: str = "auto"
    encoding: str = "utf-8"
    header: bool = True
    columns: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    text_separator: str = " "
    rating: str | None = None
    rating_bins: tuple[float, ...] = ()
    label: str | None = None
    label_values: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / self.source

    @property
    def no_class_reason(self) -> str:
        """The quarantine reason of a row whose rating or label is missing."""
        return "bad_rating" if self.rating is not None else "bad_label"

    def files(self) -> list[Path]:
        """The files of the source: the file itself, or a folder's table files in path order."""
        if self.path.is_dir():
            found = sorted(p for p in self.path.iterdir() if table_format(p) and p.is_file())
            if not found:
                raise DataValidationError(f"{self.path}: no CSV, TSV, Parquet or JSONL file in it")
            return found
        if not self.path.is_file():
            raise DataValidationError(
                f"{self.path}: no such file ({self.where}.source; dvc pull fetches the raw data)"
            )
        return [self.path]


@dataclass(frozen=True)
class Dataset(Table):
    """A declared dataset: a table, its classes, split and out-of-domain sets."""

    name: str = ""
    classes: tuple[str, ...] = ()
    split_column: str | None = None
    reference_rows: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    ood: tuple[Table, ...] = ()
    ood_names: tuple[str, ...] = ()


def table_format(path: Path) -> str | None:
    """The format a file's name implies (``reviews.jsonl.gz`` is jsonl), or None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return SUFFIXES.get(suffixes[-1]) if suffixes else None


def near(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """ ", did you mean X?" for the closest of ``choices``, else ""."""
    found = difflib.get_close_matches(name, [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {found[0]!r}?" if found else ""


def unknown(where: str, values: dict[str, Any], known: tuple[str, ...]) -> None:
    """Refuse a key the declaration does not define, naming the nearest valid one."""
    for key in sorted(set(values) - set(known), key=str):
        found = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"did you mean {found[0]}?" if found else f"not a key of it ({', '.join(known)})"
        raise ParamsError(f"{where}.{key}: {hint}")


def as_names(where: str, value: Any) -> tuple[str, ...]:
    """One column name or a list of them, as a tuple."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ParamsError(f"{where}: a column name or a list of them, got {value!r}")


def check_labels(where: str, table: Table, classes: tuple[str, ...], ood: bool) -> None:
    """Exactly one of rating (with bins) and label (with values); both fit ``classes``."""
    if (table.rating is None) == (table.label is None):
        raise ParamsError(f"{where}: declare either 'rating' (with rating_bins) or 'label'")
    if table.rating is not None:
        bins = table.rating_bins
        if len(bins) != len(classes) + 1 or list(bins) != sorted(set(bins)):
            raise ParamsError(
                f"{where}.rating_bins: {len(classes) + 1} increasing edges for the "
                f"{len(classes)} classes {list(classes)}, got {list(bins)}"
            )
    else:
        unknown_classes = sorted(set(table.label_values) - set(classes))
        if not table.label_values or unknown_classes:
            raise ParamsError(
                f"{where}.label_values: a list of values per class of {list(classes)}"
                + (f"; not a class: {unknown_classes}" if unknown_classes else "")
            )
        if not ood and set(table.label_values) != set(classes):
            missing = sorted(set(classes) - set(table.label_values))
            raise ParamsError(f"{where}.label_values: no values for class(es) {missing}")


def make_table(
    where: str, folder: Path, spec: dict[str, Any], classes: tuple[str, ...], ood: bool = False
) -> dict:
    """The reading and labelling fields of a declaration, checked."""
    if not isinstance(spec.get("source"), str):
        raise ParamsError(f"{where}.source: a file or folder name in {folder}/")
    fmt = spec.get("format", "auto")
    if fmt not in FORMATS:
        raise ParamsError(f"{where}.format: one of {', '.join(FORMATS)}, got {fmt!r}")
    values = spec.get("label_values") or {}
    if not isinstance(values, dict):
        raise ParamsError(f"{where}.label_values: a mapping of class to values, got {values!r}")
    fields = {
        "where": where,
        "folder": folder,
        "source": spec["source"],
        "format": fmt,
        "encoding": spec.get("encoding", "utf-8"),
        "header": bool(spec.get("header", True)),
        "columns": as_names(f"{where}.columns", spec["columns"]) if spec.get("columns") else (),
        "text": as_names(f"{where}.text", spec.get("text")),
        "text_separator": str(spec.get("text_separator", " ")),
        "rating": spec.get("rating"),
        "rating_bins": tuple(float(b) for b in spec.get("rating_bins") or ()),
        "label": spec.get("label"),
        "label_values": {
            str(k): tuple(normal(v) for v in (vs if isinstance(vs, list) else [vs]))
            for k, vs in values.items()
        },
    }
    check_labels(where, Table(**fields), classes, ood)
    return fields


def load_dataset(params_file: str | Path = paths.PARAMS_FILE) -> Dataset:
    """The dataset ``dataset`` names in params.yaml, its declaration checked."""
    params = read_params_file(params_file)
    name = params.get("dataset")
    declared = params.get("datasets")
    if not isinstance(declared, dict) or not declared:
        raise ParamsError(f"{params_file}: no 'datasets:' section")
    if name not in declared:
        raise ParamsError(
            f"{params_file}: dataset: {name!r} is not declared under datasets "
            f"({', '.join(declared)}){near(str(name), list(declared))}"
        )
    where = f"datasets.{name}"
    spec = declared[name]
    unknown(where, spec, DATASET_KEYS)
    classes = as_names(f"{where}.classes", spec.get("classes"))
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ParamsError(f"{where}.classes: two or more distinct names, got {list(classes)}")
    folder = paths.RAW / str(name)
    ood_specs = spec.get("ood") or []
    ood = []
    for i, ood_spec in enumerate(ood_specs):
        ood_where = f"{where}.ood[{i}]"
        if not isinstance(ood_spec, dict) or not isinstance(ood_spec.get("name"), str):
            raise ParamsError(f"{ood_where}: a mapping with a 'name'")
        unknown(ood_where, ood_spec, OOD_KEYS)
        ood.append(Table(**make_table(ood_where, folder, ood_spec, classes, ood=True)))
    names = tuple(o["name"] for o in ood_specs)
    if len(set(names)) != len(names):
        raise ParamsError(f"{where}.ood: each set needs its own name, got {list(names)}")
    reference_rows = spec.get("reference_rows")
    if reference_rows is not None and (not isinstance(reference_rows, int) or reference_rows < 1):
        raise ParamsError(f"{where}.reference_rows: a row count or null, got {reference_rows!r}")
    metadata = spec.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ParamsError(f"{where}.metadata: a mapping of kept name to column, got {metadata!r}")
    return Dataset(
        **make_table(where, folder, spec, classes),
        name=str(name),
        classes=classes,
        split_column=spec.get("split_column"),
        reference_rows=reference_rows,
        metadata=dict(metadata),
        ood=tuple(ood),
        ood_names=names,
    )


def normal(value: Any) -> str:
    """A label value as compared: text stripped and case-folded, 1.0 as 1."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    return str(value).strip().casefold()


def wanted_columns(table: Table) -> list[str]:
    """Every column a table's declaration names (text, rating or label, split, metadata)."""
    names = [*table.text, table.rating, table.label]
    if isinstance(table, Dataset):
        names += [table.split_column, *table.metadata.values()]
    return list(dict.fromkeys(n for n in names if n))


def read_file(path: Path, table: Table, wanted: list[str]) -> pd.DataFrame:
    """One file's declared columns, every value as read (strings for CSV and TSV)."""
    fmt = table_format(path) if table.format == "auto" else table.format
    if fmt is None:
        raise DataValidationError(
            f"{path}: cannot tell its format from its name; set {table.where}.format"
        )
    utf8 = table.encoding.lower().replace("_", "-") == "utf-8"
    encoding = "utf-8-sig" if utf8 else table.encoding
    if fmt in ("csv", "tsv"):
        options: dict[str, Any] = {
            "sep": "\t" if fmt == "tsv" else ",",
            "encoding": encoding,
            "dtype": str,
        }
        if fmt == "tsv":
            options["quoting"] = 3  # csv.QUOTE_NONE: TSV quotes are text
        if not table.header:
            options |= {"header": None, "names": list(table.columns)}
        frame = read_csv(path, **options)
    else:
        try:
            frame = (
                pd.read_parquet(path)
                if fmt == "parquet"
                else pd.read_json(path, lines=True, dtype=False, encoding=encoding)
            )
        except (ValueError, OSError) as err:
            raise DataValidationError(f"{path}: cannot read it as {fmt}: {err}") from err
    if frame.empty:
        raise DataValidationError(f"{path}: a header but no reviews")
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        have = [str(c) for c in frame.columns]
        raise DataValidationError(
            f"{path}: no column {missing[0]!r} ({table.where}; it has {have})"
            f"{near(missing[0], have)}"
        )
    return frame[wanted]


def read_table(table: Table) -> pd.DataFrame:
    """Every row of a table's files, its declared columns only, numbered from 0."""
    wanted = wanted_columns(table)
    frames = [read_file(path, table, wanted) for path in table.files()]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame.reset_index(drop=True)


def joined_text(table: Table, frame: pd.DataFrame) -> pd.Series:
    """The text columns joined by the separator (empty parts left out); NA where all are."""
    parts = frame[list(table.text)].astype("string")
    if len(table.text) == 1:
        return parts.iloc[:, 0].astype(object).where(parts.iloc[:, 0].notna(), None)
    joined = parts.apply(
        lambda row: table.text_separator.join(str(v) for v in row if pd.notna(v) and str(v)),
        axis=1,
    )
    return joined.where(parts.notna().any(axis=1), None).astype(object)


def ratings(table: Table, frame: pd.DataFrame) -> pd.Series:
    """The rating column as numbers (NaN where it is not one)."""
    return pd.to_numeric(frame[table.rating], errors="coerce")


def class_ids(
    table: Table, frame: pd.DataFrame, classes: tuple[str, ...], strict: bool = True
) -> pd.Series:
    """Each row's class id (NA where the rating or label is missing); a value outside the
    declaration fails with how many rows and three examples (is NA unless ``strict``)."""
    if table.rating is not None:
        values = ratings(table, frame)
        bins = table.rating_bins
        outside = values.notna() & ~values.between(bins[0], bins[-1])
        if not strict:
            values = values.where(~outside)
        elif outside.any():
            shown = ", ".join(f"{v:g}" for v in values[outside].unique()[:SHOWN])
            raise DataValidationError(
                f"{table.path}: {int(outside.sum())} rows have a rating outside "
                f"{table.where}.rating_bins [{bins[0]:g}, {bins[-1]:g}] (e.g. {shown})"
            )
        ids = np.searchsorted(np.asarray(bins[1:-1]), values.to_numpy(), side="right")
        return pd.Series(ids, index=frame.index, dtype="Int64").where(values.notna())
    lookup = {v: classes.index(c) for c, vs in table.label_values.items() for v in vs}
    raw = frame[table.label]
    present = raw.notna() & raw.astype(str).str.strip().ne("")
    keys = raw[present].map(normal)
    unmapped = ~keys.isin(list(lookup))
    if not strict:
        present[present] = ~unmapped
        keys = keys[~unmapped]
    elif unmapped.any():
        shown = ", ".join(repr(v) for v in raw[present][unmapped].unique()[:SHOWN])
        raise DataValidationError(
            f"{table.path}: {int(unmapped.sum())} rows have a {table.label!r} value outside "
            f"{table.where}.label_values (e.g. {shown})"
        )
    ids = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    ids[present] = keys.map(lookup).astype("Int64")
    return ids
