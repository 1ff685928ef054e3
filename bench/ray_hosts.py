"""Ray scoring across simulated hosts: rows/s with 1, 2 and 3 worker hosts against one process,
and whether the driver is the cap.

    python -m bench.ray_hosts [--rows 50000] [--workers 1 2 3] [--model models/classical]

Needs root: it uses the tests' hosts harness (``tests/hosts.py``, network namespaces on a
bridge) and their cluster (``tests/test_across_hosts.py``): a Ray head with no CPUs on host a,
N worker hosts with one CPU each, the driver on a (chunks of 4,000 rows). One process scores
the same file first. For each run: wall seconds, rows/s, and the driver's own CPU seconds
(its process, sampled every 0.2 s) as a share of the wall time: a driver busy most of the
time is what limits the cluster. On a machine with fewer cores than hosts, the hosts share
them: the figures then show the machine's cap, not the cluster's. Last line: one JSON object.
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

from tests.hosts import Hosts
from tests.test_across_hosts import Cluster

COLUMN = "Review text"


def cpu_seconds(proc: subprocess.Popen) -> float:
    """Wait for ``proc``; its user+system CPU seconds, sampled until it ends."""
    used = 0.0
    while proc.poll() is None:
        try:
            times = psutil.Process(proc.pid).cpu_times()
            used = times.user + times.system
        except psutil.Error:
            pass
        time.sleep(0.2)
    if proc.returncode:
        raise RuntimeError(f"{proc.args} failed")
    return used


def one_process(model: str, source: Path, target: Path) -> dict:
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "sentiment.scoring", "--model", model, "--input", str(source),
           "--output", str(target), "--text-column", COLUMN, "--chunk-rows", "4000"]  # fmt: skip
    cpu_seconds(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return {"seconds": round(time.perf_counter() - started, 1)}


def on_cluster(workers: int, model: str, source: Path, folder: Path) -> dict:
    names = [chr(ord("b") + i) for i in range(workers)]
    temp = Path(tempfile.mkdtemp(prefix="snt-ray-"))  # short: Ray's socket paths
    try:
        with Hosts(["a", *names], folder / f"logs-{workers}") as hosts:
            cluster = Cluster(hosts, temp, tuple(names))
            cluster.start()
            started = time.perf_counter()
            driver, _ = cluster.score(Path(model), source, folder / f"out-{workers}", "driver")
            driver_cpu = cpu_seconds(driver)
            seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return {"seconds": round(seconds, 1), "driver_busy": round(driver_cpu / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--model", default="models/classical")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ray-hosts-") as name:
        folder = Path(name)
        source = folder / "reviews.parquet"
        texts = pd.read_csv("data/raw/flipkart/reviews.csv", usecols=[COLUMN])[COLUMN]
        texts.sample(args.rows, replace=True, random_state=0).to_frame().to_parquet(source)
        runs = {"one process": lambda: one_process(args.model, source, folder / "one.parquet")}
        for n in args.workers:
            runs[f"ray, {n} worker hosts"] = lambda n=n: on_cluster(n, args.model, source, folder)
        for label, run in runs.items():
            result = run()
            result["rows_per_s"] = round(args.rows / result["seconds"], 1)
            results[label] = result
            print(f"{label:22s} {json.dumps(result)}", flush=True)
    print(json.dumps({"bench": "ray_hosts", "cores": os.cpu_count(), "rows": args.rows, **results}))


if __name__ == "__main__":
    main()
