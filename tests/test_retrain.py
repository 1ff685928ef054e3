"""The retrain loop: a drop's new rows (by content key, against the ledger) to a pushed branch
with the retrained pipeline and a pull-request body; a failed step changes nothing. End to
end against moto's S3 server (the drops and the DVC remote) and a bare git ``origin``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3
import pandas as pd
import pytest

from sentiment.data.dataset import load_dataset
from sentiment.data.splits import DataValidationError
from sentiment.retrain import ledger
from sentiment.retrain.drop import drop_name, read_drop
from tests.conftest import (
    RAW_DATA,
    REPO,
    S3_CREDENTIALS,
    S3Server,
    ood_set,
    project_env,
    sh,
)
from tests.test_ingest import small_copy
from tests.test_score import write_frame

TEXT, RATING = "Review text", "Ratings"  # the default dataset's columns

COLUMNS = [TEXT, RATING, "Review Title", "Month"]
DATASET = load_dataset(REPO / "params.yaml")


def rated(texts: list[str], rating: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "rating": rating})


def test_new_rows_leave_out_what_the_ledger_holds_and_repeats_in_the_drop() -> None:
    first = pd.DataFrame({TEXT: ["a", "b", "c"], RATING: [5, 1, 5]})
    book = ledger.grown_ledger(ledger.read_ledger(Path("/nonexistent")), first, "one")
    second = pd.DataFrame({TEXT: ["c", "d", "b", "d", "b"], RATING: [5, 1, 5, 1, 1]})
    fresh, counts = ledger.new_rows(second, book)
    assert fresh[TEXT].tolist() == ["d", "b"]  # ("b", 5) is new content: its rating differs
    assert fresh[RATING].tolist() == [1, 5]
    assert counts == {"ingested_before": 2, "repeated_in_drop": 1}
    assert ledger.proposal_id(fresh) == ledger.proposal_id(fresh.iloc[::-1])


def test_the_ledger_reads_back_as_written(tmp_path: Path) -> None:
    rows = pd.DataFrame({TEXT: ["x", "y"], RATING: [5, 1], "Month": [None, "Jan 2026"]})
    book = ledger.grown_ledger(ledger.read_ledger(tmp_path / "none.csv"), rows, "d1")
    book.to_csv(tmp_path / "ingested.csv", index=False)
    again = ledger.read_ledger(tmp_path / "ingested.csv")
    assert again.to_dict("list") == book.to_dict("list")
    assert ledger.new_rows(rows, again)[0].empty


def test_a_ledger_with_other_columns_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ingested.csv").write_text("hash,when\n1,2\n")
    with pytest.raises(ValueError, match=r"ingested.csv: columns \['hash', 'when'\]"):
        ledger.read_ledger(tmp_path / "ingested.csv")


@pytest.mark.parametrize(
    ("uri", "name"),
    [("s3://b/new/2026-12-05/", "2026-12-05"), ("drops/week 49", "week-49"), ("x/.a", "a")],
)
def test_the_drop_is_named_by_its_last_part(uri: str, name: str) -> None:
    assert drop_name(uri) == name


def test_a_drop_is_read_whole_and_refused_whole(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    write_frame(rated(["fine phone", "lovely"]), drop / "a.csv")
    write_frame(rated(["awful", "broke"], 1), drop / "b.jsonl")
    (drop / "notes.txt").write_text("not a review file")
    read = read_drop(str(drop), COLUMNS, DATASET)
    assert read.files == [f"{drop}/a.csv", f"{drop}/b.jsonl"]
    assert read.rows[TEXT].tolist() == ["fine phone", "lovely", "awful", "broke"]
    assert list(read.rows.columns) == COLUMNS

    write_frame(pd.DataFrame({"text": ["ok", "bad"], "rating": [5, 9]}), drop / "c.csv")
    with pytest.raises(DataValidationError, match=r"c.csv: 1 of 2 rows are not usable"):
        read_drop(str(drop), COLUMNS, DATASET)
    skipping = read_drop(str(drop), COLUMNS, DATASET, skip_invalid=True)
    assert len(skipping.rows) == 5 and skipping.skipped == {"bad_rating": 1}


def test_an_empty_or_missing_drop_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"no \.csv, \.parquet, \.jsonl file in it"):
        read_drop(str(tmp_path), COLUMNS, DATASET)
    with pytest.raises(DataValidationError, match="not a folder or prefix of files"):
        read_drop(str(tmp_path / "missing"), COLUMNS, DATASET)


# End to end: a team's repository whose DVC remote is a bucket, cloned as CI clones it.


def client(s3: S3Server):
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def bucket_objects(s3: S3Server) -> dict[str, str]:
    found = {}
    for page in client(s3).get_paginator("list_objects_v2").paginate(Bucket=s3.bucket):
        found |= {item["Key"]: item["ETag"] for item in page.get("Contents", [])}
    return found


def upload(s3: S3Server, frame: pd.DataFrame, key: str, tmp_path: Path) -> None:
    local = write_frame(frame, tmp_path / Path(key).name)
    client(s3).upload_file(str(local), s3.bucket, key)


def refs(git_dir: Path) -> dict[str, str]:
    listed = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname) %(objectname)"],
        cwd=git_dir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return dict(line.split(" ") for line in listed if line)


def dvc(root: Path, s3: S3Server, *args: str) -> str:
    """A DVC command in ``root`` with the bucket's credentials; its output, or the test fails."""
    proc = subprocess.run(
        ["dvc", *args], cwd=root, env=s3.env(project_env(root)), capture_output=True, text=True
    )
    if proc.returncode:
        pytest.fail(f"dvc {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def retrain(work: Path, s3: S3Server, uri: str) -> subprocess.CompletedProcess:
    env = s3.env(project_env(work)) | {"AWS_ENDPOINT_URL": s3.endpoint}
    return subprocess.run(
        ["python", "-m", "sentiment.retrain", "--drop", uri, "--body", str(work.parent / "pr.md")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


@pytest.mark.slow
@pytest.mark.system
def test_two_drops_become_two_branches_and_failures_change_nothing(
    raw_data: Path, s3_server: S3Server, tmp_path: Path
) -> None:
    s3 = s3_server
    root = small_copy(tmp_path / "team", raw_data)
    remote = f"s3://{s3.bucket}/retrain-remote"
    sh(root, "dvc", "remote", "add", "--default", "--force", "bucket", remote)
    sh(root, "dvc", "remote", "modify", "bucket", "endpointurl", s3.endpoint)
    sh(root, "dvc", "commit", "--force", "--quiet", *(f"{p}.dvc" for p in RAW_DATA))  # to cache
    dvc(root, s3, "push", "--quiet", *(f"{p}.dvc" for p in RAW_DATA))
    sh(root, "git", "commit", "-qam", "small params, the bucket as the remote")
    origin = tmp_path / "origin.git"
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    sh(root, "git", "push", "-q", str(origin), "main")
    work = tmp_path / "ci" / "repo"
    work.parent.mkdir()
    sh(work.parent, "git", "clone", "-q", str(origin), str(work))
    dvc(work, s3, "pull", *(f"{p}.dvc" for p in RAW_DATA))

    amazon = ood_set(raw_data, "amazon").drop_duplicates("text")
    yelp = ood_set(raw_data, "yelp").drop_duplicates("text")
    as_rated = lambda df: pd.DataFrame(  # noqa: E731
        {"text": df["text"].tolist(), "rating": [5 if y else 1 for y in df["label"]]}
    )
    first, new = as_rated(amazon.head(120)), as_rated(yelp.head(80))
    upload(s3, first.head(60), "drops/week-1/a.csv", tmp_path)
    upload(s3, first.tail(60), "drops/week-1/b.jsonl", tmp_path)

    # The first drop: a branch on origin with the grown data, the outputs in the bucket.
    done = retrain(work, s3, f"s3://{s3.bucket}/drops/week-1")
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("retrain: 120 new rows from s3://sentiment/drops/week-1 (0 ingested")
    branch = sh(work, "git", "branch", "--show-current").stdout.strip()
    assert branch.startswith("retrain/week-1-")
    assert f"refs/heads/{branch}" in refs(origin)
    body = (work.parent / "pr.md").read_text()
    assert body.startswith("## Gate\n\n**Would ")
    assert "| `s3://sentiment/drops/week-1` | 2 | 120 | 0 | 0 | 0 | 120 |" in body
    assert "## Model report: `main` → this branch" in body
    changed = sh(work, "git", "diff", "--name-only", "main", branch).stdout.split()
    for path in ("data/raw/flipkart/reviews.csv.dvc", "data/raw/ingested.csv.dvc", "dvc.lock"):
        assert path in changed
    assert "reports/gate/decision.json" in changed
    book = ledger.read_ledger(work / "data" / "raw" / "ingested.csv")
    assert len(book) == 120 and set(book["drop"]) == {"week-1"}

    check = tmp_path / "check" / "repo"
    sh(tmp_path, "git", "clone", "-q", "--branch", branch, str(origin), str(check))
    dvc(check, s3, "pull", "--quiet")
    status = dvc(check, s3, "status", "--json")
    assert json.loads(status) == {}, status  # every output of the branch came from the bucket

    # A person merges it; the second drop overlaps the first by 60 rows and repeats one.
    sh(work, "git", "push", "-q", "origin", f"{branch}:main")
    sh(work, "git", "switch", "-q", "main")
    sh(work, "git", "merge", "-q", "--ff-only", f"origin/{branch}")
    second = pd.concat([first.tail(60), new, new.head(1)], ignore_index=True)
    upload(s3, second, "drops/week-2/reviews.parquet", tmp_path)
    week2 = f"s3://{s3.bucket}/drops/week-2"

    # origin refuses the push: the bucket loses what was pushed, the checkout is put back.
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'refused: a test of the undo' >&2\nexit 1\n")
    hook.chmod(0o755)
    raw = work / "data" / "raw" / "flipkart" / "reviews.csv"
    before = (refs(origin), bucket_objects(s3), raw.read_bytes())
    failed = retrain(work, s3, week2)
    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    print(message)  # docs/retrain.md shows it
    assert message.startswith("retrain: step 'git push' failed: `git push --quiet` exited 1")
    assert "objects the push added deleted, back on main; origin has no retrain/week-2-" in message
    after = (refs(origin), bucket_objects(s3), raw.read_bytes())
    assert after == before
    assert sh(work, "git", "status", "--porcelain", "--untracked-files=no").stdout == ""
    assert sh(work, "git", "branch", "--list", "retrain/week-2-*").stdout == ""
    hook.unlink()

    done = retrain(work, s3, week2)
    assert done.returncode == 0, done.stderr
    assert "retrain: 80 new rows from s3://sentiment/drops/week-2 (60 ingested before" in (
        done.stdout
    )
    body = (work.parent / "pr.md").read_text()
    assert "| `s3://sentiment/drops/week-2` | 1 | 141 | 0 | 60 | 1 | 80 |" in body
    book = ledger.read_ledger(work / "data" / "raw" / "ingested.csv")
    assert len(book) == 200 and (book["drop"] == "week-2").sum() == 80
    raw = pd.read_csv(work / "data" / "raw" / "flipkart" / "reviews.csv")
    assert raw[TEXT].tail(80).tolist() == new["text"].tolist()

    # Back on main (the second branch not merged): the same rows name the same branch, a drop
    # with a bad file is refused whole, the first drop adds nothing: origin and the bucket stay.
    second_branch = sh(work, "git", "branch", "--show-current").stdout.strip()
    sh(work, "git", "switch", "-q", "main")
    sh(work, "dvc", "checkout", "-q")
    proposed = retrain(work, s3, week2)
    assert proposed.returncode == 0, proposed.stderr
    assert proposed.stdout.strip() == (
        f"retrain: {second_branch} exists: these 80 new rows were proposed before"
    )
    upload(s3, as_rated(yelp.iloc[100:110]), "drops/week-3/good.csv", tmp_path)
    upload(
        s3,
        pd.DataFrame({"text": ["ok", "fine"], "rating": [5, 9]}),
        "drops/week-3/bad.csv",
        tmp_path,
    )
    before = (refs(origin), bucket_objects(s3))
    refused = retrain(work, s3, f"s3://{s3.bucket}/drops/week-3")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "retrain: step 'read drop' failed: s3://sentiment/drops/week-3/bad.csv: 1 of 2 rows "
        "are not usable (row 2: bad_rating); nothing was appended (--skip-invalid appends the "
        "others); nothing was changed"
    )
    again = retrain(work, s3, f"s3://{s3.bucket}/drops/week-1")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        "retrain: nothing new in s3://sentiment/drops/week-1 (120 rows, 120 ingested before); "
        "no branch made"
    )
    assert (refs(origin), bucket_objects(s3)) == before
