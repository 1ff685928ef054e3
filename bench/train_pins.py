"""What pinning training's CPU numeric paths costs: one epoch of MiniLM on 96 reviews.

    python -m bench.train_pins [--rows 96] [--runs 2]

Each setting trains in a fresh interpreter (the libraries read the variables when they
load): unpinned (the machine's own kernels), pinned as ``train_transformer`` pins
(``sentiment.models.numerics.cpu_pins``), and pinned with MKL's slowest portable branch
(``MKL_CBWR=COMPATIBLE``). Prints seconds per run and the sha256 of the trained weights:
runs of one setting must agree. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from sentiment.models.numerics import cpu_pins

TRAIN = """
import hashlib, json, sys, time
from pathlib import Path
import pandas as pd, torch
from sentiment import paths
from sentiment.models import training as tt
from sentiment.params import load_params
rows = int(sys.argv[1])
pd.read_parquet("data/prepared/train.parquet").head(rows).to_parquet(sys.argv[2])
params = load_params("train_transformer") | {"epochs": 1, "max_train_samples": None}
start = time.perf_counter()
result = tt.train(params, Path(sys.argv[2]), paths.SPLITS["val"])
seconds = time.perf_counter() - start
weights = b"".join(v.numpy().tobytes() for v in result["model"].state_dict().values())
print(json.dumps({"seconds": seconds, "sha256": hashlib.sha256(weights).hexdigest(),
                  "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def settings(threads: int) -> dict[str, dict[str, str | None]]:
    """Environment changes per setting (None removes a variable)."""
    pins = cpu_pins(threads)
    return {
        "unpinned": dict.fromkeys(pins) | {"OMP_NUM_THREADS": str(threads)},
        "pinned": dict(pins),
        "pinned_mkl_compatible": pins | {"MKL_CBWR": "COMPATIBLE"},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    threads = 2
    figures: dict[str, dict] = {}
    for name, changes in settings(threads).items():
        env = {k: v for k, v in os.environ.items() if k not in changes}
        env |= {k: v for k, v in changes.items() if v is not None}
        runs = []
        for run in range(args.runs):
            out = subprocess.run(
                [sys.executable, "-c", TRAIN, str(args.rows), f"/tmp/train-pins-{run}.parquet"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        figures[name] = {
            "seconds": [round(r["seconds"], 1) for r in runs],
            "sha256": sorted({r["sha256"][:16] for r in runs}),
            "capability": runs[0]["capability"],
        }
        print(
            f"{name:22s} seconds {figures[name]['seconds']}  ATen {runs[0]['capability']}  "
            f"weights {', '.join(figures[name]['sha256'])}"
        )
    print(json.dumps({"bench": "train_pins", "cores": os.cpu_count(), **figures}))


if __name__ == "__main__":
    main()
