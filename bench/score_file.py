"""Batch scoring at scale: texts/s and peak memory of ``python -m sentiment.score``.

    python -m bench.score_file [--rows 100000 1000000] [--models DIR ...]

Makes CSV files of ``--rows`` reviews by resampling the raw reviews (with their empty and
damaged rows), scores each with each model (default ``models/classical`` and
``models/transformer``) in a fresh process and reports rows/s and that
process's peak RSS. Memory is bounded when the peak does not grow with the file. Last line:
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

RAW = Path("data/raw/reviews.csv")
COLUMN = "Review text"


def make_input(rows: int, folder: Path) -> Path:
    path = folder / f"reviews-{rows}.csv"
    texts = pd.read_csv(RAW, usecols=[COLUMN])[COLUMN]
    texts.sample(rows, replace=True, random_state=0).to_frame().to_csv(path, index=False)
    return path


def score(model: str, source: Path, target: Path) -> dict:
    """Run the command in a child process; its wall time and peak RSS (from wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentiment.score", "--model", model, "--input", str(source),
         "--output", str(target), "--text-column", COLUMN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"sentiment.score failed on {source} with {model}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--models", nargs="+", default=["models/classical", "models/transformer"])
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="score-bench-") as folder:
        for rows in args.rows:
            source = make_input(rows, Path(folder))
            for model in args.models:
                run = score(model, source, Path(folder) / "out.parquet")
                run["rows_per_s"] = round(rows / run["seconds"], 1)
                results.setdefault(model, {})[str(rows)] = run
                print(
                    f"{model:22s} {rows:>9d} rows {run['seconds']:8.1f} s "
                    f"{run['rows_per_s']:9.1f} rows/s  peak RSS {run['peak_rss_mb']:7.1f} MB",
                    flush=True,
                )
    print(json.dumps({"bench": "score_file", "cores": os.cpu_count(), **results}))


if __name__ == "__main__":
    main()
