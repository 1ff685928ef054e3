"""Load test on loopback: the BentoML service vs the naive one-text-per-request FastAPI apps.

    python -m bench.serve_load [--seconds 20] [--levels 1 16 64]
        [--model-dir models/transformer models/classical] [--service service:Sentiment]
        [--image sentiment-service:latest]

For each model, the servers run one at a time on the same model: the naive FastAPI app
scoring with torch (what a user would write first; a transformer only, the backend means
nothing to a classical model), the same app on ONNX Runtime, and the BentoML service
(inference log on, as deployed); with ``--image``, also that serving image run by
``docker run`` (`make image`: it serves the model it was built with, so build it from the
promoted model; its log goes to a mounted folder). The model is the promoted one (BentoML
store's production, ``sentiment-flipkart:latest``; run the gate first) or each ``--model-dir``,
exported into a temporary BentoML store, so each flavor can be measured as champion. Each
concurrency level sends single-text ``POST /predict`` requests from closed-loop users for
``--seconds``, then reports req/s, p50/p99 latency, errors, the CPU cores used by the server
processes and by this load generator (they share the machine), and for the service the batches
its batcher formed (its ``sentiment_batch_size`` histogram, read from ``/metrics``). The
in-process ceiling is ``predict_proba``'s texts/s at batch 64 in this process. It ends with
the README's serving table (Markdown) and one JSON line.
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
from sentiment.params import production_tag

BIN = Path(sys.executable).parent
BATCH_HISTOGRAM = "sentiment_batch_size"
WARM_UP = "a warm-up request of bench.serve_load"
# name: (server, inference backend, row label in the table)
SERVERS = {
    "naive-torch": ("fastapi", "torch", "naive FastAPI, torch"),
    "naive-onnx": ("fastapi", "onnx", "naive FastAPI, the same predictor"),
    "service": ("bentoml", "onnx", "the BentoML service"),
    "image": ("docker", "onnx", "the service image (docker run)"),
}
LOGGED = ("service", "image")  # the servers with the inference log


class Server:
    """A server process started for one run: its root process id, whether it is still up,
    and how it is stopped (a process group, or a container)."""

    def __init__(self, url: str, proc: subprocess.Popen | None = None, container: str = "") -> None:
        self.url, self.proc, self.container = url, proc, container
        self.pid = proc.pid if proc else int(docker("inspect", "-f", "{{.State.Pid}}", container))

    def exited(self) -> bool:
        if self.proc:
            return self.proc.poll() is not None
        try:
            return docker("inspect", "-f", "{{.State.Running}}", self.container) != "true"
        except subprocess.CalledProcessError:  # --rm: gone
            return True

    def stop(self) -> None:
        if self.proc:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=30)
        else:
            docker("stop", self.container)


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(kind: str, tag: str, args: argparse.Namespace, log_dir: Path) -> Server:
    server, backend, _ = SERVERS[kind]
    if server == "docker":  # reached at its bridge address: no port publishing proxy in between
        log_dir.chmod(0o777)  # the image's user writes the log there
        volume = f"{log_dir}:/home/bentoml/inference-log"
        container = docker("run", "--detach", "--rm", "-v", volume, args.image)
        address = docker(
            "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
        )
        return Server(f"http://{address}:3000", container=container)
    port = free_port()
    env = {
        **os.environ,
        "SENTIMENT_MODEL_TAG": tag,
        "SENTIMENT_INFERENCE_LOG": str(log_dir / "predictions.jsonl"),
        "SENTIMENT_INFERENCE_BACKEND": backend,
        "BENTOML_DO_NOT_TRACK": "true",
    }
    cmd = (
        [str(BIN / "bentoml"), "serve", args.service]
        if server == "bentoml"
        else [str(BIN / "uvicorn"), "bench.naive_fastapi:app", "--log-level", "warning"]
    )
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Server(f"http://127.0.0.1:{port}", proc)


def wait_ready(url: str, server: Server, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.exited():
            raise RuntimeError(f"{url}: the server exited")
        try:
            answer = httpx.post(f"{url}/predict", json={"text": WARM_UP}, timeout=5)
            if answer.status_code == 200:
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


def batch_buckets(url: str) -> dict[float, float]:
    """Cumulative counts of the service's batch-size histogram (all series summed), by
    upper bound; empty for a server without one."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{BATCH_HISTOGRAM}_bucket{{"):
            labels, value = line.rsplit(" ", 1)
            bound = float(labels.split('le="', 1)[1].split('"', 1)[0])
            buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def batch_summary(before: dict[float, float], after: dict[float, float]) -> dict | None:
    """Batches formed between two readings: how many, and the bucket bounds that hold
    half of them and all of them."""
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = delta.get(float("inf"), 0.0)
    if not total:
        return None

    def bound_holding(share: float) -> float:
        return next(b for b, n in delta.items() if n >= share * total)

    return {
        "batches": int(total),
        "p50_at_most": bound_holding(0.5),
        "max_at_most": bound_holding(1),
    }


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
    before = batch_buckets(url)
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
        "batches": batch_summary(before, batch_buckets(url)),
    }


def export_models(model_dirs: list[Path]) -> list[str]:
    """Export model directories into a temporary BentoML store (the process then reads it)."""
    home = tempfile.mkdtemp(prefix="serve-load-bentoml-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["BENTOML_HOME"] = home
    from sentiment.models.trust import file_digests
    from sentiment.registry.store import export_to_bentoml

    return [
        export_to_bentoml(d, "sentiment", f"bench-{d.name}", file_digests(d), {})
        for d in model_dirs
    ]


def ceiling(tag: str, texts: list[str]) -> float:
    """The model alone, in this process: texts/s scoring batches of 64."""
    import bentoml

    from sentiment.models.predictor import load_predictor
    from sentiment.models.trust import bento_model_dir

    predictor = load_predictor(bento_model_dir(bentoml.models.get(tag)))
    predictor.predict_proba(texts[:64])
    start = time.perf_counter()
    for i in range(0, 512, 64):
        predictor.predict_proba(texts[i : i + 64])
    return round(512 / (time.perf_counter() - start), 1)


def measure(tag: str, kinds: list[str], args: argparse.Namespace, texts: list[str]) -> dict:
    """Every server on one model, one after the other."""
    import bentoml

    model = bentoml.models.get(tag)
    flavor = model.info.labels.get("flavor")
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    result: dict = {"model": tag, "flavor": flavor, "in_process_texts_per_s": ceiling(tag, texts)}
    for kind in kinds:
        if kind == "naive-torch" and flavor != "transformer":
            continue
        log_dir = Path(tempfile.mkdtemp(prefix=f"serve-load-{kind}-"))
        atexit.register(shutil.rmtree, log_dir, ignore_errors=True)
        server = launch(kind, tag, args, log_dir)
        url = server.url
        try:
            wait_ready(url, server)
            root = psutil.Process(server.pid)
            result[kind] = {
                str(c): asyncio.run(level(url, bodies, c, args.seconds, root)) for c in args.levels
            }
        finally:
            server.stop()
        if kind in LOGGED:
            sent = sum(r["requests"] for r in result[kind].values())
            lines = sum(  # a warm-up that timed out may have been scored too: not counted
                WARM_UP not in line for f in log_dir.glob("*.jsonl*") for line in f.open()
            )
            result[f"{kind}_log"] = {"requests": sent, "lines": lines}
    if "service" in result:
        result["ratio"] = {
            naive: {
                c: round(result["service"][c]["req_per_s"] / result[naive][c]["req_per_s"], 2)
                for c in result[naive]
            }
            for naive in ("naive-torch", "naive-onnx")
            if naive in result
        }
        result["share_of_ceiling"] = {
            c: round(r["req_per_s"] / result["in_process_texts_per_s"], 2)
            for c, r in result["service"].items()
        }
    return result


def print_tables(result: dict) -> None:
    print(
        f"\nmodel {result['model']} ({result['flavor']}); in-process ceiling "
        f"{result['in_process_texts_per_s']} texts/s at batch 64"
    )
    print(
        f"{'server':12s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'errors':>6s} {'cores srv+cli':>13s}  batches (n, p50 <=, max <=)"
    )
    for kind in SERVERS:
        for conc, r in result.get(kind, {}).items():
            b = r["batches"]
            formed = f"{b['batches']}, {b['p50_at_most']:g}, {b['max_at_most']:g}" if b else ""
            print(
                f"{kind:12s} {conc:>4s} {r['req_per_s']:8.1f} {r['p50_ms']:8.1f} "
                f"{r['p99_ms']:8.1f} {r['errors']:6d} "
                f"{r['server_cores']:7.2f}+{r['client_cores']:.2f}  {formed}"
            )
    print(f"service / naive req/s: {result.get('ratio')}")
    print(f"service req/s / in-process ceiling: {result.get('share_of_ceiling')}")
    for kind in LOGGED:
        if kind in result:
            print(f"{kind} inference log: {result[f'{kind}_log']}")
    if "image" in result:
        image_ratio = {
            c: round(r["req_per_s"] / result["service"][c]["req_per_s"], 2)
            for c, r in result["image"].items()
        }
        print(f"image / service req/s: {image_ratio}")
    if "service" in result:
        print(f"\n{markdown(result)}")


def markdown(result: dict) -> str:
    """The serving table of one model (the README's, for the transformer): req/s (p99) by
    server and level, the service's ratios to the naive apps and its share of the ceiling."""
    levels = list(result["service"])
    rows = [(result["flavor"], [f"c={c}" for c in levels]), ("---", ["---"] * len(levels))]
    for kind, (*_, label) in SERVERS.items():
        if kind in result:
            by_level = result[kind].values()
            rows.append(
                (label, [f"{r['req_per_s']:,.1f} (p99 {r['p99_ms']:,.0f} ms)" for r in by_level])
            )
    for naive, by_level in result["ratio"].items():
        rows.append((f"service / {naive}", [f"{x:.2f}x" for x in by_level.values()]))
    shares = result["share_of_ceiling"].values()
    rows.append(("share of the in-process ceiling", [f"{x:.0%}" for x in shares]))
    return "\n".join("| " + " | ".join([label, *cells]) + " |" for label, cells in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--model-dir", type=Path, nargs="+", help="serve these model directories")
    parser.add_argument(
        "--servers", nargs="+", choices=list(SERVERS), default=[k for k in SERVERS if k != "image"]
    )
    parser.add_argument("--image", help="also run this serving image (make image's tag)")
    parser.add_argument(
        "--service", default="service:Sentiment", help="the BentoML service to serve (module:Class)"
    )
    parser.add_argument(
        "--save", type=Path, help="also write the JSON here (bench/serve_load.json)"
    )
    args = parser.parse_args()
    if args.image and "image" not in args.servers:
        args.servers.append("image")
    elif "image" in args.servers and not args.image:
        parser.error("--servers image needs --image TAG")
    if args.image and args.model_dir:
        parser.error("--image serves the model it was built with: leave out --model-dir")
    tags = export_models(args.model_dir) if args.model_dir else [production_tag()]
    texts, _ = read_split("data/prepared/test.parquet")
    results = [measure(tag, args.servers, args, texts) for tag in tags]
    print(f"\n{os.cpu_count()} cores shared by servers and client; {args.seconds:g} s a level")
    for result in results:
        print_tables(result)
    run = {
        "bench": "serve_load",
        "command": " ".join(["python -m bench.serve_load", *sys.argv[1:]]),
        "cores": os.cpu_count(),
        "seconds_per_level": args.seconds,
        "service": args.service,
        "models": results,
    }
    if args.save:
        args.save.write_text(json.dumps(run, indent=1) + "\n")
    print(json.dumps(run))


if __name__ == "__main__":
    main()
