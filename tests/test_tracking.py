"""MLflow tracking: stage runs grouped per pipeline run, tagged with data and params hashes."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml

from sentiment.tracking import code_hash, dvc_md5, flatten, params_hash
from tests.conftest import sh


def runs(root: Path):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sentiment")
    return client.search_runs([experiment.experiment_id], max_results=500)


def test_params_hash_is_order_independent() -> None:
    assert params_hash({"a": 1, "b": [1, 2]}) == params_hash({"b": [1, 2], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


def test_dvc_md5_matches_dvc_files(raw_data: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    with open(root / "data" / "raw" / "flipkart" / "reviews.csv.dvc") as fh:
        assert yaml.safe_load(fh)["outs"][0]["md5"] == "fabbb59b6580035f9277c676c2c77104"
    assert dvc_md5(raw_data / "reviews.csv") == "fabbb59b6580035f9277c676c2c77104"


@pytest.mark.slow
def test_repro_runs_are_tagged_and_grouped(pipeline_copy: Path) -> None:
    lock = yaml.safe_load((pipeline_copy / "dvc.lock").read_text())
    all_runs = runs(pipeline_copy)
    stage_runs = {
        r.data.tags["stage"]: r
        for r in all_runs
        if r.data.tags.get("stage") and "dvc.exp_name" not in r.data.tags
    }
    assert {"prepare", "featurize"} <= set(stage_runs)
    parents = {r.data.tags["mlflow.parentRunId"] for r in stage_runs.values()}
    assert len(parents) == 1, "one dvc repro must group its stages under one parent run"
    parent = next(r for r in all_runs if r.info.run_id in parents)
    assert parent.data.tags["kind"] == "pipeline"
    # The pipeline run shows each stage's key figures beside the others.
    stats = json.loads((pipeline_copy / "data" / "prepared" / "stats.json").read_text())
    assert parent.data.metrics["prepare.rows.train"] == stats["rows"]["train"]
    assert (
        parent.data.metrics["featurize.n_features"]
        == stage_runs["featurize"].data.metrics["n_features"]
    )

    featurize = stage_runs["featurize"]
    tags = featurize.data.tags
    assert len(tags["git.commit"]) == 40 and tags["git.dirty"] in ("true", "false")
    for dep in lock["stages"]["featurize"]["deps"]:
        if not dep["path"].endswith((".py", ".lock")):
            assert tags[f"data.md5.{dep['path']}"] == dep["md5"]
    params = yaml.safe_load((pipeline_copy / "params.yaml").read_text())
    assert tags["params.hash"] == params_hash({"featurize": params["featurize"]})
    assert tags["code.hash"] == code_hash("featurize", pipeline_copy / "dvc.yaml", pipeline_copy)
    assert featurize.data.params["featurize.min_df"] == str(params["featurize"]["min_df"])
    digests = {d.dataset.name: d.dataset.digest for d in featurize.inputs.dataset_inputs}
    assert digests["data/prepared/train.parquet"] == tags["data.md5.data/prepared/train.parquet"]
    # What the MLflow UI shows: the Version (git commit) of every run, the experiment's note.
    for run in [parent, *stage_runs.values()]:
        assert run.data.tags["mlflow.source.git.commit"] == tags["git.commit"]
    client = mlflow.MlflowClient(f"sqlite:///{pipeline_copy / 'mlflow.db'}")
    experiment = client.get_experiment(parent.info.experiment_id)
    assert "DVC md5" in experiment.tags["mlflow.note.content"]
    # a training experiment: MLflow's UI opens on its runs, not on GenAI traces
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.slow
def test_temp_experiment_runs_land_in_the_project_store(pipeline_copy: Path) -> None:
    # The copy's `dvc repro prepare featurize` rebuilt byte-identical outputs: dvc.lock and
    # every tracked file are as committed, so the experiment starts from a clean tree.
    assert sh(pipeline_copy, "git", "status", "--porcelain").stdout == ""
    sh(
        pipeline_copy,
        "dvc",
        "exp",
        "run",
        "--temp",
        "-n",
        "min-df-2",
        "-S",
        "featurize.min_df=2",
        "featurize",
    )
    exp_runs = [r for r in runs(pipeline_copy) if r.data.tags.get("dvc.exp_name") == "min-df-2"]
    stages = {r.data.tags.get("stage") for r in exp_runs}
    assert "featurize" in stages
    featurize = next(r for r in exp_runs if r.data.tags.get("stage") == "featurize")
    assert featurize.data.params["featurize.min_df"] == "2"
    assert not (pipeline_copy / "mlruns").exists()


def test_dataset_logged_by_a_concurrent_run_first_is_linked(monkeypatch) -> None:
    from mlflow.exceptions import MlflowException

    from sentiment import tracking

    calls = []

    def log_input(dataset, context):
        calls.append(context)
        if len(calls) == 1:  # the other worker inserted the same dataset row first
            raise MlflowException("UNIQUE constraint failed: datasets.experiment_id")

    monkeypatch.setattr(tracking.mlflow, "log_input", log_input)
    tracking.log_dataset(object(), "tune")
    assert calls == ["tune", "tune"]
