"""Load test on loopback: the BentoML service vs naive one-text-per-request FastAPI apps.

    python -m bench.serve_load [--seconds 20] [--levels 1 16 64] [--model-dir DIR]

Three servers, one at a time, serve the same model: the naive FastAPI app scoring with
torch (what a user would write first), the same app with ONNX Runtime, and the BentoML
service (ONNX Runtime, adaptive batching, inference log on as deployed). The model is the
promoted one (BentoML store ``sentiment:latest``; run the gate first), or ``--model-dir``
(e.g. ``models/transformer`` or ``models/classical``), exported into a temporary BentoML
store so each flavor can be measured as champion (the backend matters only for a
transformer). Each concurrency level sends single-text ``POST /predict`` requests for
``--seconds`` (bounded), then reports req/s, p50/p99 latency, errors and the CPU cores used
by the server processes and by this load generator (they share the machine); also the
in-process ``predict_proba`` throughput at batch 64 as the ceiling. Last line: one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import psutil

from sentiment.fileio import read_split
from sentiment.models.files import bento_model_dir
from sentiment.models.predictor import load_predictor

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# name: (server, inference backend)
SERVERS = {
    "naive-torch": ("fastapi", "torch"),
    "naive-onnx": ("fastapi", "onnx"),
    "bentoml-onnx": ("bentoml", "onnx"),
}


def launch(kind: str, port: int, log_dir: Path) -> subprocess.Popen:
    server, backend = SERVERS[kind]
    env = {
        **os.environ,
        "SENTIMENT_INFERENCE_LOG": str(log_dir / kind / "predictions.jsonl"),
        "SENTIMENT_INFERENCE_BACKEND": backend,
        "BENTOML_DO_NOT_TRACK": "true",
    }
    cmd = (
        [str(BIN / "bentoml"), "serve", "service:Sentiment"]
        if server == "bentoml"
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


def cpu_seconds(root: psutil.Process) -> float:
    """User + system CPU seconds of a process and all its descendants."""
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def level(
    url: str, bodies: list[bytes], concurrency: int, seconds: float, server: psutil.Process
) -> dict:
    """``concurrency`` closed-loop users, each sending its next request on a reply."""
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def user(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    async with session.post(
                        f"{url}/predict", data=bodies[i % len(bodies)], headers=headers
                    ) as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok
                i += concurrency

        server_cpu, own_cpu = cpu_seconds(server), time.process_time()
        began = time.monotonic()
        await asyncio.gather(*(user(k) for k in range(concurrency)))
        elapsed = time.monotonic() - began
        server_cpu, own_cpu = cpu_seconds(server) - server_cpu, time.process_time() - own_cpu
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "errors": errors,
        "server_cores": round(server_cpu / elapsed, 2),
        "client_cores": round(own_cpu / elapsed, 2),
    }


def use_model_dir(model_dir: Path) -> None:
    """Export a model directory into a temporary BentoML store and serve it from there."""
    home = tempfile.mkdtemp(prefix="serve-load-bentoml-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["BENTOML_HOME"] = home
    from sentiment.models.files import file_digests
    from sentiment.registry.promotion import export_to_bentoml

    os.environ["SENTIMENT_MODEL_TAG"] = export_to_bentoml(
        model_dir, "sentiment", "bench", file_digests(model_dir), {}
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--model-dir", type=Path, help="serve this model directory instead")
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    args = parser.parse_args()
    if args.model_dir:
        use_model_dir(args.model_dir)
    import bentoml  # after use_model_dir: BentoML reads BENTOML_HOME when imported

    texts, _ = read_split("data/prepared/test.parquet")
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    model = bentoml.models.get(os.environ.get("SENTIMENT_MODEL_TAG", "sentiment:latest"))
    predictor = load_predictor(bento_model_dir(model))
    predictor.predict_proba(texts[:64])
    start = time.perf_counter()
    for i in range(0, 512, 64):
        predictor.predict_proba(texts[i : i + 64])
    ceiling = round(512 / (time.perf_counter() - start), 1)
    del predictor

    results: dict[str, dict] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="serve-load-log-"))
    atexit.register(shutil.rmtree, log_dir, ignore_errors=True)
    for kind in args.servers:
        port = free_port()
        proc = launch(kind, port, log_dir)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            server = psutil.Process(proc.pid)
            results[kind] = {
                str(c): asyncio.run(level(url, bodies, c, args.seconds, server))
                for c in args.levels
            }
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)

    print(
        f"model {model.tag} ({model.info.labels.get('flavor')}); in-process ceiling "
        f"{ceiling} texts/s at batch 64; {os.cpu_count()} cores shared by servers and client"
    )
    print(
        f"{'server':12s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'errors':>6s} {'cores':>11s}"
    )
    for kind, by_level in results.items():
        for conc, r in by_level.items():
            print(
                f"{kind:12s} {conc:>4s} {r['req_per_s']:8.1f} {r['p50_ms']:8.1f} "
                f"{r['p99_ms']:8.1f} {r['errors']:6d} "
                f"{r['server_cores']:5.2f}+{r['client_cores']:.2f}"
            )
    ratio = {
        naive: {
            c: round(results["bentoml-onnx"][c]["req_per_s"] / results[naive][c]["req_per_s"], 2)
            for c in results[naive]
        }
        for naive in ("naive-torch", "naive-onnx")
        if naive in results and "bentoml-onnx" in results
    }
    logged = sum(1 for f in (log_dir / "bentoml-onnx").glob("*.jsonl*") for _ in f.open())
    print(f"BentoML / naive req/s: {ratio}  (cores: server+client)")
    print(f"BentoML inference log: {logged} lines")
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
                "ratio_bentoml_to": ratio,
                "bentoml_log_lines": logged,
            }
        )
    )


if __name__ == "__main__":
    main()
