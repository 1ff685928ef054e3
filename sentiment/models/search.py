"""The classical model search: Optuna over classifier families and their hyperparameters on
the TF-IDF features (objective: mean stratified k-fold macro-F1 on train, reported per fold
to a median pruner), the refit of the best one, and the study's plots.

The study lives in an Optuna RDB storage (``OPTUNA_STORAGE``, else ``tune.storage``, else
``optuna.db`` in the project) under a name derived from the input hashes, so a re-run with
the same inputs resumes it, and workers in other processes or machines can join it.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import scipy.sparse as sp
from mlflow.entities import Metric, Param, RunTag
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import TrialState
from sklearn.base import ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from sentiment.evaluation.metrics import macro_f1
from sentiment.fileio import read_split
from sentiment.models.live import live_trial_logger, open_live, trial_score
from sentiment.models.nbsvm import NBLogisticRegression
from sentiment.models.predictor import (
    check_target,
    rating_groups,
)
from sentiment.models.trust import load_skops
from sentiment.params import ParamsError
from sentiment.settings import setting
from sentiment.tracking import params_hash, project_root

FAMILIES = ("logreg", "linear_svc", "complement_nb", "sgd", "nbsvm")


# Params that change how long the search runs, not what it searches.
RUN_ONLY_PARAMS = ("n_trials", "timeout", "n_jobs", "storage")


def suggest_classifier(trial: optuna.Trial, families: list[str], seed: int) -> ClassifierMixin:
    """Sample a classifier family and its hyperparameters (also rebuilds from FixedTrial)."""
    family = trial.suggest_categorical("classifier", families)
    if family == "complement_nb":
        return ComplementNB(alpha=trial.suggest_float("complement_nb_alpha", 1e-3, 1.0, log=True))
    weight = trial.suggest_categorical(f"{family}_class_weight", [None, "balanced"])
    if family == "logreg":
        c = trial.suggest_float("logreg_C", 1e-2, 1e2, log=True)
        return LogisticRegression(C=c, class_weight=weight, max_iter=2000, random_state=seed)
    if family == "linear_svc":
        c = trial.suggest_float("linear_svc_C", 1e-3, 1e1, log=True)
        return LinearSVC(C=c, class_weight=weight, random_state=seed)
    if family == "nbsvm":  # NB log-count ratios under a logistic regression
        return NBLogisticRegression(
            alpha=trial.suggest_float("nbsvm_alpha", 0.1, 10.0, log=True),
            C=trial.suggest_float("nbsvm_C", 1e-2, 1e2, log=True),
            binarize=trial.suggest_categorical("nbsvm_binarize", [True, False]),
            class_weight=weight,
            random_state=seed,
        )
    if family == "sgd":
        return SGDClassifier(
            loss=trial.suggest_categorical("sgd_loss", ["hinge", "log_loss", "modified_huber"]),
            alpha=trial.suggest_float("sgd_alpha", 1e-6, 1e-2, log=True),
            class_weight=weight,
            max_iter=50,
            tol=None,
            random_state=seed,
        )
    raise ValueError(f"tune.families: unknown classifier family {family!r} (know {FAMILIES})")


@dataclass(frozen=True)
class Inputs:
    """What the search reads: featurize's folder, and the train split (for its ratings)."""

    features: Path
    train_split: Path

    def matrix(self, split: str) -> tuple[sp.csr_matrix, np.ndarray]:
        """One split's TF-IDF matrix and labels."""
        return (
            sp.load_npz(self.features / f"{split}.npz"),
            np.load(self.features / f"{split}_labels.npy"),
        )


def fit_targets(
    params: dict[str, Any], y: np.ndarray, inputs: Inputs
) -> tuple[np.ndarray, np.ndarray]:
    """What the classifier learns and, per learnt class, the label it counts for: the labels
    themselves, or (``target: rating``) the star ratings minus one."""
    check_target("tune.target", params["target"])
    if params["target"] == "label":
        return y, np.arange(int(y.max()) + 1)
    split = inputs.train_split
    labels, ratings = read_split(split)[1], read_split(split, "rating")[1]
    if labels != y.tolist():
        raise ValueError(f"{split} and {inputs.features}: rows differ (re-run featurize)")
    label_of = np.full(5, -1)  # a star absent from train is never predicted
    for label, group in enumerate(rating_groups(ratings, labels)):
        label_of[group] = label
    return np.asarray(ratings) - 1, label_of


def groups_of(label_of: np.ndarray) -> list[list[int]] | None:
    """The learnt classes of each label, None when they are the labels."""
    if len(label_of) == int(label_of.max()) + 1 and (label_of == np.arange(len(label_of))).all():
        return None
    return [np.flatnonzero(label_of == c).tolist() for c in range(int(label_of.max()) + 1)]


def storage_url(params: dict[str, Any]) -> str:
    """``OPTUNA_STORAGE`` > ``tune.storage`` > the project's embedded SQLite file."""
    return (
        setting("OPTUNA_STORAGE")
        or params.get("storage")
        or f"sqlite:///{project_root() / 'optuna.db'}"
    )


def study_name(params: dict[str, Any], features_md5: str, code: str) -> str:
    """Same features, search space and code -> same study, so re-runs and workers share it;
    a change to any of them starts a new study (never trials scored by other code)."""
    search = {k: v for k, v in params.items() if k not in RUN_ONLY_PARAMS}
    return f"tune-{params_hash({'features': features_md5, 'code': code, **search})}"


def fit(model: ClassifierMixin, x: sp.csr_matrix, y: np.ndarray) -> ClassifierMixin:
    """``model.fit`` without ConvergenceWarning: a trial's small C or alpha may stop at
    max_iter; it then scores lower, which the search sees (the warning adds nothing)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return model.fit(x, y)


def check_folds(target: np.ndarray, folds: int, source: Path) -> None:
    """Refuse ``tune.cv_folds`` when a class of ``target`` has fewer training rows than
    folds: StratifiedKFold would only warn, and score that class on some folds only."""
    counts = np.bincount(target)
    short = {int(c): int(counts[c]) for c in np.flatnonzero(counts) if counts[c] < folds}
    if short:
        rows = ", ".join(f"class {c} has {n}" for c, n in short.items())
        raise ParamsError(
            f"tune.cv_folds: {folds} folds need {folds} training rows of each class; in "
            f"{source}, {rows}"
        )


def make_objective(
    x: sp.csr_matrix, y: np.ndarray, params: dict[str, Any], inputs: Inputs, total: int
):
    """k-fold macro-F1 objective reporting the running mean after each fold to the pruner;
    scored on the labels whatever the classifier learns (``fit_targets``). A trial first
    waits for its place among the study's ``total`` (``wait_for_place``)."""
    target, label_of = fit_targets(params, y, inputs)
    check_folds(target, params["cv_folds"], inputs.train_split)
    folds = list(
        StratifiedKFold(params["cv_folds"], shuffle=True, random_state=params["seed"]).split(
            x, target
        )
    )

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        wait_for_place(trial, total)
        classifier = suggest_classifier(trial, params["families"], params["seed"])
        scores: list[float] = []
        start = time.perf_counter()
        for step, (fit_idx, val_idx) in enumerate(folds):
            model = fit(clone(classifier), x[fit_idx], target[fit_idx])
            scores.append(macro_f1(y[val_idx], label_of[model.predict(x[val_idx])]))
            trial.report(float(np.mean(scores)), step)
            trial.set_user_attr("fit_seconds", time.perf_counter() - start)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("cv_std", float(np.std(scores)))
        return float(np.mean(scores))

    return objective


def mlflow_trial_logger(parent_run_id: str):
    """Optuna callback: each finished trial becomes an MLflow child run of the tune run."""
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    source = {  # the tune run's code identity (git commit, source file, dirty flag), dataset
        k: v
        for k, v in parent.data.tags.items()
        if k.startswith(("mlflow.source.", "git.")) or k == "dataset"
    }

    def log(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            return  # a surplus trial: nothing was fitted
        complete = trial.state == TrialState.COMPLETE
        run = client.create_run(
            parent.info.experiment_id,
            run_name=f"trial-{trial.number}",
            tags={**source, "mlflow.parentRunId": parent_run_id, "kind": "trial"},
        )
        metrics = {
            "cv_macro_f1_mean": trial_score(trial),
            "fit_seconds": trial.user_attrs.get("fit_seconds", 0.0),
        }
        if "cv_std" in trial.user_attrs:
            metrics["cv_macro_f1_std"] = trial.user_attrs["cv_std"]
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in trial.params.items()],
            tags=[
                RunTag("pruned", str(trial.state == TrialState.PRUNED).lower()),
                RunTag("optuna.study", study.study_name),
                RunTag("optuna.trial", str(trial.number)),
            ],
        )
        client.set_terminated(run.info.run_id, "FINISHED" if complete else "KILLED")

    return log


HEARTBEAT_SECONDS = 5  # a running trial's worker writes a heartbeat this often ...
GRACE_SECONDS = 20  # ... and one silent this long is stale: failed, and retried once more
LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class SurplusTrial(Exception):
    """A trial started after the study's total was already spoken for by earlier ones."""


def claim(trials: list[optuna.trial.FrozenTrial], number: int, target: int) -> str:
    """Whether trial ``number`` may run: ``run`` when it is among the first ``target`` live
    trials (finished, running or queued, by number); ``surplus`` when the earlier ones are
    ``target`` or more and all finished; ``wait`` while some earlier one still runs or waits
    (it may finish, or go stale and fail, freeing the place). Concurrent workers thus end a
    study with exactly ``target`` finished trials."""
    earlier = [t for t in trials if t.state in LIVE and t.number < number]
    if len(earlier) < target:
        return "run"
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return "surplus" if sum(t.state in done for t in earlier) >= target else "wait"


def wait_for_place(trial: optuna.Trial, target: int, poll: float = 1.0) -> None:
    """Block until ``claim`` lets ``trial`` run; raise ``SurplusTrial`` when it never will.
    Stale trials of dead workers are failed (and queued again) meanwhile."""
    study = trial.study
    while True:
        verdict = claim(study.get_trials(deepcopy=False), trial.number, target)
        if verdict == "run":
            return
        if verdict == "surplus":
            trial.set_user_attr("surplus", True)
            study.stop()
            raise SurplusTrial(f"trial {trial.number}: the study already has {target}")
        with warnings.catch_warnings():  # a no-op without heartbeats (not RDB storage)
            warnings.simplefilter("ignore")  # experimental API
            optuna.storages.fail_stale_trials(study)
        time.sleep(poll)


class BeatingStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose heartbeat outlives a database restart: a beat that cannot
    be written is skipped (Optuna's heartbeat thread would die of it, and the trial, still
    running, would go stale), and a pooled connection is checked before use, so a worker
    idle during the restart carries on."""

    def record_heartbeat(self, trial_id: int) -> None:
        # A beat lost to the server (at connect, or at commit, which Optuna wraps as a
        # StorageInternalError): the next one, HEARTBEAT_SECONDS later, tries again.
        with suppress(SQLAlchemyError, optuna.exceptions.StorageInternalError):
            super().record_heartbeat(trial_id)


ABANDONED_SECONDS = 10  # a PostgreSQL session idle this long inside a transaction is ended


def engine_options(url: str) -> dict[str, Any]:
    """Pooled connections checked before use; on PostgreSQL, sessions that sit idle inside a
    transaction ended after ``ABANDONED_SECONDS``. Optuna's transactions last milliseconds:
    one left open is a worker cut off mid-write, whose row locks would otherwise block the
    others (failing its trial as stale included) until the server notices, hours later."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "options" not in parsed.query:
        timeout = f"-c idle_in_transaction_session_timeout={ABANDONED_SECONDS * 1000}"
        options["connect_args"] = {"options": timeout}
    return options


def rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """The study's storage, with heartbeats: a killed worker's trial goes stale after
    ``GRACE_SECONDS``, is failed, and is queued again (``RetryHeartbeatStaleTrialCallback``).

    Workers started together on an empty database race to create Optuna's tables: the
    losers' ``CREATE TABLE`` fails, and they connect again once the tables exist."""

    def connect() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return BeatingStorage(
                url,
                engine_kwargs=engine_options(url),
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=(
                    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
                ),
            )

    for attempt in range(attempts - 1):
        try:
            return connect()
        except (IntegrityError, ProgrammingError):
            time.sleep(1 + attempt)
    return connect()


def search(
    params: dict[str, Any],
    storage: str | optuna.storages.BaseStorage,
    name: str,
    parent_run_id: str | None,
    inputs: Inputs,
    n_trials: int | None = None,
    live_dir: Path | None = None,
) -> optuna.Study:
    """Run (or resume, or join) the study until it holds ``n_trials`` finished trials; with
    ``live_dir``, each trial this process finishes is logged there through DVCLive as it
    lands."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x, y = inputs.matrix("train")
    study = optuna.create_study(
        study_name=name,
        storage=rdb_storage(storage) if isinstance(storage, str) else storage,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=params["seed"]),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        load_if_exists=True,
    )
    target = n_trials if n_trials is not None else params["n_trials"]
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    remaining = target - len(study.get_trials(deepcopy=False, states=finished))
    if remaining > 0:
        callbacks = [optuna.study.MaxTrialsCallback(target, states=finished)]
        if parent_run_id:
            callbacks.insert(0, mlflow_trial_logger(parent_run_id))
        if live_dir is not None:
            callbacks.insert(0, live_trial_logger(open_live(live_dir)))
        try:
            study.optimize(
                make_objective(x, y, params, inputs, target),
                n_trials=remaining,
                timeout=params["timeout"],
                n_jobs=params["n_jobs"],
                callbacks=callbacks,
                catch=(SurplusTrial,),
            )
        except Exception as err:
            lost = database_error(err)
            if lost is None:
                raise
            first = str(lost.orig or lost).strip().splitlines()[0]
            raise RuntimeError(
                f"lost the study's database mid-search ({first}); the finished trials are "
                "kept: run again to resume"
            ) from err
    return study


def database_error(err: BaseException | None) -> OperationalError | None:
    """The database connection error that ``err`` is or arose from. (Optuna, failing to
    record a trial's end, raises an ``UnboundLocalError`` of its own over it.)"""
    while err is not None:
        if isinstance(err, OperationalError):
            return err
        err = err.__cause__ or err.__context__
    return None


def with_probabilities(classifier: ClassifierMixin, folds: int, seed: int) -> ClassifierMixin:
    """The classifier itself, or sigmoid-calibrated over stratified folds when it has no
    ``predict_proba`` (LinearSVC, hinge SGD)."""
    if hasattr(classifier, "predict_proba") and not (
        isinstance(classifier, SGDClassifier) and classifier.loss == "hinge"
    ):
        return classifier
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return CalibratedClassifierCV(classifier, cv=cv, method="sigmoid")


def refit_best(
    study: optuna.Study, params: dict[str, Any], inputs: Inputs
) -> tuple[Pipeline, list | None]:
    """The best classifier refitted on all of train, behind the fitted vectorizer, and the
    groups that sum its classes into labels (None when it learnt the labels)."""
    x, y = inputs.matrix("train")
    target, label_of = fit_targets(params, y, inputs)
    classifier = suggest_classifier(
        optuna.trial.FixedTrial(study.best_params), params["families"], params["seed"]
    )
    classifier = with_probabilities(classifier, params["cv_folds"], params["seed"])
    fit(classifier, x, target)
    pipeline = Pipeline(
        [("features", load_skops(inputs.features / "vectorizer.skops")), ("classifier", classifier)]
    )
    return pipeline, groups_of(label_of)


class SortedImportances(PedAnovaImportanceEvaluator):
    """Optuna's default importances, ties ordered by name: Optuna orders them by iterating a
    set of names, which changes with the process's string hashing, and with it the bytes
    (and the DVC md5) of ``reports/tune/plots``."""

    def evaluate(self, study, params=None, *, target=None) -> dict[str, float]:
        found = super().evaluate(study, params=params, target=target)
        return dict(sorted(found.items(), key=lambda item: (-item[1], item[0])))


def save_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optimisation history and hyperparameter importance as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    plots = {
        "optimization_history": ovm.plot_optimization_history,
        "param_importances": partial(ovm.plot_param_importances, evaluator=SortedImportances()),
    }
    for name, plot in plots.items():
        with warnings.catch_warnings():
            # Optuna marks its matplotlib plots experimental; their output is pinned here.
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            ax = plot(study)
        path = out_dir / f"{name}.png"
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        paths.append(path)
    return paths


def study_record(study: optuna.Study, params: dict[str, Any], seconds: float) -> dict[str, Any]:
    """What a finished search found and how it ended (``best.json`` without the val part)."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    finished = states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED)
    return {
        "study": study.study_name,
        "best_params": study.best_params,
        "cv_macro_f1": round(study.best_value, 5),
        "cv_macro_f1_std": round(study.best_trial.user_attrs.get("cv_std", 0.0), 5),
        "trials": {
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "target": params["n_trials"],
        },
        # tune.timeout stopped the search before tune.n_trials finished trials
        "timed_out": finished < params["n_trials"],
        "search_seconds": round(seconds, 2),
    }
