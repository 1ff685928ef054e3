"""prepare: validate the raw reviews, drop personal data, clean, label and split.

The first ``prepare.reference_rows`` rows of the raw file are split by the reference
protocol exactly (dropna + drop_duplicates on ``Review text``/``Ratings``, 30 %
stratified, ``random_state=42``) so scores compare with the published ones; validation is
carved from the reference train part. Rows appended after them never move those rows: a
new row whose cleaned text an earlier row has goes where that row went, any other by a
stable hash of its cleaned text (see ``assign_appended``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from sentiment import paths
from sentiment.cli import entry_point, no_options
from sentiment.data.splits import (
    OOD_FILES,
    RATING,
    TEXT,
    DataValidationError,
    map_labels,
    quarantine_reasons,
    read_ood,
    read_raw,
    split_rows,
    to_prepared,
)
from sentiment.data.text import clean_text
from sentiment.fileio import write_json, write_parquet
from sentiment.headlines import stage_line
from sentiment.params import load_params
from sentiment.tracking import log_key_metrics, stage_run


def prepare(raw_csv: Path, ood_dir: Path, out_dir: Path, params: dict[str, Any]) -> dict:
    """Run the whole stage; return the stats written to ``stats.json``."""
    scheme = params["label_scheme"]
    map_labels(pd.Series([1]), scheme)  # fail early on an unknown scheme
    raw = read_raw(raw_csv)
    if len(raw) < params["reference_rows"]:
        raise DataValidationError(
            f"{raw_csv}: {len(raw)} rows, fewer than prepare.reference_rows="
            f"{params['reference_rows']}; set it to the rows the reference split covers"
        )
    reasons = quarantine_reasons(raw)
    quarantined = raw[reasons != ""].assign(reason=reasons[reasons != ""])
    share = len(quarantined) / max(len(raw), 1)
    if share > params["max_quarantine_share"]:
        counts = quarantined["reason"].value_counts().to_dict()
        raise DataValidationError(
            f"{raw_csv}: {share:.1%} of rows quarantined ({counts}), above "
            f"prepare.max_quarantine_share={params['max_quarantine_share']:.1%}"
        )
    valid = raw[reasons == ""].copy()
    valid[RATING] = valid[RATING].astype(int)
    deduplicated = valid[[TEXT, RATING]].drop_duplicates()
    kept = valid.loc[deduplicated.index]
    splits = split_rows(kept, kept[TEXT].map(clean_text), params)

    prepared = {name: to_prepared(part, scheme) for name, part in splits.items()}
    ood = {name: read_ood(ood_dir / filename, scheme) for name, filename in OOD_FILES.items()}
    # Every input is read and valid: only now is anything written.
    for name, part in prepared.items():
        write_parquet(out_dir / f"{name}.parquet", part)
    quarantine_out = quarantined.astype({c: "string" for c in quarantined.columns})
    write_parquet(out_dir / "quarantine.parquet", quarantine_out)
    for name, frame in ood.items():
        write_parquet(out_dir / "ood" / f"{name}.parquet", frame)
    ood_rows = {name: len(frame) for name, frame in ood.items()}

    train_texts = set(prepared["train"]["text"])
    return {
        "label_scheme": scheme,
        "raw_rows": len(raw),
        "appended_rows": len(raw) - params["reference_rows"],
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
        "ood_rows": ood_rows,
        "leakage": {"test_texts_in_train": int(prepared["test"]["text"].isin(train_texts).sum())},
    }


def main() -> None:
    no_options(__doc__)
    params = load_params("prepare")
    with stage_run("prepare"):
        stats = prepare(paths.RAW_REVIEWS, paths.RAW, paths.PREPARED, params)
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
