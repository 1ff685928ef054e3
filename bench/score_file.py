"""Batch scoring at scale: texts/s and peak memory of ``python -m sentiment.scoring``.

    python -m bench.score_file [--rows 100000 1000000] [--models DIR ...] [--engines local ray]

Makes CSV files of ``--rows`` reviews by resampling the raw reviews (with their empty and
damaged rows), scores each with each model (default ``models/classical`` and
``models/transformer``) and each engine in a fresh process, and reports rows/s and the peak
RSS summed over that process and every process under it (a local Ray's raylet and workers
included), sampled every 0.2 s. Memory is bounded when the peak does not grow with the file.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

RAW = Path("data/raw/flipkart/reviews.csv")
COLUMN = "Review text"


def make_input(rows: int, folder: Path) -> Path:
    path = folder / f"reviews-{rows}.csv"
    texts = pd.read_csv(RAW, usecols=[COLUMN])[COLUMN]
    texts.sample(rows, replace=True, random_state=0).to_frame().to_csv(path, index=False)
    return path


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


def score(model: str, source: Path, target: Path, engine: str) -> dict:
    """Run the command in a child process; its wall time and peak RSS of its process tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentiment.scoring", "--model", model, "--input", str(source),
         "--output", str(target), "--text-column", COLUMN, "--engine", engine],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"sentiment.scoring failed on {source} with {model} ({engine})")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--models", nargs="+", default=["models/classical", "models/transformer"])
    parser.add_argument("--engines", nargs="+", choices=("local", "ray"), default=["local", "ray"])
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="score-bench-") as folder:
        for rows in args.rows:
            source = make_input(rows, Path(folder))
            for model in args.models:
                for engine in args.engines:
                    out = Path(folder) / ("out.parquet" if engine == "local" else "out-parts")
                    run = score(model, source, out, engine)
                    run["rows_per_s"] = round(rows / run["seconds"], 1)
                    results.setdefault(f"{model} {engine}", {})[str(rows)] = run
                    print(
                        f"{model:22s} {engine:5s} {rows:>9d} rows {run['seconds']:8.1f} s "
                        f"{run['rows_per_s']:9.1f} rows/s  peak RSS {run['peak_rss_mb']:7.1f} MB",
                        flush=True,
                    )
                    if out.is_dir():
                        shutil.rmtree(out)
                    else:
                        out.unlink()
    print(json.dumps({"bench": "score_file", "cores": os.cpu_count(), **results}))


if __name__ == "__main__":
    main()
