"""prepare: label mapping, validation, quarantine, personal data and the reference split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from stages.prepare import (
    OOD_FILES,
    PERSONAL_COLUMNS,
    DataValidationError,
    map_labels,
    prepare,
    read_raw,
)

PARAMS = {
    "label_scheme": "binary",
    "test_size": 0.3,
    "seed": 42,
    "val_size": 0.15,
    "max_quarantine_share": 0.05,
}


def write_raw(path: Path, n: int = 60, bad: dict[int, dict] | None = None) -> Path:
    rows = [
        {
            "Reviewer Name": f"Person {i}",
            "Review Title": "t",
            "Place of Review": "Chennai",
            "Month": "Feb 2021",
            "Review text": f"review number {i} was {'good' if i % 3 else 'bad'}READ MORE",
            "Ratings": 5 if i % 3 else 1,
        }
        for i in range(n)
    ]
    for i, change in (bad or {}).items():
        rows[i].update(change)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_ood(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    for filename in OOD_FILES.values():
        with open(directory / filename, "w") as fh:
            fh.write('Great "phone" , works.\t1\nTerrible battery.  \t0\n')
    return directory


@pytest.mark.parametrize(
    ("scheme", "expected"), [("binary", [0, 0, 1, 1, 1]), ("ternary", [0, 0, 1, 2, 2])]
)
def test_map_labels(scheme: str, expected: list[int]) -> None:
    assert map_labels(pd.Series([1, 2, 3, 4, 5]), scheme).tolist() == expected


def test_map_labels_rejects_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="label_scheme"):
        map_labels(pd.Series([1]), "five-star")


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"Review text": ["ok"]}).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"reviews\.csv.*'Ratings'"):
        read_raw(path)


def test_unreadable_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(b'"Review text",Ratings\n"unterminated,5\n')
    with pytest.raises(DataValidationError, match=r"reviews\.csv: cannot read"):
        read_raw(path)
    with pytest.raises(DataValidationError, match="cannot read"):
        read_raw(tmp_path / "absent.csv")


def test_bad_rows_are_quarantined_by_reason(tmp_path: Path) -> None:
    raw = write_raw(
        tmp_path / "reviews.csv",
        n=200,
        bad={
            0: {"Ratings": 7},
            1: {"Review text": None},
            2: {"Review text": "READ MORE"},
        },
    )
    stats = prepare(raw, write_ood(tmp_path / "ood"), tmp_path / "out", PARAMS)
    assert stats["quarantined"] == {
        "total": 3,
        "share": 0.015,
        "bad_rating": 1,
        "missing_text": 1,
        "empty_text": 1,
    }
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    assert sorted(quarantine["reason"]) == ["bad_rating", "empty_text", "missing_text"]
    assert sum(stats["rows"].values()) == 197


def test_too_many_bad_rows_fail_the_stage(tmp_path: Path) -> None:
    bad = {i: {"Ratings": 0} for i in range(10)}
    raw = write_raw(tmp_path / "reviews.csv", n=100, bad=bad)
    with pytest.raises(DataValidationError, match=r"10\.0% of rows quarantined"):
        prepare(raw, write_ood(tmp_path / "ood"), tmp_path / "out", PARAMS)
    assert not (tmp_path / "out" / "train.parquet").exists()


def test_outputs_are_clean_and_ternary_is_supported(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "reviews.csv", n=120, bad={5: {"Ratings": 3}, 7: {"Ratings": 3}})
    stats = prepare(
        raw, write_ood(tmp_path / "ood"), tmp_path / "out", PARAMS | {"label_scheme": "ternary"}
    )
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert not train["text"].str.contains("READ MORE").any()
    assert set(train["label"]) <= {0, 1, 2}
    assert stats["label_scheme"] == "ternary"
    ood = pd.read_parquet(tmp_path / "out" / "ood" / "amazon.parquet")
    assert ood.to_dict("list") == {
        "text": ['Great "phone" , works.', "Terrible battery."],
        "label": [2, 0],
    }


def test_malformed_ood_file_is_named(tmp_path: Path) -> None:
    ood = write_ood(tmp_path / "ood")
    with open(ood / OOD_FILES["imdb"], "w", newline="") as fh:
        csv.writer(fh, delimiter="\t").writerow(["no label here", "positive"])
    raw = write_raw(tmp_path / "reviews.csv")
    with pytest.raises(DataValidationError, match=r"imdb_labelled\.txt.*'label'"):
        prepare(raw, ood, tmp_path / "out", PARAMS)


# --- on the real data, through `dvc repro` in a project copy --------------------------


@pytest.mark.slow
def test_reference_split_is_reproduced(pipeline_copy: Path) -> None:
    prepared = pipeline_copy / "data" / "prepared"
    test = pd.read_parquet(prepared / "test.parquet")
    assert len(test) == 1573
    assert test["label"].value_counts().to_dict() == {1: 1288, 0: 285}
    stats = json.loads((prepared / "stats.json").read_text())
    assert stats["rows"] == {"train": 3117, "val": 551, "test": 1573}
    assert stats["quarantined"]["total"] == 8
    assert stats["leakage"]["test_texts_in_train"] > 0


@pytest.mark.slow
def test_no_personal_data_in_any_prepared_output(pipeline_copy: Path) -> None:
    raw = pd.read_csv(pipeline_copy / "data" / "raw" / "reviews.csv")
    names = set(raw["Reviewer Name"].dropna()) - {"Flipkart Customer"}
    for path in (pipeline_copy / "data" / "prepared").rglob("*.parquet"):
        df = pd.read_parquet(path)
        assert not set(PERSONAL_COLUMNS) & set(df.columns), path
        assert not names & set(df.astype(str).stack()), path
