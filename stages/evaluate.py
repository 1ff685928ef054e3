"""evaluate: score every candidate on every split, run the behavioural suite, pick a champion.

Candidates: the classical pipeline, the transformer, and their weighted probability
average (weight and threshold fitted on validation). The champion is the best by
cross-fitted validation macro-F1 (every candidate's threshold, and the ensemble's weight,
chosen on four fifths of validation and scored on the fifth) unless a cheaper candidate (by
model size, a deterministic cost) is within ``evaluate.min_gain`` of it; never chosen by
test. It is written as a self-contained model directory ``models/champion`` for the gate
(``sentiment.models.candidates`` holds the scoring and the rules).
"""

from __future__ import annotations

from typing import Any

import mlflow

from sentiment import paths
from sentiment.cli import entry_point, no_options
from sentiment.fileio import read_split, write_json
from sentiment.headlines import stage_line
from sentiment.models.candidates import (
    evaluate_candidates,
    export_champion,
    headline,
    unseen,
    write_plots,
)
from sentiment.params import load_params
from sentiment.tracking import log_key_metrics, log_numeric_metrics, stage_run


def evaluate(params: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """All metrics (the ``reports/evaluate/metrics.json`` content) and the test probabilities."""
    data = {split: read_split(paths.SPLITS[split]) for split in ("val", "test")}
    data |= {name: read_split(path) for name, path in paths.ood_sets(paths.OOD_DIR).items()}
    data["test_unseen"] = unseen(data["test"], read_split(paths.SPLITS["train"])[0])
    members = {"classical": paths.CLASSICAL, "transformer": paths.TRANSFORMER}
    return evaluate_candidates(data, members, params)


def main() -> None:
    no_options(__doc__)
    params = load_params("evaluate")
    with stage_run("evaluate"):
        metrics, test = evaluate(params)
        write_plots(test["y"], test["probas"], test["thresholds"], test["names"], paths.EVAL_PLOTS)
        export_champion(
            metrics["champion"]["name"],
            test["thresholds"],
            test["weights"],
            {"classical": paths.CLASSICAL, "transformer": paths.TRANSFORMER},
            paths.CHAMPION,
            test["names"],
        )
        write_json(paths.EVAL_METRICS, metrics)
        write_json(paths.EVAL_HEADLINE, {"headline": headline(metrics)})
        log_numeric_metrics(metrics)
        log_key_metrics(headline(metrics), on_stage_run=False)
        mlflow.set_tag("champion", metrics["champion"]["name"])
        mlflow.log_artifacts(str(paths.EVAL_PLOTS["png"]), "plots")
        mlflow.log_artifact(str(paths.EVAL_METRICS))
    print(stage_line("evaluate"))


if __name__ == "__main__":
    entry_point(main)
