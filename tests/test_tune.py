"""tune: a tiny real Optuna search, MLflow child runs, shared studies, DVC invalidation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from sentiment import tracking
from sentiment.models import search
from sentiment.models.predictor import load_predictor, predict
from stages import tune
from stages.featurize import featurize
from tests.conftest import REPO, sh, split_files

GOOD = ["good shuttle", "great quality", "very good", "nice product", "excellent, loved it"]
BAD = ["bad shuttle", "worst quality", "very bad", "poor product", "terrible, hated it"]
TUNE = {
    "families": ["logreg", "linear_svc", "complement_nb", "sgd"],
    "target": "label",
    "cv_folds": 3,
    "n_trials": 3,
    "timeout": 60,
    "n_jobs": 1,
    "seed": 7,
    "storage": None,
}


@pytest.fixture
def tiny_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory laid out like the project, with tiny featurized splits."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tune"] = TUNE
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    prepared = tmp_path / "data" / "prepared"
    prepared.mkdir(parents=True)
    for split, repeat in (("train", 6), ("val", 2), ("test", 1)):
        texts = [f"{t} {i}" for i in range(repeat) for t in GOOD + BAD]
        labels = [lab for _ in range(repeat) for lab in [1] * 5 + [0] * 5]
        ratings = [r for _ in range(repeat) for r in [5, 4, 5, 3, 4, 1, 2, 1, 2, 1]]
        pd.DataFrame({"text": texts, "label": labels, "rating": ratings}).to_parquet(
            prepared / f"{split}.parquet"
        )
    (prepared / "stats.json").write_text(json.dumps({"classes": ["negative", "positive"]}))
    featurize(split_files(prepared), tmp_path / "data" / "features", params["featurize"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return tmp_path


@pytest.mark.slow
def test_tune_logs_trials_and_writes_a_raw_text_model(tiny_project: Path) -> None:
    best = tune.run_stage(TUNE)
    assert best["trials"]["complete"] + best["trials"]["pruned"] == 3
    saved = json.loads((tiny_project / "reports" / "tune" / "best.json").read_text())
    assert saved["best_params"] == best["best_params"]
    assert 0 <= saved["cv_macro_f1"] <= 1
    assert {p.name for p in (tiny_project / "reports" / "tune" / "plots").iterdir()} == {
        "optimization_history.png",
        "param_importances.png",
    }

    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])
    tune_run = next(r for r in runs if r.data.tags.get("stage") == "tune")
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    assert len(trials) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {tune_run.info.run_id}
    assert all(
        "cv_macro_f1_mean" in r.data.metrics and "classifier" in r.data.params for r in trials
    )
    commit = tune_run.data.tags.get("mlflow.source.git.commit")  # absent outside git
    assert all(r.data.tags.get("mlflow.source.git.commit") == commit for r in trials)
    assert tune_run.data.tags["optuna.storage"].startswith("sqlite:///")

    model = load_predictor(tiny_project / "models" / "classical")
    assert model.meta["flavor"] == "classical"
    assert predict(model, ["Very good shuttle!READ MORE", "worst, very bad"]).tolist() == [1, 0]
    assert not any(p.suffix == ".pkl" for p in (tiny_project / "models").rglob("*"))


@pytest.mark.slow
def test_same_seed_same_best_params(tiny_project: Path) -> None:
    params = TUNE | {"n_trials": 6}
    first = search.search(params, f"sqlite:///{tiny_project / 'a.db'}", "s", None, tune.INPUTS)
    second = search.search(params, f"sqlite:///{tiny_project / 'b.db'}", "s", None, tune.INPUTS)
    assert first.best_params == second.best_params
    assert first.best_value == second.best_value


@pytest.mark.slow
def test_rerun_resumes_the_study(tiny_project: Path) -> None:
    storage = f"sqlite:///{tiny_project / 'r.db'}"
    search.search(TUNE, storage, "resume", None, tune.INPUTS)
    study = search.search(TUNE | {"n_trials": 5}, storage, "resume", None, tune.INPUTS)
    assert len(study.trials) == 5


def test_code_params_or_data_change_start_a_new_study(tmp_path: Path) -> None:
    name = search.study_name(TUNE, "md5-a", "code-a")
    assert name == search.study_name(TUNE | {"n_trials": 50, "timeout": 1}, "md5-a", "code-a")
    assert name != search.study_name(TUNE, "md5-a", "code-b")
    assert name != search.study_name(TUNE, "md5-b", "code-a")
    assert name != search.study_name(TUNE | {"cv_folds": 4}, "md5-a", "code-a")

    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "tune.py").write_text("def objective(): return 1\n")
    dvc_file = tmp_path / "dvc.yaml"
    dvc_file.write_text(yaml.safe_dump({"stages": {"tune": {"deps": ["stages/tune.py", "d"]}}}))
    before = tracking.code_hash("tune", dvc_file, tmp_path)
    (tmp_path / "stages" / "tune.py").write_text("def objective(): return 2\n")
    assert tracking.code_hash("tune", dvc_file, tmp_path) != before


@pytest.mark.slow
def test_a_timeout_that_cuts_the_search_short_is_recorded(
    tiny_project: Path, capsys: pytest.CaptureFixture
) -> None:
    best = tune.run_stage(TUNE | {"n_trials": 40, "timeout": 0.01})
    assert best["timed_out"] and best["trials"]["target"] == 40
    assert best["trials"]["complete"] + best["trials"]["pruned"] < 40
    assert json.loads((tiny_project / "reports" / "tune" / "best.json").read_text())["timed_out"]


def finished(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in trials if t.state in done]


def test_claim_gives_each_place_once() -> None:
    """The decision each trial takes before fitting: run, wait for earlier ones, or stop."""
    from optuna.trial import TrialState, create_trial

    def trials(*states: TrialState) -> list[optuna.trial.FrozenTrial]:
        made = []
        for number, state in enumerate(states):
            trial = create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None)
            trial.number = number
            made.append(trial)
        return made

    done, running, failed = TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL
    assert search.claim(trials(done, done, running), 2, 3) == "run"
    assert search.claim(trials(done, done, running, running), 3, 3) == "wait"
    assert search.claim(trials(done, done, done, running), 3, 3) == "surplus"
    assert search.claim(trials(done, failed, done, running), 3, 3) == "run"  # a failed one's place
    assert search.claim(trials(TrialState.WAITING, done, done, running), 3, 3) == "wait"


def test_too_few_rows_of_a_class_for_the_folds_is_one_line() -> None:
    search.check_folds(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2]), 3, Path("train.parquet"))
    search.check_folds(np.array([0, 0, 0, 2, 2, 2]), 3, Path("train.parquet"))  # no 1s: a star
    with pytest.raises(search.ParamsError) as refused:
        search.check_folds(np.array([0, 0, 0, 0, 0, 1, 1, 2]), 5, Path("train.parquet"))
    assert str(refused.value) == (
        "tune.cv_folds: 5 folds need 5 training rows of each class; in train.parquet, "
        "class 1 has 2, class 2 has 1"
    )


def test_a_heartbeat_the_database_refuses_is_skipped(tmp_path: Path) -> None:
    """A beat whose commit fails (another session holds the database; in CI, PostgreSQL
    shutting down) is skipped, not raised: Optuna's heartbeat thread would die of it, and
    the trial, still running, would go stale. The next beat is written."""
    import sqlite3

    db = tmp_path / "beats.db"
    storage = search.BeatingStorage(
        f"sqlite:///{db}", engine_kwargs={"connect_args": {"timeout": 0.1}}, heartbeat_interval=1
    )
    trial = optuna.create_study(storage=storage).ask()
    holder = sqlite3.connect(db, timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    storage.record_heartbeat(trial._trial_id)  # refused at commit: skipped
    holder.execute("ROLLBACK")
    storage.record_heartbeat(trial._trial_id)
    assert storage._get_stale_trial_ids(trial.study._study_id) == []


@pytest.mark.slow
def test_a_waiting_trial_fails_a_stale_one_and_takes_its_place(tmp_path: Path) -> None:
    """A trial waiting for an earlier one whose worker died (its heartbeat stopped) fails it
    as stale, queues it again, and runs: the wait does not outlast the grace period."""
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'stale.db'}",
        heartbeat_interval=1,
        grace_period=1,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
    )
    study = optuna.create_study(storage=storage)
    orphan = study.ask()  # its worker beat once, then vanished
    storage.record_heartbeat(orphan._trial_id)
    waiting = study.ask()
    time.sleep(2.5)  # SQLite's clock has whole seconds
    started = time.monotonic()
    search.wait_for_place(waiting, target=1, poll=0.1)
    assert time.monotonic() - started < 5
    states = {t.number: t.state for t in study.trials}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert optuna.trial.TrialState.WAITING in states.values()  # queued again


@pytest.mark.slow
def test_two_workers_share_one_study(tiny_project: Path) -> None:
    """Workers join the study by name and stop at its trial total, alone or together.

    Which worker runs which trial under concurrency is a race (a tiny trial takes ms, a
    worker's start seconds), so the two-workers check runs them one after the other.
    """
    # The stores and the study exist before workers join (the first tune run makes them).
    tracking.configure()
    name = search.study_name(TUNE, tracking.dvc_md5("data/features"), tracking.code_hash("tune"))
    storage = f"sqlite:///{tiny_project / 'optuna.db'}"
    search.search(TUNE, storage, name, None, tune.INPUTS, n_trials=0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start(total: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "stages.tune", "--worker", "--n-trials", str(total)]
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def finish(*workers: subprocess.Popen) -> list[optuna.trial.FrozenTrial]:
        for worker in workers:
            _, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err
        return optuna.load_study(study_name=name, storage=storage).trials

    assert len(finish(start(4))) == 4
    trials = finish(start(8))  # the second worker adds only what the total still lacks
    assert len(trials) == 8 and len({t.user_attrs["worker"] for t in trials}) == 2
    trials = finish(start(16), start(16))
    # Together they stop at exactly 16 finished trials (a trial started past the total is
    # failed as surplus before it fits anything).
    assert len(finished(trials)) == 16
    assert len({t.number for t in trials}) == len(trials)


@pytest.mark.slow
def test_tune_params_invalidate_tune_but_not_prepare(pipeline_copy: Path) -> None:
    params_file = pipeline_copy / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["tune"]["n_trials"] += 1
    params_file.write_text(yaml.safe_dump(params))
    try:
        status = json.loads(sh(pipeline_copy, "dvc", "status", "--json").stdout)
    finally:
        params_file.write_text(original)
    assert "tune" in status
    assert "prepare" not in status and "featurize" not in status


@pytest.mark.slow
def test_plots_are_byte_identical_across_processes(tmp_path: Path) -> None:
    """reports/tune/plots is a cached DVC output: importances that tie (two unused params at 0) must
    not be ordered by the process's string hashing, or its md5 changes between runs."""
    code = """
import sys, optuna
from pathlib import Path
from sentiment.models.search import save_plots
optuna.logging.set_verbosity(optuna.logging.ERROR)
def objective(t):
    family = t.suggest_categorical("classifier", ["logreg", "svc", "sgd"])
    if family == "sgd":
        return 0.6 + 0.3 * (t.suggest_float("sgd_alpha", 1e-6, 1e-1, log=True) > 1e-3)
    return 0.7 + 1e-4 * t.suggest_float(f"{family}_C", 1e-3, 10, log=True)
study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
study.optimize(objective, 60)
save_plots(study, Path(sys.argv[1]))
"""
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / seed)], env=env, check=True)
    for name in ("optimization_history.png", "param_importances.png"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes(), name


@pytest.mark.slow
def test_a_rating_target_learns_stars_and_scores_labels(tiny_project: Path) -> None:
    best = tune.run_stage(TUNE | {"target": "rating"})
    meta = json.loads((tiny_project / "models" / "classical" / "meta.json").read_text())
    assert meta["target"] == "rating" and meta["head_groups"] == [[0, 1], [2, 3, 4]]
    predictor = load_predictor(tiny_project / "models" / "classical")
    assert predictor.pipeline.named_steps["classifier"].classes_.tolist() == [0, 1, 2, 3, 4]
    proba = predictor.predict_proba(GOOD + BAD)
    assert proba.shape == (10, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert 0.0 <= best["val_macro_f1"] <= 1.0


def test_fit_targets_maps_each_star_to_its_label(tiny_project: Path) -> None:
    y = np.load(tiny_project / "data" / "features" / "train_labels.npy")
    target, label_of = search.fit_targets(TUNE | {"target": "rating"}, y, tune.INPUTS)
    assert sorted(set(target.tolist())) == [0, 1, 2, 3, 4]
    assert (label_of[target] == y).all()
    assert search.groups_of(label_of) == [[0, 1], [2, 3, 4]]
    assert search.groups_of(search.fit_targets(TUNE, y, tune.INPUTS)[1]) is None
    with pytest.raises(ValueError, match=r"tune\.target: 'stars' is not one of"):
        search.fit_targets(TUNE | {"target": "stars"}, y, tune.INPUTS)


@pytest.mark.slow
def test_dvclive_records_the_trials_mlflow_records(tiny_project: Path) -> None:
    """Each finished trial is one DVCLive step (its number) with the CV macro-F1 its MLflow
    run holds, and the best so far; dvc.yaml declares the files, and a second run of the
    same study writes the same bytes."""
    tune.run_stage(TUNE)
    live = tiny_project / "reports" / "tune" / "live"
    rows = pd.read_csv(live / "plots" / "metrics" / "trial" / "cv_macro_f1.tsv", sep="\t")
    best = pd.read_csv(live / "plots" / "metrics" / "trial" / "best_cv_macro_f1.tsv", sep="\t")
    assert list(rows.columns) == ["step", "cv_macro_f1"]  # no timestamps
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("sentiment").experiment_id
    trials = client.search_runs([experiment], filter_string="tags.kind = 'trial'")
    logged = {int(r.data.tags["optuna.trial"]): r.data.metrics["cv_macro_f1_mean"] for r in trials}
    assert dict(zip(rows["step"], rows["cv_macro_f1"], strict=True)) == {
        step: round(value, 5) for step, value in logged.items()
    }
    assert best["best_cv_macro_f1"].is_monotonic_increasing
    pruned = pd.read_csv(live / "plots" / "metrics" / "trial" / "pruned.tsv", sep="\t")
    assert dict(zip(pruned["step"], pruned["pruned"], strict=True)) == {
        int(r.data.tags["optuna.trial"]): int(r.data.tags["pruned"] == "true") for r in trials
    }
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == rows["step"].max()
    assert summary["trial"]["best_cv_macro_f1"] == best["best_cv_macro_f1"].iloc[-1]
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["tune"]
    assert {"reports/tune/live/metrics.json": {"cache": False}} in stage["metrics"]
    assert "reports/tune/live/plots/metrics" in stage["plots"][0]

    before = {p: p.read_bytes() for p in live.rglob("*") if p.is_file()}
    tune.run_stage(TUNE)  # resumes the study: no new trial, the record rebuilt from it
    assert {p: p.read_bytes() for p in live.rglob("*") if p.is_file()} == before
