"""prepare: the declared dataset read, labelled, validated, quarantined and split."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split

from sentiment.cli import entry_point
from sentiment.data.dataset import Dataset, class_ids, load_dataset
from sentiment.data.splits import DataValidationError, assign_appended, hash_split
from sentiment.data.text import clean_text
from stages.prepare import main as prepare_main
from stages.prepare import prepare
from tests.conftest import REPO, copy_project, sh
from tests.conftest import flipkart as default_dataset

PARAMS = {"test_size": 0.3, "seed": 42, "val_size": 0.15, "max_quarantine_share": 0.05}
TEXT, RATING = "Review text", "Ratings"  # the default dataset's columns
PERSONAL_COLUMNS = ("Reviewer Name", "Place of Review")
UCI = ("amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt")


def flipkart(folder: Path, **changes) -> Dataset:
    """The default declaration, reading ``folder``, with 60 reference rows unless changed."""
    return replace(default_dataset(folder), **({"reference_rows": 60} | changes))


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
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_ood(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for filename in UCI:
        with open(directory / filename, "w") as fh:
            fh.write('Great "phone" , works.\t1\nTerrible battery.  \t0\n')
    return directory


def flipkart_folder(tmp_path: Path, n: int = 60, bad: dict | None = None) -> Path:
    """A folder with Flipkart-shaped reviews and the three UCI files."""
    folder = write_ood(tmp_path / "raw")
    write_raw(folder / "reviews.csv", n, bad)
    return folder


@pytest.mark.parametrize(
    ("bins", "expected"),
    [([1, 3, 5], [0, 0, 1, 1, 1]), ([1, 3, 4, 5], [0, 0, 1, 2, 2])],
)
def test_rating_bins_give_the_classes(tmp_path: Path, bins: list, expected: list[int]) -> None:
    classes = ("negative", "positive") if len(bins) == 3 else ("negative", "neutral", "positive")
    table = flipkart(tmp_path, rating_bins=tuple(bins), classes=classes)
    frame = pd.DataFrame({RATING: ["1", "2", "3", "4", "5"]})
    assert class_ids(table, frame, classes).tolist() == expected


def test_missing_column_names_file_column_and_the_nearest(tmp_path: Path) -> None:
    folder = flipkart_folder(tmp_path)
    frame = pd.read_csv(folder / "reviews.csv").rename(columns={RATING: "Rating"})
    frame.to_csv(folder / "reviews.csv", index=False)
    with pytest.raises(DataValidationError) as refused:
        prepare(flipkart(folder), tmp_path / "out", PARAMS)
    assert re.fullmatch(
        r".*reviews\.csv: no column 'Ratings' \(datasets\.flipkart; it has \[.*'Rating'\]\); "
        r"did you mean 'Rating'\?",
        str(refused.value),
    )


def test_unreadable_file_names_file(tmp_path: Path) -> None:
    folder = flipkart_folder(tmp_path)
    (folder / "reviews.csv").write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"reviews\.csv: empty file"):
        prepare(flipkart(folder), tmp_path / "out", PARAMS)
    (folder / "reviews.csv").unlink()
    with pytest.raises(DataValidationError, match=r"reviews\.csv: no such file"):
        prepare(flipkart(folder), tmp_path / "out", PARAMS)


def test_bad_rows_are_quarantined_by_reason(tmp_path: Path) -> None:
    bad = {0: {"Ratings": "five"}, 1: {"Review text": None}, 2: {"Review text": "READ MORE"}}
    folder = flipkart_folder(tmp_path, n=200, bad=bad)
    stats = prepare(flipkart(folder), tmp_path / "out", PARAMS)
    assert stats["quarantined"] == {
        "total": 3,
        "share": 0.015,
        "bad_rating": 1,
        "missing_text": 1,
        "empty_text": 1,
    }
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    assert sorted(quarantine["reason"]) == ["bad_rating", "empty_text", "missing_text"]
    assert list(quarantine.columns) == [TEXT, RATING, "Month", "reason"]  # declared ones only
    assert sum(stats["rows"].values()) == 197


def test_too_many_bad_rows_fail_the_stage(tmp_path: Path) -> None:
    folder = flipkart_folder(tmp_path, n=100, bad={i: {"Ratings": "none"} for i in range(10)})
    with pytest.raises(DataValidationError, match=r"10\.0% of rows quarantined"):
        prepare(flipkart(folder), tmp_path / "out", PARAMS)
    assert not (tmp_path / "out").exists()


def test_outputs_are_clean_and_three_classes_are_supported(tmp_path: Path) -> None:
    folder = flipkart_folder(tmp_path, n=120, bad={i: {"Ratings": 3} for i in range(1, 40, 4)})
    classes = ("negative", "neutral", "positive")
    dataset = flipkart(folder, rating_bins=(1, 3, 4, 5), classes=classes)
    stats = prepare(dataset, tmp_path / "out", PARAMS)
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert not train["text"].str.contains("READ MORE").any()
    assert set(train["label"]) <= {0, 1, 2}
    assert stats["classes"] == list(classes)
    ood = pd.read_parquet(tmp_path / "out" / "ood" / "amazon.parquet")
    assert ood.to_dict("list") == {
        "text": ['Great "phone" , works.', "Terrible battery."],
        "label": [2, 0],
    }


def test_an_ood_label_outside_its_values_is_named(tmp_path: Path) -> None:
    folder = flipkart_folder(tmp_path)
    (folder / "imdb_labelled.txt").write_text("no label here\tpositive\nfine\t1\n")
    with pytest.raises(DataValidationError) as refused:
        prepare(flipkart(folder), tmp_path / "out", PARAMS)
    assert str(refused.value).endswith(
        "imdb_labelled.txt: 1 rows have a 'label' value outside "
        "datasets.flipkart.ood[1].label_values (e.g. 'positive')"
    )


def damage(raw: Path, ood: Path, params: dict, case: str) -> None:
    """Break one input of a prepare run the way a newcomer might."""
    declared = params["datasets"]["flipkart"]
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
    elif case == "a rating outside the bins":
        pd.read_csv(raw).assign(Ratings=[7, 0, 6] + [5] * 57).to_csv(raw, index=False)
    elif case == "missing out-of-domain file":
        (ood / UCI[2]).unlink()
    elif case == "bins that do not fit the classes":
        declared["rating_bins"] = [1, 5]
    elif case == "a misspelt dataset key":
        declared["txt"] = declared.pop("text")
    elif case == "an undeclared dataset":
        params["dataset"] = "flipkrt"


def damaged_project(root: Path, case: str) -> Path:
    """A project directory whose prepare inputs are broken by ``case``, with an earlier
    run's output in place; returns that output."""
    raw_dir = root / "data" / "raw" / "flipkart"
    write_ood(raw_dir)
    raw = write_raw(raw_dir / "reviews.csv")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"]["flipkart"]["reference_rows"] = 60
    damage(raw, raw_dir, params, case)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
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
        (
            "missing column",
            r"reviews\.csv: no column 'Ratings' \(datasets\.flipkart; it has \[.*\]\)",
        ),
        ("undecodable bytes", r"reviews\.csv: not UTF-8 text \(byte \d+: b'\\xff'\)"),
        ("all ratings invalid", r"reviews\.csv: 100\.0% of rows quarantined \({'bad_rating': 60}"),
        (
            "a rating outside the bins",
            r"reviews\.csv: 3 rows have a rating outside datasets\.flipkart\.rating_bins "
            r"\[1, 5\] \(e\.g\. 7, 0, 6\)",
        ),
        ("missing out-of-domain file", r"yelp_labelled\.txt: no such file"),
        (
            "bins that do not fit the classes",
            r"datasets\.flipkart\.rating_bins: 3 increasing edges for the 2 classes",
        ),
        ("a misspelt dataset key", r"datasets\.flipkart\.txt: did you mean text\?"),
        ("an undeclared dataset", r"dataset: 'flipkrt' is not declared .*did you mean 'flipkart'"),
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
    assert (run.returncode, run.stderr) == (
        1,
        "prepare: data/raw/flipkart/reviews.csv: empty file\n",
    )


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
    folder = flipkart_folder(tmp_path, n=40)
    with pytest.raises(
        DataValidationError, match=r"40 rows, fewer than datasets\.flipkart\.reference_rows=60"
    ):
        prepare(flipkart(folder), tmp_path / "out", PARAMS)


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
    folder = flipkart_folder(tmp_path, n=60)
    prepare(flipkart(folder), tmp_path / "before", PARAMS)
    old = {n: pd.read_parquet(tmp_path / "before" / f"{n}.parquet") for n in ("train", "test")}
    raw = folder / "reviews.csv"
    appended = append_reviews(raw, raw, old)
    stats = prepare(flipkart(folder), tmp_path / "after", PARAMS)
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
    raw = pd.read_csv(pipeline_copy / "data" / "raw" / "flipkart" / "reviews.csv")
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
    folder = write_ood(tmp_path / "raw")
    for name in UCI:
        (folder / name).write_bytes((data / "raw" / "flipkart" / name).read_bytes())
    raw = data / "raw" / "flipkart" / "reviews.csv"
    appended = append_reviews(raw, folder / "reviews.csv", splits)
    stats = prepare(flipkart(folder, reference_rows=8518), tmp_path / "out", params)
    assert stats["appended_rows"] == 300
    check_growth(prepared, tmp_path / "out", appended)


@pytest.mark.slow
def test_no_personal_data_in_any_prepared_output(pipeline_copy: Path) -> None:
    raw = pd.read_csv(pipeline_copy / "data" / "raw" / "flipkart" / "reviews.csv")
    names = set(raw["Reviewer Name"].dropna()) - {"Flipkart Customer"}
    for path in (pipeline_copy / "data" / "prepared").rglob("*.parquet"):
        df = pd.read_parquet(path)
        assert not set(PERSONAL_COLUMNS) & set(df.columns), path
        assert not names & set(df.astype(str).stack()), path


# --- any team's reviews: formats, label forms, splits ---------------------------------


def reviews(n: int = 90) -> pd.DataFrame:
    """A shop export: title and body, a 1-10 score, a pos/neg label, and personal columns."""
    return pd.DataFrame(
        {
            "Title": [f"title {i}" if i % 5 else None for i in range(n)],
            "Body": [f"body {i} {'lovely' if i % 3 else 'awful'} ✓" for i in range(n)],
            "Score": [(9 if i % 3 else 2) + (0.5 if i % 4 == 0 else 0) for i in range(n)],
            "Sentiment": ["Pos" if i % 3 else "neg" for i in range(n)],
            "Age": [30 + i for i in range(n)],
            "Part": ["test" if i % 10 == 0 else "train" for i in range(n)],
        }
    )


def declared(folder: Path, source: str, **changes) -> Dataset:
    """A declaration of ``reviews()`` as written to ``folder/source``."""
    fields = {
        "where": "datasets.shop",
        "folder": folder,
        "source": source,
        "text": ("Title", "Body"),
        "text_separator": ". ",
        "rating": "Score",
        "rating_bins": (0.0, 5.0, 10.0),
        "name": "shop",
        "classes": ("negative", "positive"),
    }
    return Dataset(**(fields | changes))


def write_export(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as a newcomer's file: TSV or CSV with a BOM and CRLF, JSON Lines (gzip'd or
    not) or Parquet, by the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    if name.endswith((".csv", ".tsv")):
        sep = "\t" if name.endswith(".tsv") else ","
        text = frame.to_csv(sep=sep, index=False, lineterminator="\r\n")
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    elif ".jsonl" in name:
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize(
    "source", ["reviews.csv", "reviews.tsv", "reviews.jsonl", "reviews.jsonl.gz", "reviews.parquet"]
)
def test_every_format_gives_the_same_prepared_rows(tmp_path: Path, source: str) -> None:
    write_export(reviews(), tmp_path / "raw" / source)
    stats = prepare(declared(tmp_path / "raw", source), tmp_path / "out", PARAMS)
    assert stats["rows"] == {"train": 53, "val": 10, "test": 27}
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert list(train.columns) == ["text", "label", "rating"]  # Age never reaches it
    first = train[train["text"].str.startswith("body 0 ")]
    assert first.empty or first["text"].iloc[0] == "body 0 awful ✓"  # no title: body alone
    assert train["text"].str.match(r"^(title \d+\. )?body \d+ (lovely|awful) ✓$").all()
    assert set(train["rating"]) <= {2.0, 2.5, 9.0, 9.5}
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    assert "Age" not in quarantine.columns


def test_a_folder_of_files_is_read_in_path_order(tmp_path: Path) -> None:
    frame = reviews()
    write_export(frame.iloc[:45], tmp_path / "raw" / "export" / "part-1.csv")
    write_export(frame.iloc[45:], tmp_path / "raw" / "export" / "part-2.jsonl")
    stats = prepare(declared(tmp_path / "raw", "export"), tmp_path / "out", PARAMS)
    assert stats["raw_rows"] == 90


def test_string_labels_map_through_label_values(tmp_path: Path) -> None:
    write_export(reviews(), tmp_path / "raw" / "reviews.csv")
    dataset = declared(
        tmp_path / "raw",
        "reviews.csv",
        rating=None,
        rating_bins=(),
        label="Sentiment",
        label_values={"negative": ("neg",), "positive": ("pos", "1")},
    )
    prepare(dataset, tmp_path / "out", PARAMS)
    test = pd.read_parquet(tmp_path / "out" / "test.parquet")
    assert list(test.columns) == ["text", "label"]
    assert (test["label"] == test["text"].str.contains("lovely").astype(int)).all()
    frame = reviews().assign(Sentiment=["meh", "Pos", "so-so"] + ["neg"] * 87)
    write_export(frame, tmp_path / "raw" / "reviews.csv")
    with pytest.raises(DataValidationError) as refused:
        prepare(dataset, tmp_path / "again", PARAMS)
    assert str(refused.value).endswith(
        "2 rows have a 'Sentiment' value outside datasets.shop.label_values (e.g. 'meh', 'so-so')"
    )
    assert not (tmp_path / "again").exists()


def test_a_split_column_decides_the_split(tmp_path: Path) -> None:
    write_export(reviews(), tmp_path / "raw" / "reviews.parquet")
    dataset = declared(tmp_path / "raw", "reviews.parquet", split_column="Part")
    stats = prepare(dataset, tmp_path / "out", PARAMS)
    assert stats["rows"]["test"] == 9  # the rows marked test, no other
    assert stats["rows"]["train"] + stats["rows"]["val"] == 81
    test = pd.read_parquet(tmp_path / "out" / "test.parquet")
    assert test["text"].str.contains(r"body (?:0|\d*0) ").all()


def test_a_class_without_rows_is_one_line(tmp_path: Path) -> None:
    write_export(reviews(), tmp_path / "raw" / "reviews.csv")
    three = declared(
        tmp_path / "raw",
        "reviews.csv",
        rating_bins=(0.0, 4.0, 6.0, 10.0),
        classes=("negative", "neutral", "positive"),
    )
    with pytest.raises(DataValidationError) as refused:
        prepare(three, tmp_path / "out", PARAMS)
    assert str(refused.value).endswith(
        "class(es) ['neutral'] of datasets.shop.classes have fewer than 3 rows, too few for "
        "train, val and test"
    )


def test_the_clothing_set_is_declared_beside_flipkart(tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["dataset"] == "flipkart"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params | {"dataset": "clothing"}))
    clothing = load_dataset(tmp_path / "params.yaml")
    assert clothing.path == Path("data/raw/clothing/reviews.csv")
    assert (clothing.text, clothing.rating) == (("Title", "Review Text"), "Rating")
    assert clothing.ood_names == ("amazon", "imdb", "yelp")
    assert (REPO / "data" / "raw" / "clothing" / "reviews.csv.dvc").is_file()


@pytest.mark.slow
def test_dvc_exp_run_switches_the_dataset_with_one_param(tmp_path: Path) -> None:
    """``-S dataset=shop`` makes prepare read data/raw/shop/ and its declaration: dvc.yaml's
    templated dep and params follow the key."""
    root = copy_project(tmp_path)
    write_export(reviews(), root / "data" / "raw" / "shop" / "reviews.csv")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["datasets"]["shop"] = {
        "source": "reviews.csv",
        "text": ["Title", "Body"],
        "text_separator": ". ",
        "rating": "Score",
        "rating_bins": [0, 5, 10],
        "classes": ["negative", "positive"],
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "shop")
    sh(root, "dvc", "exp", "run", "-S", "dataset=shop", "prepare")
    stage = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["prepare"]
    assert "data/raw/shop" in {dep["path"] for dep in stage["deps"]}
    assert stage["params"]["params.yaml"]["dataset"] == "shop"
    assert "datasets.shop" in stage["params"]["params.yaml"]
    stats = json.loads((root / "data" / "prepared" / "stats.json").read_text())
    assert stats["raw_rows"] == 90
