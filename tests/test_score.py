"""Batch scoring (``python -m sentiment.scoring``): every input type, bad rows, atomic output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from sentiment.data.tables import TextColumns
from sentiment.scoring.__main__ import declared_text
from sentiment.scoring.batch import score_file
from tests.conftest import REPO
from tests.test_gate import make_model
from tests.test_service import export_model

TEXTS = ["great shuttle", None, "worst shuttle", "   ", "good shuttle", "\u200b\ufeff", "bad one"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "classical", 6)


def write_frame(df: pd.DataFrame, path: Path) -> Path:
    """``df`` as CSV, Parquet or JSON Lines, by ``path``'s suffix."""
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


def write_input(path: Path, texts: list) -> Path:
    return write_frame(pd.DataFrame({"id": range(len(texts)), "Review text": texts}), path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_every_row_gets_a_label_or_the_reason_it_has_none(model, tmp_path, suffix) -> None:
    source = write_input(tmp_path / f"reviews{suffix}", TEXTS * 3)
    counts = score_file(str(model), source, tmp_path / "out.parquet", "Review text", 4, False)
    out = pq.read_table(tmp_path / "out.parquet").to_pydict()
    assert out["row"] == list(range(21)) and counts["rows"] == 21
    assert out["label"][:7] == [
        "positive",
        None,
        "negative",
        None,
        "positive",
        None,
        "negative",
    ]
    assert [e is not None for e in out["error"]] == [
        t is None or not t.strip("\u200b\ufeff ") for t in TEXTS * 3
    ]
    assert out["error"][1] == "no text" and "nothing to score" in out["error"][3]
    assert counts["not_scored"] == 9 and [r for r, _ in counts["first_not_scored"]][:3] == [1, 3, 5]
    assert all(0 <= x <= 1 for x in out["score"] if x is not None)
    assert len(set(out["model_version"])) == 1 and out["model_version"][0].startswith("classical@")


def test_chunk_size_does_not_change_the_output(model, tmp_path) -> None:
    source = write_input(tmp_path / "reviews.csv", TEXTS * 5)
    score_file(str(model), source, tmp_path / "a.parquet", "Review text", 3, False)
    score_file(str(model), source, tmp_path / "b.parquet", "Review text", 1000, False)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    )
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == 12  # one per chunk


def test_bad_rows_fail_refuses_and_writes_nothing(model, tmp_path) -> None:
    source = write_input(tmp_path / "reviews.csv", TEXTS)
    target = tmp_path / "out.parquet"
    with pytest.raises(
        ValueError, match=r"2 rows cannot be scored: rows 1 \(no text\), 3 \(nothing"
    ):
        score_file(str(model), source, target, "Review text", 4, True)
    assert not target.exists() and list(tmp_path.iterdir()) == [source]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--text-column", "text"],
            "no column 'text' (it has ['id', 'Review text']); pick one with --text-column",
        ),
        (["--output", "out.csv"], "out.csv: the output is Parquet; name it *.parquet"),
        (["--input", "missing.csv"], "missing.csv: no such file"),
        (["--model", "nosuch:model"], "nosuch:model"),
    ],
)
@pytest.mark.slow
def test_the_command_fails_in_one_line(model, tmp_path, args, message) -> None:
    write_input(tmp_path / "reviews.csv", TEXTS)
    base = {
        "--model": str(model),
        "--input": "reviews.csv",
        "--output": "out.parquet",
        "--text-column": "Review text",
    }
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    done = subprocess.run(
        [sys.executable, "-m", "sentiment.scoring", *[x for kv in base.items() for x in kv]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "BENTOML_HOME": str(tmp_path / "bentoml")},
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.slow
def test_the_production_tag_scores_with_its_registry_version(model, tmp_path) -> None:
    home = tmp_path / "bentoml"
    export_model(home, model)
    source = write_input(tmp_path / "reviews.csv", TEXTS)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sentiment.scoring",  # no --model: the declared dataset's production
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out.parquet"),
            "--text-column",
            "Review text",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "BENTOML_HOME": str(home)},
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "7 rows" in done.stdout and "4 scored" in done.stdout
    assert "3 rows cannot be scored: rows 1 (no text), 3 (" in done.stderr
    assert "score: chunk 1: 7 rows" in done.stderr  # not a terminal: one line per chunk
    assert set(pd.read_parquet(tmp_path / "out.parquet")["model_version"]) == {"7"}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs and no dashboard, for this module's tests."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_scoring_equals_the_single_process_output_row_for_row(
    model, tmp_path, local_ray
) -> None:
    source = write_input(tmp_path / "reviews.csv", TEXTS * 40)
    single = score_file(str(model), source, tmp_path / "one.parquet", "Review text", 25, False)
    on_ray = score_file(str(model), source, tmp_path / "parts", "Review text", 25, False, "ray")
    parts = sorted((tmp_path / "parts").glob("part-*.parquet"))
    assert len(parts) == 12  # one per chunk, in input order
    expected = pd.read_parquet(tmp_path / "one.parquet")
    got = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected)
    assert {k: on_ray[k] for k in ("rows", "not_scored", "first_not_scored")} == {
        k: single[k] for k in ("rows", "not_scored", "first_not_scored")
    }


@pytest.mark.slow
def test_ray_scoring_of_a_folder_and_its_failures_in_one_line(model, tmp_path, local_ray) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_input(folder / "a.parquet", TEXTS)
    write_input(folder / "b.csv", TEXTS)
    counts = score_file(str(model), folder, tmp_path / "parts", "Review text", 5, False, "ray")
    rows = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "parts").glob("*.parquet"))])[
        "row"
    ]
    assert counts["rows"] == 14 and rows.tolist() == list(range(14))  # across files, in order
    with pytest.raises(ValueError, match=r"rows cannot be scored: rows 1 \(no text\)"):
        score_file(str(model), folder, tmp_path / "refused", "Review text", 5, True, "ray")
    assert not (tmp_path / "refused").exists()
    deadline = time.monotonic() + 30  # a failed run gives its actors' CPUs back
    while local_ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert local_ray.available_resources().get("CPU", 0) == 2
    damaged = tmp_path / "damaged"
    shutil.copytree(model, damaged)
    (damaged / "model.skops").write_bytes(b"not a skops file")
    for bad_model in (damaged, tmp_path / "no-model"):
        out = tmp_path / f"out-{bad_model.name}"
        proc = subprocess.run(
            [sys.executable, "-m", "sentiment.scoring", "--engine", "ray",
             "--model", str(bad_model), "--input", str(folder), "--output", str(out),
             "--text-column", "Review text"],
            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=300,
        )  # fmt: skip
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not out.exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_several_text_columns_score_as_their_joined_text(model, tmp_path, suffix) -> None:
    titles = ["great", None, "worst", "", None, "good"]
    bodies = ["shuttle", "bad one", None, "shuttle", None, "shuttle"]
    joined = ["great. shuttle", "bad one", "worst", "shuttle", None, "good. shuttle"]
    frame = pd.DataFrame({"Title": titles, "Body": bodies, "age": range(6)})
    source = write_frame(frame, tmp_path / f"two{suffix}")
    text = TextColumns(("Title", "Body"), ". ")
    counts = score_file(str(model), source, tmp_path / "joined.parquet", text, 4, False)
    expected = score_file(str(model), write_input(tmp_path / "one.csv", joined),
                          tmp_path / "one.parquet", "Review text", 4, False)  # fmt: skip
    assert counts == {**expected, "seconds": counts["seconds"]}
    assert counts["first_not_scored"] == [(4, "no text")]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "joined.parquet"), pd.read_parquet(tmp_path / "one.parquet")
    )
    missing = TextColumns(("Title", "Text"))
    with pytest.raises(ValueError, match=r"no column 'Text' \(it has \['Title', 'Body', 'age'"):
        score_file(str(model), source, tmp_path / "no.parquet", missing, 4, False)


def test_the_default_text_is_the_declared_datasets(tmp_path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert declared_text(REPO / "params.yaml") == TextColumns(("Review text",), " ")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "dataset": "clothing"}))
    assert declared_text(tmp_path / "params.yaml") == TextColumns(("Title", "Review Text"), ". ")
    assert declared_text(tmp_path / "none.yaml") == TextColumns(("text",), " ")


@pytest.mark.slow
def test_the_command_scores_the_declared_text_without_a_column(model, tmp_path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    write_input(tmp_path / "reviews.csv", TEXTS)
    done = subprocess.run(
        [sys.executable, "-m", "sentiment.scoring", "--model", str(model),
         "--input", "reviews.csv", "--output", "out.parquet"],
        cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert pq.read_table(tmp_path / "out.parquet")["label"].to_pylist()[:3] == [
        "positive", None, "negative"
    ]  # fmt: skip


def test_a_glob_scores_its_matches_in_path_order(model, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_input(folder / "b.csv", TEXTS[:2])
    write_input(folder / "a.csv", TEXTS[2:])
    write_input(folder / "c.parquet", TEXTS)  # not matched by the glob
    out = tmp_path / "out.parquet"
    counts = score_file(str(model), f"{folder}/*.csv", out, "Review text", 3, False)
    assert counts["rows"] == len(TEXTS)
    in_path_order = TEXTS[2:] + TEXTS[:2]  # a.csv, then b.csv
    expected = score_file(str(model), write_input(tmp_path / "all.csv", in_path_order),
                          tmp_path / "all.parquet", "Review text", 3, False)  # fmt: skip
    assert counts == {**expected, "seconds": counts["seconds"]}
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(tmp_path / "all.parquet"))
    with pytest.raises(FileNotFoundError, match=r"\*\.json: no such file"):
        score_file(str(model), f"{folder}/*.json", tmp_path / "no.parquet", "Review text", 3, False)


@pytest.mark.slow
def test_ray_scores_from_the_bucket_into_the_bucket(
    model, tmp_path, local_ray, s3_server, monkeypatch
) -> None:
    for name, value in s3_server.env({"AWS_ENDPOINT_URL": s3_server.endpoint}).items():
        monkeypatch.setenv(name, value)
    from pyarrow import fs

    bucket = s3_server.bucket
    s3 = fs.S3FileSystem(endpoint_override=s3_server.endpoint, scheme="http", region="us-east-1")
    local = tmp_path / "in"
    local.mkdir()
    write_input(local / "a.parquet", TEXTS * 3)
    write_input(local / "b.csv", TEXTS * 2)
    fs.copy_files(str(local), f"{bucket}/reviews", destination_filesystem=s3)
    single = score_file(str(model), local, tmp_path / "one.parquet", "Review text", 4, False)
    source = f"s3://{bucket}/reviews/"
    on_ray = score_file(str(model), source, f"s3://{bucket}/scored", "Review text", 4, False, "ray")
    assert on_ray["rows"] == single["rows"] == 35 and on_ray["not_scored"] == single["not_scored"]
    names = sorted(f.base_name for f in s3.get_file_info(fs.FileSelector(f"{bucket}/scored")))
    assert names == ["_SUCCESS"] + [f"part-{i:06d}.parquet" for i in range(10)]  # 6 + 4 chunks
    got = pq.read_table(f"{bucket}/scored", filesystem=s3).to_pandas()
    pd.testing.assert_frame_equal(got, pd.read_parquet(tmp_path / "one.parquet"))
    one = f"s3://{bucket}/one.parquet"  # one process, a glob on the bucket, one object
    assert score_file(str(model), f"{source}*.csv", one, "Review text", 4, False)["rows"] == 14
    assert len(pq.read_table(f"{bucket}/one.parquet", filesystem=s3)) == 14
    with pytest.raises(FileExistsError, match="scored: the output prefix already holds objects"):
        score_file(str(model), source, f"s3://{bucket}/scored", "Review text", 4, False, "ray")
    with pytest.raises(ValueError, match="rows cannot be scored"):
        score_file(str(model), source, f"s3://{bucket}/refused", "Review text", 1, True, "ray")
    # row 0's part was written before row 1 failed: removed again, and no marker
    assert not s3.get_file_info(fs.FileSelector(f"{bucket}/refused", allow_not_found=True))


class FakeActor:
    """An actor of ``FakeRay``: a chunk becomes its row numbers; lost from call ``dies_on``."""

    def __init__(self, ray: FakeRay, name: str, dies_on: int | None = None) -> None:
        self.ray, self.name, self.dies_on, self.calls = ray, name, dies_on, 0
        self.score = self

    def remote(self, first_row: int, values: list):
        self.calls += 1
        lost = self.dies_on is not None and self.calls >= self.dies_on
        ref = object()
        self.ray.results[ref] = (lost, self.name, first_row, values)
        return ref


class FakeRay:
    """What score_in_order asks of Ray: wait for one of the references, get its result."""

    def __init__(self) -> None:
        self.results: dict = {}

    def wait(self, refs: list, num_returns: int):
        return [refs[-1]], refs[:-1]  # the newest first: results come back out of order

    def get(self, ref):
        import pyarrow as pa
        from ray.exceptions import RayActorError

        from sentiment.scoring.on_ray import NODE_KEY

        lost, name, first_row, values = self.results.pop(ref)
        if lost:
            raise RayActorError()
        rows = list(range(first_row, first_row + len(values)))
        return pa.table({"row": rows}).replace_schema_metadata({NODE_KEY: name})


def test_a_lost_actors_chunk_runs_again_on_a_live_one_and_parts_stay_in_order(tmp_path) -> None:
    pytest.importorskip("ray")
    from sentiment.scoring.on_ray import score_in_order
    from sentiment.scoring.storage import locate

    ray = FakeRay()
    actors = [FakeActor(ray, "b"), FakeActor(ray, "c", dies_on=3)]
    chunks = [[None] * 3 for _ in range(8)]
    seen = []
    tally = score_in_order(ray, actors, chunks, locate(tmp_path / "parts"), seen.append)
    assert tally.lost == 1 and tally.parts == 8
    assert [t.column("row").to_pylist()[0] for t in seen] == list(range(0, 24, 3))
    names = sorted(p.name for p in (tmp_path / "parts").iterdir())
    assert names == ["_SUCCESS"] + [f"part-{i:06d}.parquet" for i in range(8)]
    got = pd.concat(pd.read_parquet(tmp_path / "parts" / n) for n in names[1:])
    assert got["row"].tolist() == list(range(24))


def test_with_every_actor_lost_the_job_fails_in_one_line_and_writes_nothing(tmp_path) -> None:
    pytest.importorskip("ray")
    from sentiment.scoring.on_ray import score_in_order
    from sentiment.scoring.storage import locate

    ray = FakeRay()
    actors = [FakeActor(ray, "b", dies_on=2), FakeActor(ray, "c", dies_on=2)]
    chunks = [[None] * 3 for _ in range(8)]
    with pytest.raises(RuntimeError, match="every scoring actor was lost, the last: "):
        score_in_order(ray, actors, chunks, locate(tmp_path / "parts"), lambda table: None)
    assert not (tmp_path / "parts").exists()
    assert not list(tmp_path.iterdir())  # no temporary folder left either
