"""ingest: new rated reviews are appended to the raw file after its unchanged bytes and
recorded in its .dvc file; a bad file changes nothing; in a project copy, the pipeline then
keeps every earlier row in its split and the gate decides on the grown test split."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sentiment.data.splits import DataValidationError
from sentiment.data.text import clean_text
from sentiment.ingest import ingest
from sentiment.tracking import dvc_md5
from tests.conftest import RAW_DATA, REPO, copy_project, ood_set, project_env, sh
from tests.test_prepare import check_growth, write_raw
from tests.test_score import write_frame

TEXT, RATING = "Review text", "Ratings"  # the default dataset's columns


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A DVC project whose data/raw/flipkart/reviews.csv (60 rows) is tracked, with a desc
    and meta, and the repository's params.yaml (which declares it)."""
    root = tmp_path / "project"
    (root / "data" / "raw" / "flipkart").mkdir(parents=True)
    (root / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    sh(root, "dvc", "init", "-q")
    raw = write_raw(root / "data" / "raw" / "flipkart" / "reviews.csv", n=60)
    sh(root, "dvc", "add", "-q", str(raw))
    dvc_file = raw.parent / "reviews.csv.dvc"
    record = yaml.safe_load(dvc_file.read_text())
    record["outs"][0] |= {"desc": "Flipkart reviews", "meta": {"licence": "MIT"}}
    dvc_file.write_text(yaml.safe_dump(record))
    return root


def rated(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"new review {i}, {'lovely' if i % 2 else 'awful'}" for i in range(start, n)],
            "rating": [5 if i % 2 else 1 for i in range(start, n)],
            "title": "from the shop",
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
@pytest.mark.slow
def test_rows_are_appended_after_the_unchanged_bytes_and_recorded(
    project: Path, tmp_path: Path, suffix: str
) -> None:
    raw = project / "data" / "raw" / "flipkart" / "reviews.csv"
    before = raw.read_bytes()
    summary = ingest(write_frame(rated(30), tmp_path / f"new{suffix}"), raw)
    assert summary == {
        "appended": 30,
        "skipped": {},
        "repeats": 0,
        "rows_before": 60,
        "rows_after": 90,
    }
    assert raw.read_bytes().startswith(before)
    grown = pd.read_csv(raw)
    assert grown[TEXT].iloc[60:].tolist() == rated(30)["text"].tolist()
    assert grown[RATING].iloc[60:].tolist() == rated(30)["rating"].tolist()
    assert grown["Review Title"].iloc[60:].isna().all()  # not declared: not taken in
    assert grown["Reviewer Name"].iloc[60:].isna().all()  # no personal data taken in
    [out] = yaml.safe_load((raw.parent / "reviews.csv.dvc").read_text())["outs"]
    assert out["md5"] == dvc_md5(raw) and out["size"] == raw.stat().st_size
    assert out["desc"] == "Flipkart reviews" and out["meta"] == {"licence": "MIT"}
    assert "up to date" in sh(project, "dvc", "status").stdout
    assert (
        project / ".dvc" / "cache" / "files" / "md5" / out["md5"][:2] / out["md5"][2:]
    ).is_file()


@pytest.mark.slow
def test_a_file_with_a_bad_row_is_refused_whole(project: Path, tmp_path: Path) -> None:
    raw = project / "data" / "raw" / "flipkart" / "reviews.csv"
    dvc_file = raw.parent / "reviews.csv.dvc"
    before, record = raw.read_bytes(), dvc_file.read_bytes()
    bad = rated(20)
    bad.loc[3, "rating"] = 7
    bad.loc[11, "text"] = "   "
    with pytest.raises(DataValidationError) as refused:
        ingest(write_frame(bad, tmp_path / "bad.csv"), raw)
    assert str(refused.value) == (
        f"{tmp_path / 'bad.csv'}: 2 of 20 rows are not usable (row 4: bad_rating, "
        "row 12: empty_text); nothing was appended (--skip-invalid appends the others)"
    )
    assert raw.read_bytes() == before and dvc_file.read_bytes() == record
    summary = ingest(tmp_path / "bad.csv", raw, skip_invalid=True)
    assert summary["appended"] == 18
    assert summary["skipped"] == {"bad_rating": 1, "empty_text": 1}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("new.csv", "text,stars\nok,5\n", "new.csv: no rating column"),
        ("new.csv", "", "new.csv: empty file"),
        ("new.jsonl", '{"text": "ok", "rating": 5}\n{not json\n', "new.jsonl: cannot read it"),
        ("new.txt", "ok\t5\n", "new.txt: not .csv, .parquet or .jsonl"),
    ],
)
@pytest.mark.slow
def test_an_unreadable_input_is_one_line(
    project: Path, tmp_path: Path, name: str, content: str, message: str
) -> None:
    raw = project / "data" / "raw" / "flipkart" / "reviews.csv"
    before = raw.read_bytes()
    (tmp_path / name).write_text(content)
    with pytest.raises(DataValidationError, match=message):
        ingest(tmp_path / name, raw)
    assert raw.read_bytes() == before


@pytest.mark.slow
def test_a_failed_dvc_record_puts_the_old_file_back(project: Path, tmp_path: Path) -> None:
    raw = project / "data" / "raw" / "flipkart" / "reviews.csv"
    before = raw.read_bytes()
    (raw.parent / "reviews.csv.dvc").unlink()  # nothing to commit to: DVC refuses
    with pytest.raises(Exception, match=r"reviews\.csv\.dvc"):
        ingest(write_frame(rated(5), tmp_path / "new.csv"), raw)
    assert raw.read_bytes() == before


@pytest.mark.slow
def test_the_command_prints_one_line_and_fails_in_one(project: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "sentiment.ingest", "--input"]
    env = {**project_env(project), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*command, str(write_frame(rated(4), tmp_path / "new.csv"))],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "ingest: 4 rows appended to data/raw/flipkart/reviews.csv (60 -> 64 rows; 0 repeat a "
        "review already there, prepare keeps the first); data/raw/flipkart/reviews.csv.dvc "
        "updated: "
        "`make run` retrains and gates"
    )
    failed = subprocess.run(
        [*command, str(tmp_path / "missing.csv")],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.strip() == f"ingest: {tmp_path / 'missing.csv'}: no such file"


SMALL = {  # the pipeline in a minute: word n-grams, few trials, a transformer on 64 reviews
    "featurize": {"char_ngrams": False},
    "tune": {"families": ["logreg"], "n_trials": 2, "cv_folds": 2},
    "train_transformer": {
        "epochs": 1,
        "max_train_samples": 64,
        "max_length": 32,
        "quantize": False,
    },
    "evaluate": {"bootstrap_resamples": 100},
    "gate": {"bootstrap_resamples": 100},
}


def small_copy(dest: Path, raw_data: Path) -> Path:
    """A project copy in ``dest`` with the pulled raw data and the ``SMALL`` params."""
    root = copy_project(dest)
    for path in RAW_DATA:  # raw_data is data/raw/flipkart of the pulled copy
        shutil.copy(raw_data.parent / Path(path).relative_to("data/raw"), root / path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for stage, values in SMALL.items():
        params[stage] |= values
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


@pytest.mark.slow
def test_ingested_reviews_reach_the_gate_on_the_grown_split(
    raw_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """300 rated reviews (200 new ones from the Amazon set, 100 re-spelt earlier train and
    test reviews) into a project copy; the pipeline on small params keeps every earlier row
    in its split, and the gate's decision names the grown test split."""
    root = small_copy(tmp_path_factory.mktemp("ingest"), raw_data)
    sh(root, "dvc", "repro", "prepare")
    before = tmp_path_factory.mktemp("before")
    for name in ("train", "val", "test"):
        shutil.copy(root / "data" / "prepared" / f"{name}.parquet", before)
    old_test = pd.read_parquet(before / "test.parquet")

    amazon = ood_set(raw_data, "amazon")
    amazon = amazon.drop_duplicates("text").head(200)
    earlier = [
        f"  {text}READ MORE"  # spelt apart from the earlier row, cleaned to its text
        for name in ("train", "test")
        for text in pd.read_parquet(before / f"{name}.parquet")["text"].drop_duplicates().head(50)
    ]
    new = pd.DataFrame(
        {
            "text": [*amazon["text"], *earlier],
            "rating": [5 if y else 1 for y in amazon["label"]] + [4] * len(earlier),
        }
    )
    write_frame(new, root / "new-reviews.jsonl")
    sh(root, "python", "-m", "sentiment.ingest", "--input", "new-reviews.jsonl")
    sh(root, "dvc", "repro", "gate", timeout=1500)

    stats = json.loads((root / "data" / "prepared" / "stats.json").read_text())
    assert stats["appended_rows"] == 300
    check_growth(before, root / "data" / "prepared", [clean_text(t) for t in new["text"]])
    grown_test = pd.read_parquet(root / "data" / "prepared" / "test.parquet")
    assert len(grown_test) > len(old_test)
    decision = json.loads((root / "reports" / "gate" / "decision.json").read_text())
    grown_md5 = dvc_md5(root / "data" / "prepared" / "test.parquet")
    assert decision["data_md5"]["data/prepared/test.parquet"] == grown_md5
    assert grown_md5 != dvc_md5(before / "test.parquet")
    assert decision["rules"]["min_f1"]["candidate"] > 0  # scored on the grown split
