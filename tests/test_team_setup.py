"""The team setup against real servers on loopback: one Optuna study on PostgreSQL shared by
the tune stage and extra workers, through the URL forms docs/configuration.md names; a DVC
remote on an S3 bucket (moto's server) that a second clone pulls everything from."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sentiment import paths, tracking
from sentiment.models import search
from sentiment.models.trust import UntrustedModelError
from sentiment.registry import promotion
from sentiment.settings import setting
from stages import tune
from tests.conftest import (
    BIN,
    REPO,
    S3_CREDENTIALS,
    S3Server,
    TrackingServer,
    copy_project,
    postgres_database,
    project_env,
    running_tracking_server,
)
from tests.test_gate import PARAMS, project_copy
from tests.test_registry_server import promote_twice_then_roll_back
from tests.test_tune import TUNE, tiny_project  # noqa: F401 (a fixture)

DONE = (TrialState.COMPLETE, TrialState.PRUNED)
BOTO_CREDENTIALS = {
    "aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
    "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"],
}


def set_trials(project: Path, n_trials: int) -> None:
    """The study's total, with time enough to reach it however busy the machine is (with
    tune.timeout at 60 s a loaded CI machine once stopped at 236 of 400 trials)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tune"]["n_trials"] = n_trials
    params["tune"]["timeout"] = 600
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def tune_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "stages.tune", *args],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def study_of_name() -> str:
    return search.study_name(TUNE, tracking.dvc_md5("data/features"), tracking.code_hash("tune"))


def study_of(storage: str) -> optuna.Study:
    return optuna.load_study(study_name=study_of_name(), storage=storage)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg"])
def test_the_stage_and_two_workers_share_one_postgresql_study(
    tiny_project: Path,  # noqa: F811
    postgres: str,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    url = postgres_database(postgres, f"optuna_{scheme.replace('+', '_')}")
    storage = url.replace("postgresql://", f"{scheme}://", 1)
    monkeypatch.setenv("OPTUNA_STORAGE", storage)
    set_trials(tiny_project, 120)
    tracking.configure()  # the tracking store exists before three processes open it
    processes = [tune_process(), tune_process("--worker"), tune_process("--worker")]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    trials = study_of(storage).trials
    finished = [t for t in trials if t.state in DONE]
    assert len(finished) == 120, "exactly tune.n_trials finished trials"
    assert len({t.number for t in trials}) == len(trials), "no trial number twice"
    assert len({t.user_attrs["worker"] for t in finished}) >= 2, "the work was shared"
    best = yaml.safe_load((tiny_project / "reports" / "tune" / "best.json").read_text())
    assert best["study"] == study_of(storage).study_name


@pytest.mark.slow
def test_a_worker_killed_mid_trial_does_not_leave_the_study_short(
    tiny_project: Path,  # noqa: F811
    postgres: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its trial stops beating, goes stale after ``GRACE_SECONDS``, is failed and queued
    again (heartbeat + ``RetryHeartbeatStaleTrialCallback``); the next worker still ends the
    study at exactly its total."""
    storage = postgres_database(postgres, "optuna_killed")
    monkeypatch.setenv("OPTUNA_STORAGE", storage)
    tracking.configure()
    search.search(TUNE, storage, study_of_name(), None, tune.INPUTS, n_trials=0)
    total = 200  # long enough for the orphan to go stale and be retried (15 s)
    set_trials(tiny_project, total)
    orphan = None
    for _ in range(5):  # until the kill lands inside a trial
        worker = tune_process("--worker", "--n-trials", str(total))
        tag = f"{socket.gethostname()}:{worker.pid}"
        orphan = wait_for_running_trial(storage, tag, worker)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        trial = next(t for t in study_of(storage).trials if t.number == orphan)
        if trial.state == TrialState.RUNNING:
            break
        orphan = None
    assert orphan is not None, "no kill landed inside a trial in five tries"
    started = time.monotonic()
    finisher = tune_process("--worker", "--n-trials", str(total))
    _, err = finisher.communicate(timeout=600)
    assert finisher.returncode == 0, err
    trials = study_of(storage).trials
    assert len([t for t in trials if t.state in DONE]) == total
    killed = next(t for t in trials if t.number == orphan)
    assert killed.state == TrialState.FAIL  # failed as stale ...
    retried = [
        t
        for t in trials
        if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == orphan
    ]
    # ... and queued again: run by the next worker, unless the total was reached first
    # (a fast machine finishes its trials within the grace period and then waits for it)
    assert retried and retried[0].state in (*DONE, TrialState.WAITING)
    assert time.monotonic() - started >= search.GRACE_SECONDS - search.HEARTBEAT_SECONDS


@pytest.mark.slow
def test_a_worker_cut_off_inside_a_transaction_does_not_block_the_others(postgres: str) -> None:
    """A worker cut off mid-write leaves its session idle inside a transaction, holding its
    trial's row lock: PostgreSQL ends that session after ``ABANDONED_SECONDS`` (the option
    every worker's connections carry), so the others can fail the trial as stale."""
    import sqlalchemy

    url = postgres_database(postgres, "optuna_abandoned")
    storage = search.BeatingStorage(
        url,
        engine_kwargs=search.engine_options(url),
        heartbeat_interval=1,
        grace_period=1,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
    )
    study = optuna.create_study(storage=storage, study_name="abandoned")
    orphan = study.ask()
    storage.record_heartbeat(orphan._trial_id)
    waiting = study.ask()
    cut_off = sqlalchemy.create_engine(url, **search.engine_options(url)).connect()
    cut_off.begin()  # the worker's last write: its trial's row locked, never committed
    lock = "SELECT * FROM trials WHERE trial_id = %s FOR UPDATE"
    cut_off.exec_driver_sql(lock, (orphan._trial_id,))
    started = time.monotonic()
    search.wait_for_place(waiting, target=1, poll=0.2)
    seconds = time.monotonic() - started
    assert study.trials[orphan.number].state == TrialState.FAIL
    assert search.ABANDONED_SECONDS - 1 <= seconds < search.ABANDONED_SECONDS + 10


def wait_for_running_trial(storage: str, tag: str, worker: subprocess.Popen) -> int:
    """The number of a trial ``worker`` (its ``worker`` attribute is ``tag``) is running.
    One storage for the whole wait: a study loaded per poll (every 10 ms) keeps its pooled
    connections until collected, and a slow worker start once used up PostgreSQL's 100."""
    study = study_of(storage)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[1]
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get("worker") == tag:
                return trial.number
        time.sleep(0.01)
    raise AssertionError(f"worker {tag} ran no trial in 120 s")


def dvc(root: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [str(BIN / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def use_bucket(root: Path, env: dict[str, str], s3: S3Server) -> None:
    """The bucket as the clone's default remote, as docs/data.md shows (``--local``: the
    endpoint and credentials stay out of git)."""
    dvc(root, env, "remote", "add", "--local", "--default", "bucket", f"s3://{s3.bucket}/dvc")
    dvc(root, env, "remote", "modify", "--local", "bucket", "endpointurl", s3.endpoint)


@pytest.mark.slow
def test_outputs_pushed_to_a_bucket_pull_into_another_clone_that_reruns_nothing(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """One clone pushes the raw data and every pipeline output (from this workspace's DVC
    cache, which ``make run`` filled) to an S3 bucket; a second clone pulls them with the
    same md5s, and its ``dvc repro`` runs nothing."""
    if not (REPO / paths.CHAMPION / "meta.json").is_file():
        reason = "no pipeline outputs in the workspace (`make run` computes them)"
        if setting("SENTIMENT_REQUIRE_MODELS"):
            pytest.fail(reason)
        pytest.skip(reason)
    first = copy_project(tmp_path / "first")
    env = s3_server.env(project_env(first))
    use_bucket(first, env, s3_server)
    dvc(first, env, "cache", "dir", "--local", str(REPO / ".dvc" / "cache"))
    dvc(first, env, "push")

    second = copy_project(tmp_path / "second")
    env = s3_server.env(project_env(second))
    use_bucket(second, env, s3_server)
    dvc(second, env, "pull")
    lock = yaml.safe_load((second / "dvc.lock").read_text())
    for stage, spec in lock["stages"].items():
        for out in spec.get("outs", []):
            assert tracking.dvc_md5(second / out["path"]) == out["md5"], (stage, out["path"])
    status = dvc(second, env, "status", "--json")
    assert json.loads(status) == {}
    assert "Running stage" not in dvc(second, env, "repro")


@pytest.fixture(scope="module")
def team_tracking_server(
    tmp_path_factory: pytest.TempPathFactory, postgres: str, s3_server: S3Server
) -> Iterator[TrackingServer]:
    """``mlflow server`` as a team runs it: runs and registry on PostgreSQL, artifacts in the
    bucket (the server holds the bucket's credentials; clients only speak HTTP to it)."""
    bucket_env = s3_server.env({"MLFLOW_S3_ENDPOINT_URL": s3_server.endpoint})
    with running_tracking_server(
        tmp_path_factory.mktemp("mlflow-team-server"),
        auth=False,
        backend=postgres_database(postgres, "mlflow"),
        artifacts=f"s3://{s3_server.bucket}/mlflow",
        server_env=bucket_env,
    ) as server:
        yield server


@pytest.mark.slow
def test_the_registry_on_postgresql_and_a_bucket_promotes_rolls_back_and_hands_out(
    team_tracking_server: TrackingServer,
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project_copy(tmp_path, monkeypatch)
    team_tracking_server.use(monkeypatch)
    tracking.configure()
    promote_twice_then_roll_back()

    # The model files are in the bucket, and come back checked against their sha256 record.
    import boto3

    bucket = boto3.resource("s3", endpoint_url=s3_server.endpoint, **BOTO_CREDENTIALS).Bucket(
        s3_server.bucket
    )
    stored = [o.key for o in bucket.objects.filter(Prefix="mlflow/")]
    models = [k for k in stored if "/models/" in k and k.endswith("/champion/model.skops")]
    assert len(models) == 2, stored  # the two registered versions' model files
    promotion.download_production(PARAMS, tmp_path / "production")
    assert (tmp_path / "production" / "model.skops").is_file()
    for key in models:  # swap the stored files: the download must refuse them
        bucket.put_object(Key=key, Body=b"not the registered model")
    with pytest.raises(UntrustedModelError):
        promotion.download_production(PARAMS, tmp_path / "tampered")
    assert not (tmp_path / "tampered").exists()
