"""Print what `make run` produced: stages, headline metrics, where outputs and MLflow live."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from sentiment import paths
from sentiment.cli import entry_point, no_options
from sentiment.paths import REPO_ROOT
from sentiment.tracking import redact_uri, tracking_uri


def read(path: Path) -> dict:
    file = REPO_ROOT / path
    return json.loads(file.read_text()) if file.is_file() else {}


def headlines() -> list[str]:
    """One line per stage that has produced its metrics so far."""
    lines = []
    if stats := read(paths.PREPARE_STATS):
        lines.append(
            f"prepare: rows {stats['rows']}, quarantined "
            f"{stats['quarantined']['total']}, test texts also in train "
            f"{stats['leakage']['test_texts_in_train']}"
        )
    if best := read(paths.TUNE_BEST):
        lines.append(
            f"tune: {best['best_params']['classifier']} cv macro-F1 "
            f"{best['cv_macro_f1']}, val {best['val_macro_f1']}"
        )
    if trained := read(paths.TRAIN_METRICS):
        lines.append(
            f"train_transformer: val macro-F1 {trained['val_macro_f1']} "
            f"(epoch {trained['best_epoch']}, {trained['train_seconds']} s)"
        )
    if metrics := read(paths.EVAL_METRICS):
        scores = ", ".join(
            f"{n} {metrics[n]['test']['macro_f1']}"
            for n in ("classical", "transformer", "ensemble")
        )
        lines.append(f"evaluate: test macro-F1 {scores}; champion {metrics['champion']['name']}")
    if decision := read(paths.GATE_DECISION):
        failing = [r for r, v in decision["rules"].items() if not v["passed"]]
        against = decision["production"]
        versus = f"production version {against['version']}" if against else "no production"
        verdict = "promote" if decision["promote"] else f"keep (failing: {', '.join(failing)})"
        lines.append(f"gate: {verdict}, against {versus} (`make promote` acts on it)")
    if report := read(paths.DRIFT_REPORT):
        lines.append("drift: " + ", ".join(f"{n} {r['status']}" for n, r in report.items()))
    return lines


def main() -> None:
    no_options(__doc__)
    lock_file = REPO_ROOT / "dvc.lock"
    stages = list(yaml.safe_load(lock_file.read_text())["stages"]) if lock_file.is_file() else []
    print("\n== Pipeline summary ==")
    print("stages:", " -> ".join(stages))
    for line in headlines():
        print(f"  {line}")
    print(
        f"outputs: {paths.RAW.parent}/, {paths.CLASSICAL.parent}/, {paths.REPORTS}/ "
        "(dvc.lock lists all)"
    )
    print(
        f"MLflow: {redact_uri(tracking_uri())}\n  open it with: .venv/bin/mlflow ui "
        f"--backend-store-uri {redact_uri(tracking_uri())}"
    )


if __name__ == "__main__":
    entry_point(main)
