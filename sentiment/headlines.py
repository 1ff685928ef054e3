"""Each stage's headline: one line from the metrics files it wrote. The stage prints it, `make
run`'s summary prints every stage's, and the pull-request report builds its gate and drift
sections from the same reading of the files. ``EXP_METRICS`` are the metrics files whose
figures `make exp` shows as columns (the Makefile's ``EXP_COLUMNS``, tested against them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiment import paths
from sentiment.paths import REPO_ROOT

CANDIDATES = ("classical", "transformer", "ensemble")
EXP_METRICS = (paths.EVAL_HEADLINE, paths.GATE_VERDICT, paths.DRIFT_VERDICTS)


def prepare(stats: dict) -> str:
    return (
        f"rows {stats['rows']}, quarantined {stats['quarantined']['total']}, test texts also "
        f"in train {stats['leakage']['test_texts_in_train']}"
    )


def featurize(summary: dict) -> str:
    return f"{summary['n_features']} features"


def tune(best: dict) -> str:
    return (
        f"{best['best_params']['classifier']} cv macro-F1 {best['cv_macro_f1']}, "
        f"val {best['val_macro_f1']}"
    )


def train_transformer(trained: dict) -> str:
    return (
        f"val macro-F1 {trained['val_macro_f1']} "
        f"(epoch {trained['best_epoch']}, {trained['train_seconds']} s)"
    )


def evaluate(metrics: dict) -> str:
    scores = ", ".join(f"{n} {metrics[n]['test']['macro_f1']}" for n in CANDIDATES)
    return f"test macro-F1 {scores}; champion {metrics['champion']['name']}"


def failing_rules(decision: dict) -> list[str]:
    return [name for name, rule in decision.get("rules", {}).items() if not rule.get("passed")]


def compared_with(decision: dict) -> str:
    against = decision.get("production")
    return f"production version {against['version']}" if against else "no production"


def gate(decision: dict) -> str:
    failing = ", ".join(failing_rules(decision))
    verdict = "promote" if decision["promote"] else f"keep (failing: {failing})"
    return f"{verdict}, against {compared_with(decision)} (`make promote` acts on it)"


def drift_statuses(report: dict) -> dict[str, str]:
    return {name: result.get("status", "n/a") for name, result in report.items()}


def drift(report: dict) -> str:
    return ", ".join(f"{name} {status}" for name, status in drift_statuses(report).items())


@dataclass(frozen=True)
class Headline:
    """A stage's headline: the metrics file it reads, and the line it makes of it."""

    file: Path
    line: Callable[[dict], str]


HEADLINES: dict[str, Headline] = {
    "prepare": Headline(paths.PREPARE_STATS, prepare),
    "featurize": Headline(paths.FEATURIZE_SUMMARY, featurize),
    "tune": Headline(paths.TUNE_BEST, tune),
    "train_transformer": Headline(paths.TRAIN_METRICS, train_transformer),
    "evaluate": Headline(paths.EVAL_METRICS, evaluate),
    "gate": Headline(paths.GATE_DECISION, gate),
    "drift": Headline(paths.DRIFT_REPORT, drift),
}


def read_metrics(path: Path, root: Path = REPO_ROOT) -> dict[str, Any]:
    file = root / path
    return json.loads(file.read_text()) if file.is_file() else {}


def stage_line(stage: str, root: Path = REPO_ROOT) -> str | None:
    """``<stage>: <line>`` from the stage's metrics file, or None before it has run."""
    spec = HEADLINES[stage]
    metrics = read_metrics(spec.file, root)
    return f"{stage}: {spec.line(metrics)}" if metrics else None
