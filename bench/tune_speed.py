"""How long the tune search takes: N trials (default 100) on the real features.

    python -m bench.tune_speed [--trials 100]

Uses in-memory Optuna storage and no MLflow logging, so it measures the search itself;
the stage's own figure (with SQLite storage and MLflow child runs) is
``search_seconds`` in reports/tune/best.json. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import optuna

from sentiment.models.search import search
from sentiment.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    params = load_params("tune") | {"n_trials": args.trials}
    start = time.perf_counter()
    study = search(params, optuna.storages.InMemoryStorage(), "bench", None)
    seconds = time.perf_counter() - start
    states = [t.state.name for t in study.trials]
    print(
        f"{args.trials} trials in {seconds:.1f} s on {os.cpu_count()} cores "
        f"({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned); "
        f"best cv macro-F1 {study.best_value:.4f}"
    )
    print(
        json.dumps(
            {
                "bench": "tune_speed",
                "trials": args.trials,
                "seconds": round(seconds, 2),
                "cores": os.cpu_count(),
                "best_cv_macro_f1": round(study.best_value, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
