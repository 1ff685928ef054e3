"""Drift on an inference log: ``python -m sentiment.monitoring --current LOG``.

The log's texts, as they arrived, are cut into windows of ``drift.window_size`` and each is
tested against the reference the drift stage fitted (``models/drift-reference``), scored by
the model that served them:

    python -m sentiment.monitoring --current log.jsonl [--model DIR]  # CSV/Parquet/JSONL, 'text'
    python -m sentiment.monitoring --current logs/ --prometheus /var/lib/node_exporter/drift.prom

``--prometheus FILE`` also writes the run's verdicts and p-values for node-exporter's textfile
collector. Exit status: 0 no drift, 1 drift, 3 retrain (``retrain_after`` consecutive drifting
windows), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sentiment import paths
from sentiment.cli import entry_point
from sentiment.fileio import write_json
from sentiment.models.predictor import load_predictor
from sentiment.monitoring.detector import DriftDetector
from sentiment.monitoring.logs import read_current
from sentiment.monitoring.prometheus import write_drift_metrics
from sentiment.monitoring.reference import Reference
from sentiment.monitoring.report import summary, windows_verdict, write_report
from sentiment.params import load_params

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_BAD_INPUT, EXIT_RETRAIN = 0, 1, 2, 3


def check_log(
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
    parser = argparse.ArgumentParser(
        prog="python -m sentiment.monitoring", description="Test an inference log for drift."
    )
    parser.add_argument(
        "--current", type=Path, required=True, help="CSV/Parquet/JSONL with a 'text' column"
    )
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
        help="also write the verdicts as a .prom file (textfile collector)",
    )
    args = parser.parse_args()
    params = load_params("drift")
    sys.exit(check_log(args.current, params, args.out, args.model, args.prometheus))


if __name__ == "__main__":
    entry_point(main)
