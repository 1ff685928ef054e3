"""prepare: read the declared dataset (its declared columns only), clean, label and split.

``dataset`` in params.yaml names the entry of ``datasets`` to read (sentiment/data/dataset.py).
The first ``reference_rows`` rows are split by the reference protocol exactly (dropna +
drop_duplicates on text and rating or label, ``prepare.test_size`` stratified by class,
``random_state=prepare.seed``) so scores compare with the published ones; validation is carved
from the reference train part. Rows appended after them never move those rows: a new row
whose cleaned text an earlier row has goes where that row went, any other by a stable hash of
its cleaned text (see ``assign_appended``). A dataset with a ``split_column`` is split as
that column says instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sentiment import paths
from sentiment.cli import entry_point, no_options
from sentiment.data.dataset import Dataset, Table, class_ids, joined_text, load_dataset, read_table
from sentiment.data.splits import (
    SPLIT_NAMES,
    DataValidationError,
    quarantine_reasons,
    split_by_column,
    split_rows,
)
from sentiment.data.text import clean_text
from sentiment.fileio import write_json, write_parquet
from sentiment.headlines import stage_line
from sentiment.params import load_params
from sentiment.tracking import log_key_metrics, stage_run

MIN_CLASS_ROWS = 3  # one for each of train, val and test


def labelled(table: Table, classes: tuple[str, ...]) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """A table's declared columns, its joined text and its class ids (NA where missing)."""
    raw = read_table(table)
    return raw, joined_text(table, raw), class_ids(table, raw, classes)


def read_ood(table: Table, classes: tuple[str, ...]) -> pd.DataFrame:
    """An out-of-domain set: cleaned text and class id, rows without either dropped."""
    _, text, ids = labelled(table, classes)
    out = pd.DataFrame({"text": text.fillna("").astype(str).map(clean_text), "label": ids})
    kept = out[(out["text"] != "") & out["label"].notna()]
    return kept.astype({"label": int}).reset_index(drop=True)


def to_prepared(dataset: Dataset, part: pd.DataFrame) -> pd.DataFrame:
    """Cleaned text, class id, the rating where declared, and the declared metadata."""
    out = pd.DataFrame(
        {"text": part["_text"].map(clean_text).astype(str), "label": part["_label"].astype(int)},
        index=part.index,
    )
    if dataset.rating is not None:
        rating = part["_rating"]
        out["rating"] = rating.astype(int) if (rating % 1 == 0).all() else rating
    for name, column in dataset.metadata.items():
        out[name] = part[column].astype("string")
    return out.reset_index(drop=True)


def check_classes(dataset: Dataset, labels: pd.Series) -> None:
    """Every class has the rows a stratified train/val/test split needs."""
    counts = labels.value_counts()
    few = [c for i, c in enumerate(dataset.classes) if counts.get(i, 0) < MIN_CLASS_ROWS]
    if few:
        raise DataValidationError(
            f"{dataset.path}: class(es) {few} of {dataset.where}.classes have fewer than "
            f"{MIN_CLASS_ROWS} rows, too few for train, val and test"
        )


def check_splits(dataset: Dataset, prepared: dict[str, pd.DataFrame]) -> None:
    """Every class has rows in every split."""
    for name, part in prepared.items():
        empty = [c for i, c in enumerate(dataset.classes) if not (part["label"] == i).any()]
        if empty:
            raise DataValidationError(
                f"{dataset.path}: class(es) {empty} of {dataset.where}.classes have no rows "
                f"in the {name} split ({len(part)} rows)"
            )


def prepare(dataset: Dataset, out_dir: Path, params: dict[str, Any]) -> dict:
    """Run the whole stage; return the stats written to ``stats.json``."""
    raw, text, ids = labelled(dataset, dataset.classes)
    reference_rows = dataset.reference_rows or len(raw)
    if len(raw) < reference_rows:
        raise DataValidationError(
            f"{dataset.path}: {len(raw)} rows, fewer than {dataset.where}.reference_rows="
            f"{reference_rows}; set it to the rows the reference split covers"
        )
    reasons = quarantine_reasons(text, ids, dataset.no_class_reason)
    quarantined = raw[reasons != ""].assign(reason=reasons[reasons != ""])
    share = len(quarantined) / max(len(raw), 1)
    if share > params["max_quarantine_share"]:
        counts = quarantined["reason"].value_counts().to_dict()
        raise DataValidationError(
            f"{dataset.path}: {share:.1%} of rows quarantined ({counts}), above "
            f"prepare.max_quarantine_share={params['max_quarantine_share']:.1%}"
        )
    valid = raw.assign(_text=text, _label=ids)[reasons == ""]
    if dataset.rating is not None:
        valid = valid.assign(_rating=pd.to_numeric(valid[dataset.rating]))
    source = "_rating" if dataset.rating is not None else dataset.label
    deduplicated = valid[["_text", source]].drop_duplicates()
    kept = valid.loc[deduplicated.index]
    labels = kept["_label"].astype(int)
    check_classes(dataset, labels)
    if dataset.split_column:
        where = f"{dataset.where}.split_column"
        splits = split_by_column(kept, kept[dataset.split_column], labels, params, where)
    else:
        splits = split_rows(kept, kept["_text"].map(clean_text), labels, params, reference_rows)

    prepared = {name: to_prepared(dataset, splits[name]) for name in SPLIT_NAMES}
    check_splits(dataset, prepared)
    ood = {
        name: read_ood(table, dataset.classes)
        for name, table in zip(dataset.ood_names, dataset.ood, strict=True)
    }
    # Every input is read and valid: only now is anything written.
    for name, part in prepared.items():
        write_parquet(out_dir / f"{name}.parquet", part)
    quarantine_out = quarantined.astype({c: "string" for c in quarantined.columns})
    write_parquet(out_dir / "quarantine.parquet", quarantine_out)
    for name, frame in ood.items():
        write_parquet(out_dir / "ood" / f"{name}.parquet", frame)
    (out_dir / "ood").mkdir(parents=True, exist_ok=True)

    train_texts = set(prepared["train"]["text"])
    return {
        "classes": list(dataset.classes),  # the dataset's name is the param ``dataset``
        "raw_rows": len(raw),
        "appended_rows": len(raw) - reference_rows,
        "duplicates_dropped": len(valid) - len(deduplicated),
        "quarantined": {
            "total": len(quarantined),
            "share": round(share, 5),
            **quarantined["reason"].value_counts().to_dict(),
        },
        "rows": {name: len(part) for name, part in prepared.items()},
        "class_balance": {
            name: {
                str(k): round(v, 4)
                for k, v in part["label"].value_counts(normalize=True).sort_index().items()
            }
            for name, part in prepared.items()
        },
        "ood_rows": {name: len(frame) for name, frame in ood.items()},
        "leakage": {"test_texts_in_train": int(prepared["test"]["text"].isin(train_texts).sum())},
    }


def main() -> None:
    no_options(__doc__)
    params = load_params("prepare")
    dataset = load_dataset()
    with stage_run("prepare"):
        stats = prepare(dataset, paths.PREPARED, params)
        write_json(paths.PREPARE_STATS, stats)
        log_key_metrics(
            {f"rows.{k}": v for k, v in stats["rows"].items()}
            | {
                "quarantined": stats["quarantined"]["total"],
                "leakage.test_texts_in_train": stats["leakage"]["test_texts_in_train"],
            }
        )
    print(stage_line("prepare"))


if __name__ == "__main__":
    entry_point(main)
