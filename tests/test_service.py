"""The BentoML service, started for real on a free loopback port, and `bentoml build`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import httpx
import pytest
import yaml
from bentoml._internal.models import ModelStore

from tests.conftest import REPO
from tests.test_gate import make_model

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def bento_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary BentoML store holding a tiny classical model exported by the gate code.

    Exported in a subprocess: BentoML fixes its store when first imported in a process.
    """
    home = tmp_path_factory.mktemp("bentoml")
    model_dir = make_model(tmp_path_factory.mktemp("model") / "champion", 6)
    code = (
        "import sys; from pathlib import Path; from stages.gate import export_to_bentoml; "
        "export_to_bentoml(Path(sys.argv[1]), 'sentiment', '7', {})"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(model_dir)],
        cwd=REPO,
        check=True,
        env={**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(REPO)},
    )
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(bento_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """``bentoml serve`` on loopback; yields (base url, inference log path)."""
    log = tmp_path_factory.mktemp("log") / "predictions.jsonl"
    server_log = log.parent / "server.log"
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bento_home),
        "SENTIMENT_INFERENCE_LOG": str(log),
        "SENTIMENT_INFERENCE_LOG_MAX_BYTES": "3000",
        "SENTIMENT_INFERENCE_LOG_BACKUPS": "2",
        "PYTHONPATH": str(REPO),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    proc = subprocess.Popen(
        [
            str(BIN / "bentoml"),
            "serve",
            "service:Sentiment",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=server_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"bentoml serve exited: {server_log.read_text()[-3000:]}")
            time.sleep(0.5)
        else:
            pytest.fail("service not ready within 120 s")
        yield url, log
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_predict_and_predict_batch(server) -> None:
    url, _ = server
    one = httpx.post(f"{url}/predict", json={"text": "great shuttle, lovely"}, timeout=30)
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["label"] == "positive" and 0.5 <= body["score"] <= 1
    assert body["model_version"] == "7"
    many = httpx.post(
        f"{url}/predict_batch",
        json={"texts": ["worst shuttle", "good shuttle", "fake, broken"]},
        timeout=30,
    )
    assert many.status_code == 200, many.text
    assert [p["label"] for p in many.json()] == ["negative", "positive", "negative"]


BAD_REQUESTS = [
    ("/predict", {"json": {"text": ""}}),
    ("/predict", {"json": {"text": "   \n"}}),
    ("/predict", {"json": {"text": 123}}),
    ("/predict", {"json": {"text": None}}),
    ("/predict", {"json": {"text": "x" * 5001}}),
    ("/predict", {"json": {}}),
    ("/predict", {"json": {"text": "good", "extra": 1}}),
    ("/predict", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("/predict", {"content": b"good shuttle", "headers": {"content-type": "text/plain"}}),
    ("/predict_batch", {"json": {"texts": []}}),
    ("/predict_batch", {"json": {"texts": ["good"] * 257}}),
    ("/predict_batch", {"json": {"texts": ["good", ""]}}),
    ("/predict_batch", {"json": {"texts": "good"}}),
    ("/predict_batch", {"json": {"texts": ["good", 5]}}),
]


@pytest.mark.parametrize(("route", "request_kwargs"), BAD_REQUESTS)
def test_bad_input_is_a_client_error(server, route: str, request_kwargs: dict) -> None:
    url, _ = server
    response = httpx.post(f"{url}{route}", timeout=30, **request_kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


def test_bad_requests_do_not_disturb_concurrent_good_ones(server) -> None:
    url, _ = server

    def call(i: int) -> int:
        payload = {"text": "good shuttle"} if i % 2 else {"text": ""}
        return httpx.post(f"{url}/predict", json=payload, timeout=60).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(call, range(64)))
    assert codes[1::2] == [200] * 32
    assert set(codes[0::2]) == {400}
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_a_sustained_burst_keeps_every_answer_with_its_request(server) -> None:
    """400 single texts at concurrency 32: batched together, answered apart, none lost."""
    url, log = server
    texts = ["good shuttle, lovely", "worst shuttle, broken"]
    server_log = log.parent / "server.log"
    logged_before = server_log.stat().st_size

    def call(i: int) -> tuple[int, str]:
        response = httpx.post(f"{url}/predict", json={"text": texts[i % 2]}, timeout=60)
        return response.status_code, response.json().get("label", "")

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(call, range(400)))
    assert [code for code, _ in answers] == [200] * 400
    assert [label for _, label in answers] == ["positive", "negative"] * 200
    with server_log.open() as lines:
        lines.seek(logged_before)
        assert "Traceback" not in lines.read()


def test_metrics_docs_and_inference_log(server) -> None:
    url, log = server
    texts = [f"good shuttle number {i}" for i in range(40)]
    assert httpx.post(f"{url}/predict_batch", json={"texts": texts}, timeout=60).status_code == 200
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    for name in (
        "sentiment_predictions_total",
        "sentiment_confidence_bucket",
        "sentiment_text_length_chars_bucket",
    ):
        assert name in metrics
    assert httpx.get(f"{url}/", timeout=10).status_code == 200  # Swagger UI
    records = [
        json.loads(line)
        for path in sorted(log.parent.glob("predictions.jsonl*"))
        for line in path.read_text().splitlines()
    ]
    assert {"timestamp", "text", "label", "score", "model_version"} == set(records[-1])
    assert Path(f"{log}.1").exists(), "the log rotates at SENTIMENT_INFERENCE_LOG_MAX_BYTES"
    assert any(r["text"] == "good shuttle number 39" for r in records)


@pytest.mark.slow
def test_bentoml_build(bento_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "bentoml"
    shutil.copytree(bento_home, home)
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.run(
        [str(BIN / "bentoml"), "build", "--output", "tag"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tag = proc.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    bento = home / "bentos" / name / version
    assert (bento / "env" / "docker" / "Dockerfile").is_file()
    packaged = yaml.safe_load((bento / "bento.yaml").read_text())["models"]
    stored = bentoml.models.get("sentiment:latest", _model_store=ModelStore(home / "models"))
    assert [m["tag"] for m in packaged] == [str(stored.tag)], "the promoted model is packaged"
    assert (bento / "src" / "stages" / "predictor.py").is_file()
