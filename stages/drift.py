"""drift: calibrated drift detection on text, the pipeline's stage.

A window of current texts, as they arrive (repeats included), is compared with a seeded
sample of the training reviews at the same natural multiplicity by a battery of tests, each
with a p-value and an effect size, Holm-corrected at family level ``alpha``: predicted-label
share (chi-square), champion score distribution (KS), word count (Mann-Whitney),
out-of-vocabulary rate (one-sided Mann-Whitney), MMD on the L2-normalised TF-IDF->SVD
projection (median-heuristic RBF kernel, permutation p-value (k+1)/(B+1)), a domain
classifier (AUC on a held-out half, split by text, Mann-Whitney p-value), and for a
transformer champion the same MMD on its own pooled embeddings (the export's ``embedding``
output, unit length). Windows smaller than ``min_window`` report "insufficient data", never
drift.

    python -m stages.drift     # the DVC stage: held-out reviews and the ood sets

The stage fits the reference that ``python -m sentiment.monitoring`` tests inference logs
against, and writes the champion's reference figures (predicted-positive share, mean
confidence) as Prometheus recording rules for the service's alerts (``deploy/monitoring/``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sentiment import paths
from sentiment.cli import entry_point, no_options
from sentiment.data.dataset import load_dataset
from sentiment.fileio import read_split, write_json
from sentiment.headlines import stage_line
from sentiment.models.predictor import load_predictor
from sentiment.monitoring.detector import DriftDetector
from sentiment.monitoring.prometheus import reference_figures, write_reference_rules
from sentiment.monitoring.reference import build_reference, raw_traffic
from sentiment.monitoring.report import summary, write_report
from sentiment.params import load_params


def run_stage(params: dict[str, Any]) -> dict[str, Any]:
    """Fit the reference on the raw reviews, test the held-out rows and the ood sets."""
    import mlflow

    from sentiment.tracking import log_key_metrics, stage_run

    with stage_run("drift"):
        predictor = load_predictor(paths.CHAMPION)
        rows = raw_traffic(load_dataset())["text"].tolist()
        reference, held = build_reference(rows, predictor, params, params["holdout_rows"])
        reference.save(paths.DRIFT_REFERENCE)
        figures = reference_figures(predictor, reference.texts)
        write_reference_rules(paths.DRIFT_REFERENCE_RULES, figures)
        detector = DriftDetector(reference, predictor, params)
        rng = np.random.default_rng(params["seed"])
        results = {}
        held_out = [rows[i] for i in held]
        current = {"held_out": held_out} | {
            n: read_split(p)[0] for n, p in paths.ood_sets(paths.OOD_DIR).items()
        }
        for name, texts in current.items():
            if len(texts) > params["window_size"]:
                texts = [
                    texts[i] for i in rng.choice(len(texts), params["window_size"], replace=False)
                ]
            results[name] = detector.test_window(texts)
        write_report(results, paths.DRIFT_REPORT_MD, paths.DRIFT_PLOTS)
        report = {name: summary(r) for name, r in results.items()}
        write_json(paths.DRIFT_REPORT, report)
        verdicts = {name: result["status"] for name, result in report.items()}
        write_json(paths.DRIFT_VERDICTS, {"drift": verdicts})  # the headline
        log_key_metrics(
            {f"{name}.drift_detected": int(r["drift_detected"]) for name, r in results.items()}
        )
        mlflow.log_artifacts(str(paths.DRIFT_PLOTS), "plots")
        mlflow.log_artifact(str(paths.DRIFT_REPORT_MD))
    return report


def main() -> None:
    no_options(__doc__)
    run_stage(load_params("drift"))
    print(stage_line("drift"))


if __name__ == "__main__":
    entry_point(main)
