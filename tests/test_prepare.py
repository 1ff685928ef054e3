"""prepare: label mapping, validation, quarantine, personal data and the reference split."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split

from sentiment.cli import entry_point
from sentiment.data.splits import (
    OOD_FILES,
    PERSONAL_COLUMNS,
    RATING,
    TEXT,
    DataValidationError,
    assign_appended,
    hash_split,
    map_labels,
    read_raw,
)
from sentiment.data.text import clean_text
from stages.prepare import main as prepare_main
from stages.prepare import prepare
from tests.conftest import REPO

PARAMS = {
    "label_scheme": "binary",
    "test_size": 0.3,
    "seed": 42,
    "val_size": 0.15,
    "reference_rows": 60,
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
    with pytest.raises(DataValidationError, match=r"absent\.csv: no such file"):
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


def damage(raw: Path, ood: Path, params: dict, case: str) -> None:
    """Break one input of a prepare run the way a newcomer might."""
    if case == "empty file":
        raw.write_bytes(b"")
    elif case == "header only":
        raw.write_text("Reviewer Name,Review text,Ratings\n")
    elif case == "missing column":
        pd.read_csv(raw).drop(columns=[RATING]).to_csv(raw, index=False)
    elif case == "undecodable bytes":
        raw.write_bytes(raw.read_bytes().replace(b"good", b"g\xff\xfeod", 1))
    elif case == "all ratings invalid":
        pd.read_csv(raw).assign(Ratings="five").to_csv(raw, index=False)
    elif case == "missing out-of-domain file":
        (ood / OOD_FILES["yelp"]).unlink()
    elif case == "unknown label scheme":
        params["label_scheme"] = "five-star"


def damaged_project(root: Path, case: str) -> Path:
    """A project directory whose prepare inputs are broken by ``case``, with an earlier
    run's output in place; returns that output."""
    raw_dir = root / "data" / "raw"
    raw_dir.mkdir(parents=True)
    write_ood(raw_dir)
    raw = write_raw(raw_dir / "reviews.csv")
    params = dict(PARAMS)
    damage(raw, raw_dir, params, case)
    (root / "params.yaml").write_text(yaml.safe_dump({"prepare": params}))
    (root / "dvc.yaml").write_bytes((REPO / "dvc.yaml").read_bytes())
    earlier = root / "data" / "prepared" / "train.parquet"
    earlier.parent.mkdir()
    earlier.write_bytes(b"earlier run")
    return earlier


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty file", r"reviews\.csv: empty file"),
        ("header only", r"reviews\.csv: a header but no reviews"),
        ("missing column", r"reviews\.csv: missing required column\(s\) \['Ratings'\]"),
        ("undecodable bytes", r"reviews\.csv: not UTF-8 text \(byte \d+: b'\\xff'\)"),
        ("all ratings invalid", r"reviews\.csv: 100\.0% of rows quarantined \({'bad_rating': 60}"),
        ("missing out-of-domain file", r"yelp_labelled\.txt: no such file"),
        ("unknown label scheme", r"prepare\.label_scheme must be 'binary' or 'ternary'"),
    ],
)
@pytest.mark.slow
def test_a_damaged_input_fails_in_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, message: str
) -> None:
    earlier = damaged_project(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(REPO / "stages" / "prepare.py")])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("SENTIMENT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        entry_point(prepare_main)
    line = str(exit_.value.code)
    assert "\n" not in line and line.startswith("prepare: ")
    assert re.search(message, line), line
    assert earlier.read_bytes() == b"earlier run"
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["train.parquet"]


@pytest.mark.slow
def test_the_command_prints_one_line(tmp_path: Path) -> None:
    damaged_project(tmp_path, "empty file")
    env = os.environ | {
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    env.pop("SENTIMENT_DEBUG", None)
    command = [sys.executable, "-m", "stages.prepare"]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (1, "prepare: data/raw/reviews.csv: empty file\n")


def test_debug_shows_the_error_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    damaged_project(tmp_path, "empty file")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(REPO / "stages" / "prepare.py"), "--debug"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SENTIMENT_DEBUG", "")  # --debug sets it: undone after the test
    with pytest.raises(DataValidationError, match="empty file") as raised:
        entry_point(prepare_main)  # re-raised with its traceback, not turned into one line
    assert isinstance(raised.value.__cause__, pd.errors.EmptyDataError)


def test_appended_texts_follow_earlier_rows_else_their_hash() -> None:
    earlier = {"seen in test": "test", "seen in train": "train"}
    texts = ["seen in test", "brand new", "seen in train", "brand new"]
    assigned = assign_appended(earlier, texts, PARAMS)
    assert assigned[0] == "test" and assigned[2] == "train"
    assert assigned[1] == assigned[3] == hash_split("brand new", PARAMS)
    shares = pd.Series([hash_split(f"text {i}", PARAMS) for i in range(20_000)]).value_counts(
        normalize=True
    )
    assert shares["test"] == pytest.approx(0.3, abs=0.01)
    assert shares["val"] == pytest.approx(0.7 * 0.15, abs=0.01)


def test_fewer_rows_than_the_reference_is_refused(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "reviews.csv", n=40)
    with pytest.raises(DataValidationError, match=r"40 rows, fewer than prepare\.reference_rows"):
        prepare(raw, write_ood(tmp_path / "ood"), tmp_path / "out", PARAMS)


def append_reviews(raw_csv: Path, out_csv: Path, splits: dict[str, pd.DataFrame]) -> list[str]:
    """Copy ``raw_csv`` plus 300 reviews: 100 train texts, 100 test texts, 100 new ones.

    Returns the appended rows' cleaned texts. Every appended row is spelled differently
    in the raw file from the row whose text it repeats (so it is no exact duplicate) but
    cleans to the same text; 20 of the new texts appear twice.
    """
    raw = pd.read_csv(raw_csv)
    reused = [
        f"  {text}READ MORE"
        for name in ("train", "test")
        for text in splits[name]["text"].drop_duplicates().head(100)
    ]
    new = [f"appended review {i} {'great' if i % 4 else 'awful'}" for i in range(80)]
    texts = reused + new + [f"{text} READ MORE" for text in new[:20]]
    ratings = [5 if i % 4 else 1 for i in range(len(texts))]
    appended = pd.DataFrame({TEXT: texts, RATING: ratings})
    pd.concat([raw, appended], ignore_index=True).to_csv(out_csv, index=False)
    return [clean_text(t) for t in texts]


def check_growth(old_dir: Path, new_dir: Path, appended: list[str]) -> None:
    """No earlier row moved; appended texts follow earlier rows and never straddle splits."""
    names = ("train", "val", "test")
    old = {n: pd.read_parquet(old_dir / f"{n}.parquet") for n in names}
    new = {n: pd.read_parquet(new_dir / f"{n}.parquet") for n in names}
    for name in names:
        pd.testing.assert_frame_equal(new[name].head(len(old[name])), old[name])
    added = {n: new[n]["text"].iloc[len(old[n]) :].tolist() for n in names}
    assert sorted(t for n in names for t in added[n]) == sorted(appended)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(added[a]) & set(added[b]), (a, b)
    for name in names:
        earlier = set().union(*(set(old[n]["text"]) for n in names))
        assert set(added[name]) & earlier <= set(old[name]["text"]), name


def test_appending_rows_moves_no_earlier_row(tmp_path: Path) -> None:
    ood = write_ood(tmp_path / "ood")
    raw = write_raw(tmp_path / "reviews.csv", n=60)
    prepare(raw, ood, tmp_path / "before", PARAMS)
    old = {n: pd.read_parquet(tmp_path / "before" / f"{n}.parquet") for n in ("train", "test")}
    grown = tmp_path / "grown.csv"
    appended = append_reviews(raw, grown, old)
    stats = prepare(grown, ood, tmp_path / "after", PARAMS)
    assert stats["appended_rows"] == len(appended)
    check_growth(tmp_path / "before", tmp_path / "after", appended)


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
def test_test_split_is_the_reference_protocols_rows(pipeline_copy: Path) -> None:
    raw = pd.read_csv(pipeline_copy / "data" / "raw" / "reviews.csv")
    reference = raw[[TEXT, RATING]].dropna().drop_duplicates()
    _, test = train_test_split(
        reference, test_size=0.3, stratify=reference[RATING] >= 3, random_state=42
    )
    prepared = pd.read_parquet(pipeline_copy / "data" / "prepared" / "test.parquet")
    assert prepared["text"].tolist() == test[TEXT].map(clean_text).tolist()


@pytest.mark.slow
def test_appending_300_reviews_moves_no_earlier_row(pipeline_copy: Path, tmp_path: Path) -> None:
    data = pipeline_copy / "data"
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())["prepare"]
    prepared = data / "prepared"
    splits = {n: pd.read_parquet(prepared / f"{n}.parquet") for n in ("train", "test")}
    grown = tmp_path / "reviews.csv"
    appended = append_reviews(data / "raw" / "reviews.csv", grown, splits)
    stats = prepare(grown, data / "raw", tmp_path / "out", params)
    assert stats["appended_rows"] == 300
    check_growth(prepared, tmp_path / "out", appended)


@pytest.mark.slow
def test_no_personal_data_in_any_prepared_output(pipeline_copy: Path) -> None:
    raw = pd.read_csv(pipeline_copy / "data" / "raw" / "reviews.csv")
    names = set(raw["Reviewer Name"].dropna()) - {"Flipkart Customer"}
    for path in (pipeline_copy / "data" / "prepared").rglob("*.parquet"):
        df = pd.read_parquet(path)
        assert not set(PERSONAL_COLUMNS) & set(df.columns), path
        assert not names & set(df.astype(str).stack()), path
