"""Load test on loopback: the BentoML service vs a naive one-text-per-request FastAPI app.

    python -m bench.serve_load [--seconds 20] [--levels 1 16 64]

Both serve the promoted model (BentoML store ``sentiment:latest``; run the gate first).
Each concurrency level sends single-text ``POST /predict`` requests for ``--seconds``
(bounded), then reports req/s, p50/p99 latency and errors; also the in-process
``predict_proba`` throughput at batch 64 as the ceiling. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import bentoml
import httpx
import numpy as np

from stages.common import read_split
from stages.predictor import load_predictor

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(kind: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "SENTIMENT_INFERENCE_LOG": "off", "BENTOML_DO_NOT_TRACK": "true"}
    cmd = (
        [str(BIN / "bentoml"), "serve", "service:Sentiment"]
        if kind == "bentoml"
        else [str(BIN / "uvicorn"), "bench.naive_fastapi:app", "--log-level", "warning"]
    )
    return subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.post(f"{url}/predict", json={"text": "warm up"}, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


async def level(url: str, texts: list[str], concurrency: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def user(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    response = await client.post(
                        f"{url}/predict", json={"text": texts[i % len(texts)]}
                    )
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok
                i += concurrency

        began = time.monotonic()
        await asyncio.gather(*(user(k) for k in range(concurrency)))
        elapsed = time.monotonic() - began
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    texts, _ = read_split("data/prepared/test.parquet")
    model = bentoml.models.get(os.environ.get("SENTIMENT_MODEL_TAG", "sentiment:latest"))
    predictor = load_predictor(model.path)
    predictor.predict_proba(texts[:64])
    start = time.perf_counter()
    for i in range(0, 512, 64):
        predictor.predict_proba(texts[i : i + 64])
    ceiling = round(512 / (time.perf_counter() - start), 1)
    del predictor

    results: dict[str, dict] = {}
    for kind in ("bentoml", "fastapi"):
        port = free_port()
        proc = launch(kind, port)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            results[kind] = {
                str(c): asyncio.run(level(url, texts, c, args.seconds)) for c in args.levels
            }
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)

    print(
        f"model {model.tag} ({model.info.labels.get('flavor')}); in-process ceiling "
        f"{ceiling} texts/s at batch 64"
    )
    print(f"{'server':8s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'errors':>6s}")
    for kind, by_level in results.items():
        for conc, r in by_level.items():
            print(
                f"{kind:8s} {conc:>4s} {r['req_per_s']:8.1f} {r['p50_ms']:8.1f} "
                f"{r['p99_ms']:8.1f} {r['errors']:6d}"
            )
    ratio = {
        c: round(results["bentoml"][c]["req_per_s"] / results["fastapi"][c]["req_per_s"], 2)
        for c in results["bentoml"]
    }
    print(f"BentoML / FastAPI req/s: {ratio}")
    print(
        json.dumps(
            {
                "bench": "serve_load",
                "model": str(model.tag),
                "flavor": model.info.labels.get("flavor"),
                "cores": os.cpu_count(),
                "in_process_texts_per_s": ceiling,
                "seconds_per_level": args.seconds,
                **results,
                "ratio_bentoml_to_fastapi": ratio,
            }
        )
    )


if __name__ == "__main__":
    main()
