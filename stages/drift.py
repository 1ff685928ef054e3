"""drift: calibrated drift detection on text, for the pipeline and for the inference log.

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

    python -m stages.drift                      # the DVC stage (held-out reviews + ood sets)
    python -m stages.drift --current log.jsonl [--model DIR]  # CSV/Parquet/JSONL, 'text' column
    python -m stages.drift --current logs/ --prometheus /var/lib/node_exporter/drift.prom

The stage also writes the champion's reference figures (predicted-positive share, mean
confidence) as Prometheus recording rules for the service's alerts (``monitoring/``);
``--prometheus FILE`` writes a run's verdicts and p-values for the textfile collector.

Exit status of the CLI: 0 no drift, 1 drift, 3 retrain (``retrain_after`` consecutive
drifting windows), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sentiment import paths
from sentiment.cli import entry_point
from sentiment.fileio import read_split, write_json
from sentiment.models.predictor import load_predictor
from sentiment.monitoring.drift import (
    DriftDetector,
    Reference,
    build_reference,
    raw_traffic,
    read_current,
    summary,
    windows_verdict,
    write_report,
)
from sentiment.monitoring.prometheus import (
    reference_figures,
    write_drift_metrics,
    write_reference_rules,
)
from sentiment.params import load_params

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_BAD_INPUT, EXIT_RETRAIN = 0, 1, 2, 3


def run_stage(params: dict[str, Any]) -> dict[str, Any]:
    """Fit the reference on the raw reviews, test the held-out rows and the ood sets."""
    import mlflow

    from sentiment.tracking import log_key_metrics, stage_run

    with stage_run("drift"):
        predictor = load_predictor(paths.CHAMPION)
        rows = raw_traffic(paths.RAW_REVIEWS)["text"].tolist()
        reference, held = build_reference(rows, predictor, params, params["holdout_rows"])
        reference.save(paths.DRIFT_REFERENCE)
        figures = reference_figures(predictor, reference.texts)
        write_reference_rules(paths.DRIFT_REFERENCE_RULES, figures)
        detector = DriftDetector(reference, predictor, params)
        rng = np.random.default_rng(params["seed"])
        results = {}
        held_out = [rows[i] for i in held]
        current = {"held_out": held_out} | {n: read_split(p)[0] for n, p in paths.OOD_SETS.items()}
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


def run_cli(
    current: Path,
    params: dict[str, Any],
    out: Path,
    model: Path = paths.CHAMPION,
    prometheus: Path | None = None,
) -> int:
    """Test ``current`` (an inference log) in windows; return the exit status."""
    try:
        texts = read_current(current)
    except ValueError as err:
        print(f"drift: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    detector = DriftDetector(Reference.load(paths.DRIFT_REFERENCE), load_predictor(model), params)
    size = params["window_size"]
    chunks = [texts[i : i + size] for i in range(0, len(texts), size)] or [[]]
    if len(chunks) > 1 and len(chunks[-1]) < params["min_window"]:
        chunks[-2:] = [chunks[-2] + chunks[-1]]
    results = [detector.test_window(chunk) for chunk in chunks]
    verdict = windows_verdict(results, params["retrain_after"])
    out.parent.mkdir(parents=True, exist_ok=True)
    windows = {f"window_{i}": r for i, r in enumerate(results)}
    write_report(windows, out.parent / "report.md", out.parent / "plots")
    write_json(
        out, {"current": str(current), **verdict, "windows_detail": [summary(r) for r in results]}
    )
    if prometheus is not None:
        write_drift_metrics(prometheus, results, verdict)
    print(f"drift: {json.dumps(verdict)} -> {out}")
    if verdict["retrain"]:
        return EXIT_RETRAIN
    return EXIT_DRIFT if verdict["drifting"] else EXIT_NO_DRIFT


def main() -> None:
    parser = argparse.ArgumentParser(description="Drift detection (stage, or --current FILE).")
    parser.add_argument("--current", type=Path, help="CSV/Parquet/JSONL with a 'text' column")
    parser.add_argument("--out", type=Path, default=paths.DRIFT_CURRENT)
    parser.add_argument(
        "--model",
        type=Path,
        default=paths.CHAMPION,
        help="model that scores the windows: the one that served them, e.g. the directory "
        "`python -m sentiment.registry download --out DIR` writes (default: models/champion)",
    )
    parser.add_argument(
        "--prometheus",
        type=Path,
        help="with --current: also write the verdicts as a .prom file (textfile collector)",
    )
    args = parser.parse_args()
    if args.prometheus is not None and args.current is None:
        parser.error("--prometheus needs --current (the stage itself writes no .prom file)")
    params = load_params("drift")
    if args.current is None:
        report = run_stage(params)
        print("drift: " + ", ".join(f"{n} {r['status']}" for n, r in report.items()))
        return
    sys.exit(run_cli(args.current, params, args.out, args.model, args.prometheus))


if __name__ == "__main__":
    entry_point(main)
