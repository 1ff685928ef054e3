"""The BentoML service, started for real on a free loopback port, and `bentoml build`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import httpx
import pytest
import yaml
from bentoml._internal.models import ModelStore

from stages.model_files import save_skops
from tests.conftest import REPO, free_port, stop_group, wait_ready
from tests.test_gate import make_model

BIN = Path(sys.executable).parent


def export_model(home: Path, model_dir: Path) -> None:
    """Export a model directory into the BentoML store at ``home``, as the gate does.

    In a subprocess: BentoML fixes its store when first imported in a process.
    """
    code = (
        "import sys; from pathlib import Path; from stages.gate import export_to_bentoml; "
        "from stages.model_files import file_digests; d = Path(sys.argv[1]); "
        "export_to_bentoml(d, 'sentiment', '7', file_digests(d), {})"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(model_dir)],
        cwd=REPO,
        check=True,
        env={**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(REPO)},
    )


@pytest.fixture(scope="module")
def bento_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary BentoML store holding a tiny classical model exported by the gate code."""
    home = tmp_path_factory.mktemp("bentoml")
    export_model(home, make_model(tmp_path_factory.mktemp("model") / "champion", 6))
    return home


def serve(bento_home: Path, log_dir: Path, **env_extra: str) -> tuple[subprocess.Popen, str]:
    """Start ``bentoml serve`` on a free loopback port; output goes to ``log_dir/server.log``."""
    port = free_port()
    env = {
        **os.environ,
        "BENTOML_HOME": str(bento_home),
        "SENTIMENT_INFERENCE_LOG": str(log_dir / "predictions.jsonl"),
        "PYTHONPATH": str(REPO),
        "BENTOML_DO_NOT_TRACK": "true",
        **env_extra,
    }
    command = ["serve", "service:Sentiment", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [str(BIN / "bentoml"), *command],
        cwd=REPO,
        env=env,
        stdout=(log_dir / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(bento_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """``bentoml serve`` on loopback; yields (base url, inference log path)."""
    log_dir = tmp_path_factory.mktemp("log")
    proc, url = serve(
        bento_home,
        log_dir,
        SENTIMENT_INFERENCE_LOG_MAX_BYTES="3000",
        SENTIMENT_INFERENCE_LOG_BACKUPS="2",
    )
    try:
        wait_ready(proc, f"{url}/readyz", log_dir / "server.log")
        yield url, log_dir / "predictions.jsonl"
    finally:
        stop_group(proc, log_dir / "server.log")


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


TOKEN = "correct horse battery staple"


@pytest.fixture(scope="module")
def auth_server(bento_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """The service with ``SENTIMENT_API_TOKEN`` set (default scope)."""
    log_dir = tmp_path_factory.mktemp("auth")
    proc, url = serve(bento_home, log_dir, SENTIMENT_API_TOKEN=TOKEN)
    try:
        wait_ready(proc, f"{url}/readyz", log_dir / "server.log")
        yield url, log_dir
    finally:
        stop_group(proc, log_dir / "server.log")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": f"Bearer {TOKEN}x"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
        ({"Authorization": f"bearer {TOKEN}"}, 200),
    ],
)
def test_prediction_routes_need_the_token(auth_server, headers: dict, status: int) -> None:
    url, _ = auth_server
    one = httpx.post(f"{url}/predict", json={"text": "good"}, headers=headers, timeout=30)
    many = httpx.post(f"{url}/predict_batch", json={"texts": ["ok"]}, headers=headers, timeout=30)
    assert (one.status_code, many.status_code) == (status, status), one.text
    if status == 401:
        assert one.headers["www-authenticate"] == "Bearer"
        assert one.json() == {"error": "missing or wrong bearer token"}


def test_probes_metrics_and_docs_stay_open_and_declare_the_scheme(auth_server) -> None:
    url, log_dir = auth_server
    for path in ("/readyz", "/livez", "/healthz", "/metrics", "/"):
        assert httpx.get(f"{url}{path}", timeout=10).status_code == 200, path
    spec = httpx.get(f"{url}/docs.json", timeout=10).json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The service's SENTIMENT_API_TOKEN.",
    }
    for path in ("/predict", "/predict_batch"):
        operation = spec["paths"][path]["post"]
        assert operation["security"] == [{"bearerAuth": []}] and "401" in operation["responses"]
    assert "security" not in spec["paths"]["/readyz"]["get"]
    assert TOKEN not in (log_dir / "server.log").read_text()


def test_scope_all_closes_metrics_and_docs(bento_home: Path, tmp_path: Path) -> None:
    proc, url = serve(
        bento_home, tmp_path, SENTIMENT_API_TOKEN=TOKEN, SENTIMENT_API_TOKEN_SCOPE="all"
    )
    try:
        wait_ready(proc, f"{url}/readyz", tmp_path / "server.log")
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/metrics", "/docs.json"):
            assert httpx.get(f"{url}{path}", timeout=10).status_code == 401, path
            assert httpx.get(f"{url}{path}", headers=bearer, timeout=10).status_code == 200
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    finally:
        stop_group(proc, tmp_path / "server.log")


def flip_a_byte(model_dir: Path) -> None:
    data = bytearray((model_dir / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_dir / "model.skops").write_bytes(bytes(data))


def crafted(model_dir: Path) -> None:
    from tests.test_model_files import crafted_pipeline

    (model_dir / "model.skops").unlink()
    save_skops(crafted_pipeline(True), model_dir / "model.skops")


@pytest.mark.parametrize(
    ("tamper", "exported_after", "message"),
    [
        (flip_a_byte, False, "model files differ: model.skops has sha256"),
        (crafted, False, "model files differ: model.skops has sha256"),
        (crafted, True, "refusing to load untrusted types"),
    ],
)
def test_a_tampered_model_stops_the_service(
    tamper, exported_after: bool, message: str, tmp_path: Path
) -> None:
    """Changed after export: the digests catch it. Exported as is: the allowlist does."""
    home = tmp_path / "bentoml"
    model_dir = make_model(tmp_path / "champion", 6)
    if exported_after:
        tamper(model_dir)
    export_model(home, model_dir)
    if not exported_after:
        (stored,) = (home / "models" / "sentiment").glob("*/model")
        tamper(stored)
    # As in the container image: a worker that fails to start is not respawned.
    proc, _ = serve(home, tmp_path, BENTOML_CONTAINERIZED="true")
    try:
        proc.wait(timeout=120)
    finally:
        stop_group(proc, tmp_path / "server.log")
    log = (tmp_path / "server.log").read_text()
    assert proc.returncode != 0 and message in log, log[-3000:]
