"""The team setup against real servers on loopback: one Optuna study on PostgreSQL shared by
the tune stage and extra workers, through the URL forms docs/configuration.md names."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sentiment import tracking
from sentiment.models import search
from stages import tune
from tests.conftest import REPO, postgres_database
from tests.test_tune import TUNE, tiny_project  # noqa: F401 (a fixture)

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def set_trials(project: Path, n_trials: int) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tune"]["n_trials"] = n_trials
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
    again (heartbeat + ``RetryHeartbeatStaleTrialCallback``); the next worker runs it."""
    storage = postgres_database(postgres, "optuna_killed")
    monkeypatch.setenv("OPTUNA_STORAGE", storage)
    tracking.configure()
    search.search(TUNE, storage, study_of_name(), None, tune.INPUTS, n_trials=0)
    total = 400
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
    assert retried and retried[0].state in DONE  # ... and run again by the next worker
    assert time.monotonic() - started >= search.GRACE_SECONDS - search.HEARTBEAT_SECONDS


def wait_for_running_trial(storage: str, tag: str, worker: subprocess.Popen) -> int:
    """The number of a trial ``worker`` (its ``worker`` attribute is ``tag``) is running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[1]
        for trial in study_of(storage).get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.user_attrs.get("worker") == tag:
                return trial.number
        time.sleep(0.01)
    raise AssertionError(f"worker {tag} ran no trial in 120 s")
