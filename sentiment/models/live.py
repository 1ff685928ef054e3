"""tune's trials through DVCLive: each finished trial's CV macro-F1 and the best so far, as a
step (the trial's number), where ``dvc exp show``, ``dvc plots show`` and the VS Code
extension read them.

While the search runs, each trial this process finishes is appended as it lands, so a
workspace ``dvc exp run`` shows the search's progress. Once it ends, the record is rewritten
from the study itself, every finished trial in number order (the other workers' too, and a
resumed study's), so the stage's output depends on the study alone. No timestamps: the same
study gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
from dvclive import Live
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def trial_score(trial: FrozenTrial) -> float:
    """A finished trial's CV macro-F1: its value, or a pruned one's last reported fold mean
    (what its MLflow run records as ``cv_macro_f1_mean``)."""
    if trial.state == TrialState.COMPLETE:
        return float(trial.value)
    steps = trial.intermediate_values
    return float(steps.get(max(steps, default=0), float("nan")))


def open_live(directory: Path) -> Live:
    """A DVCLive logger writing only into ``directory`` (emptied): no dvc.yaml of its own (the
    project's declares its outputs), no report, no experiment of its own."""
    return Live(str(directory), dvcyaml=None, save_dvc_exp=False, report=None)


def log_trial(live: Live, trial: FrozenTrial, best: float | None) -> None:
    """One trial as one step: ``trial/cv_macro_f1``, ``trial/pruned`` (1 when the pruner
    stopped it: its score is then the mean of the folds it ran) and, once a trial completed,
    ``trial/best_cv_macro_f1``."""
    live.step = trial.number
    live.log_metric("trial/cv_macro_f1", round(trial_score(trial), 5))
    live.log_metric("trial/pruned", int(trial.state == TrialState.PRUNED))
    if best is not None:
        live.log_metric("trial/best_cv_macro_f1", round(best, 5))
    live.make_summary()


def live_trial_logger(live: Live) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Optuna callback: each trial this process finishes, as it lands."""

    def log(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state not in FINISHED:
            return  # a surplus trial: nothing was fitted
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        log_trial(live, trial, max((t.value for t in complete), default=None))

    return log


def write_trial_record(study: optuna.Study, directory: Path) -> None:
    """The study's finished trials in number order, the best so far beside each."""
    live = open_live(directory)
    best = None
    for trial in sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number):
        if trial.state == TrialState.COMPLETE:
            best = trial.value if best is None else max(best, trial.value)
        log_trial(live, trial, best)
    live.end()
