"""The BentoML service, started for real on a free loopback port, and `bentoml build`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bentoml
import httpx
import numpy as np
import psutil
import pytest
import yaml
from bentoml._internal.models import ModelStore
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from sentiment.models.predictor import INVARIANCE_BOUND, save_classical
from sentiment.models.trust import MODEL_CARD_KEY, save_skops
from sentiment.params import production_tag
from tests.conftest import REPO, free_port, slow_post, stop_group, wait_ready
from tests.test_gate import make_model
from tests.test_invariance import transformer_dir  # noqa: F401 (a fixture)
from tests.test_onnx import varied_texts

BIN = Path(sys.executable).parent
# httpx builds a TLS context (loading the CA bundle: ~40 ms of CPU) for every top-level
# call. These are plain-HTTP loopback calls, up to 800 in a test, competing with the server
# for the same cores: they share one context.
TLS = ssl.create_default_context()
PRODUCTION = production_tag()  # what the service serves unless told: sentiment-flipkart:latest
BENTO_MODEL = PRODUCTION.split(":")[0]
CARD = "---\nlicense: cc0-1.0\n---\n\n# Model card: classical@7\n\nNot for medical reviews: ü ✓\n"


def post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url, verify=TLS, **kwargs)


def get(url: str, **kwargs) -> httpx.Response:
    return httpx.get(url, verify=TLS, **kwargs)


def export_model(home: Path, model_dir: Path, version: str = "7", card: str | None = None) -> None:
    """Export a model directory into the BentoML store at ``home``, as the gate does, as
    registry version ``version``, with its model card when given one.

    In a subprocess: BentoML fixes its store when first imported in a process.
    """
    code = (
        "import json, sys; from pathlib import Path; "
        "from sentiment.registry.store import export_to_bentoml; "
        "from sentiment.models.trust import file_digests; d = Path(sys.argv[1]); "
        "export_to_bentoml(d, sys.argv[4], sys.argv[2], file_digests(d), json.loads(sys.argv[3]))"
    )
    extra = {MODEL_CARD_KEY: card} if card is not None else {}
    subprocess.run(
        [sys.executable, "-c", code, str(model_dir), version, json.dumps(extra), BENTO_MODEL],
        cwd=REPO,
        check=True,
        env={**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(REPO)},
    )


@pytest.fixture(scope="module")
def bento_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary BentoML store holding a tiny classical model exported by the gate code."""
    home = tmp_path_factory.mktemp("bentoml")
    export_model(home, make_model(tmp_path_factory.mktemp("model") / "champion", 6), card=CARD)
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
    """``bentoml serve`` on loopback with two workers; yields (base url, inference log
    path as configured, the server process)."""
    log_dir = tmp_path_factory.mktemp("log")
    proc, url = serve(
        bento_home,
        log_dir,
        SENTIMENT_WORKERS="2",
        SENTIMENT_INFERENCE_LOG_MAX_BYTES="30000",
        SENTIMENT_INFERENCE_LOG_BACKUPS="20",
    )
    try:
        wait_ready(proc, f"{url}/readyz", log_dir / "server.log")
        yield url, log_dir / "predictions.jsonl", proc
    finally:
        stop_group(proc, log_dir / "server.log")


def logged(log: Path) -> list[dict]:
    """Every record of every worker's inference log, rotated files included."""
    return [
        json.loads(line)
        for path in sorted(log.parent.glob(f"{log.stem}.worker-*{log.suffix}*"))
        for line in path.read_text().splitlines()
    ]


def tree_rss(proc: subprocess.Popen) -> int:
    """Resident memory of a server and all its processes, in bytes."""
    root = psutil.Process(proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def counter(url: str, name: str) -> float:
    """A Prometheus counter's value on the service's /metrics (summed over its series)."""
    text = get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{"))
    )


@pytest.mark.slow
def test_predict_and_predict_batch(server) -> None:
    url, *_ = server
    one = post(f"{url}/predict", json={"text": "great shuttle, lovely"}, timeout=30)
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["label"] == "positive" and 0.5 <= body["score"] <= 1
    assert body["model_version"] == "7"
    many = post(
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
    ("/predict", {"content": b'{"text": "good"}', "headers": {"content-type": "text/plain"}}),
    (
        "/predict",
        {"content": b'{"text": "ok"}', "headers": {"content-type": "multipart/form-data"}},
    ),
    ("/predict_batch", {"files": {"texts": ("a.txt", b"good")}}),
    ("/predict", {"json": {"text": "\u200b\u200d"}}),
    ("/predict", {"json": {"text": "\x00"}}),
    ("/predict", {"json": {"text": "\ufeff \x07"}}),
    ("/predict_batch", {"json": {"texts": []}}),
    ("/predict_batch", {"json": {"texts": ["good"] * 257}}),
    ("/predict_batch", {"json": {"texts": ["good", ""]}}),
    ("/predict_batch", {"json": {"texts": "good"}}),
    ("/predict_batch", {"json": {"texts": ["good", 5]}}),
]


@pytest.mark.parametrize(("route", "request_kwargs"), BAD_REQUESTS)
def test_bad_input_is_a_client_error_in_one_shape(server, route: str, request_kwargs: dict) -> None:
    url, *_ = server
    response = post(f"{url}{route}", timeout=30, **request_kwargs)
    assert response.status_code in (400, 415), (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "detail"} and "\n" not in body["error"], body
    assert all(set(d) == {"loc", "msg"} for d in body["detail"]), body


@pytest.mark.parametrize("text", ["\u200b", "\x00", "\ufeff", "\x07\x1b \u200d", "READ MORE"])
def test_a_text_with_nothing_to_score_is_refused_on_both_routes(server, text: str) -> None:
    url, *_ = server
    one = post(f"{url}/predict", json={"text": text}, timeout=30)
    assert one.status_code == 400 and "nothing to score" in one.json()["error"], one.text
    many = post(f"{url}/predict_batch", json={"texts": ["good", text, "bad"]}, timeout=30)
    assert many.status_code == 400, many.text
    assert [d["loc"] for d in many.json()["detail"]] == [["texts", 1]]
    assert many.json()["error"].startswith("texts.1: nothing to score")


def test_only_json_is_accepted(server) -> None:
    url, *_ = server
    body = b'{"text": "good shuttle"}'
    for media, status in [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("text/plain", 415),
        ("multipart/form-data", 415),
        ("application/x-www-form-urlencoded", 415),
    ]:
        response = post(f"{url}/predict", content=body, headers={"content-type": media}, timeout=30)
        assert response.status_code == status, (media, response.text)


def test_a_body_over_the_limit_is_refused_without_being_read(server) -> None:
    url, _, proc = server
    declared = post(
        f"{url}/predict", json={"text": "x" * (2**20 + 1)}, timeout=30
    )  # Content-Length says it all
    assert declared.status_code == 413 and "SENTIMENT_MAX_BODY_BYTES" in declared.json()["error"]
    before = tree_rss(proc)

    def stream():  # 64 MiB with no Content-Length: refused after the first MiB
        for _ in range(64):
            yield b" " * 2**20

    try:
        streamed = post(
            f"{url}/predict",
            content=stream(),
            headers={"content-type": "application/json"},
            timeout=60,
        )
        assert streamed.status_code == 413
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the server answered 413 and closed the connection mid-upload
    assert tree_rss(proc) - before < 32 * 2**20
    assert get(f"{url}/readyz", timeout=10).status_code == 200


@pytest.mark.slow
def test_a_slow_client_sending_3_mb_reads_the_413(server) -> None:
    """The server reads and drops the rest of an oversized body before it answers, so a
    client still sending gets the 413, not a reset (10 tries)."""
    url, *_ = server
    for _ in range(10):
        status, body = slow_post(url, "/predict", 3 * 2**20)
        assert status == 413 and b"SENTIMENT_MAX_BODY_BYTES" in body
    assert get(f"{url}/readyz", timeout=10).status_code == 200


def test_bad_requests_do_not_disturb_concurrent_good_ones(server) -> None:
    url, *_ = server

    def call(i: int) -> int:
        payload = {"text": "good shuttle"} if i % 2 else {"text": ""}
        return post(f"{url}/predict", json=payload, timeout=60).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(call, range(64)))
    assert codes[1::2] == [200] * 32
    assert set(codes[0::2]) == {400}
    assert get(f"{url}/healthz", timeout=5).status_code == 200


def test_a_sustained_burst_keeps_every_answer_with_its_request(server) -> None:
    """400 single texts at concurrency 32: batched together, answered apart, none lost."""
    url, log, _ = server
    texts = ["good shuttle, lovely", "worst shuttle, broken"]
    server_log = log.parent / "server.log"
    logged_before = server_log.stat().st_size

    def call(i: int) -> tuple[int, str]:
        response = post(f"{url}/predict", json={"text": texts[i % 2]}, timeout=60)
        return response.status_code, response.json().get("label", "")

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(call, range(400)))
    assert [code for code, _ in answers] == [200] * 400
    assert [label for _, label in answers] == ["positive", "negative"] * 200
    with server_log.open() as lines:
        lines.seek(logged_before)
        assert "Traceback" not in lines.read()


def test_metrics_docs_and_inference_log(server) -> None:
    url, log, _ = server
    texts = [f"good shuttle number {i}" for i in range(40)]
    assert post(f"{url}/predict_batch", json={"texts": texts}, timeout=60).status_code == 200
    metrics = get(f"{url}/metrics", timeout=10).text
    for name in (
        "sentiment_predictions_total",
        "sentiment_confidence_bucket",
        "sentiment_text_length_chars_bucket",
    ):
        assert name in metrics
    assert get(f"{url}/", timeout=10).status_code == 200  # Swagger UI
    records = logged(log)
    assert {"timestamp", "text", "label", "score", "model_version"} == set(records[-1])
    assert any(r["text"] == "good shuttle number 39" for r in records)


def test_the_model_card_is_served_and_declared(server) -> None:
    url, *_ = server
    card = get(f"{url}/model/card", timeout=10)
    assert card.status_code == 200 and card.text == CARD
    assert card.headers["content-type"] == "text/markdown; charset=utf-8"
    operation = get(f"{url}/docs.json", timeout=10).json()["paths"]["/model/card"]["get"]
    assert "The card of the model answering now" in operation["description"]
    assert set(operation["responses"]) == {"200", "404"}
    assert "text/markdown" in operation["responses"]["200"]["content"]


def test_two_workers_log_every_request_once_redacted_and_rotated(server) -> None:
    """500 concurrent requests on two workers: 500 whole JSON lines, one per request,
    personal data replaced, each worker rotating its own file; the model scores 500 texts."""
    url, log, _ = server
    scored = counter(url, "sentiment_model_texts_total")

    def call(i: int) -> int:
        text = f"review {i}: mail me at buyer{i}@example.com or +91 98765 4{i:04d}, good"
        return post(f"{url}/predict", json={"text": text}, timeout=120).status_code

    with ThreadPoolExecutor(50) as pool:
        assert list(pool.map(call, range(500))) == [200] * 500
    records = [r for r in logged(log) if ": mail me at" in r["text"]]  # parsed: none mixed
    assert len(records) == 500
    assert sorted(int(r["text"].split(":")[0].split()[1]) for r in records) == list(range(500))
    assert all("@" not in r["text"] and "98765" not in r["text"] for r in records)
    assert "mail me at <email> or <phone>, good" in records[0]["text"]
    assert list(log.parent.glob(f"{log.stem}.worker-*{log.suffix}.1")), "rotated per worker"
    assert counter(url, "sentiment_model_texts_total") - scored == 500  # nothing scored twice


def test_the_drift_check_reads_every_worker_log(server, tmp_path: Path) -> None:
    from sentiment.monitoring.logs import read_current

    url, log, _ = server
    assert post(f"{url}/predict", json={"text": "fine"}, timeout=30).status_code == 200
    assert len(read_current(log.parent)) == len(logged(log))


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
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    packaged = [m["tag"] for m in info["models"]] + [  # the service's model_ref
        m["tag"] for service in info["services"] for m in service["models"]
    ]
    stored = bentoml.models.get(PRODUCTION, _model_store=ModelStore(home / "models"))
    assert packaged == [str(stored.tag)], "the promoted model is packaged"
    assert (bento / "src" / "sentiment" / "models" / "predictor.py").is_file()
    # nothing else: not the copies of the library in mlartifacts/**/code/sentiment
    assert sorted(p.name for p in (bento / "src").iterdir()) == [
        "bentofile.yaml",
        "params.yaml",
        "sentiment",
        "service.py",
    ]
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements and "torch" not in requirements  # the serving lock


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
@pytest.mark.slow
def test_prediction_routes_need_the_token(auth_server, headers: dict, status: int) -> None:
    url, _ = auth_server
    one = post(f"{url}/predict", json={"text": "good"}, headers=headers, timeout=30)
    many = post(f"{url}/predict_batch", json={"texts": ["ok"]}, headers=headers, timeout=30)
    assert (one.status_code, many.status_code) == (status, status), one.text
    if status == 401:
        assert one.headers["www-authenticate"] == "Bearer"
        assert one.json() == {"error": "missing or wrong bearer token"}


def test_probes_metrics_and_docs_stay_open_and_declare_the_scheme(auth_server) -> None:
    url, log_dir = auth_server
    for path in ("/readyz", "/livez", "/healthz", "/metrics", "/", "/model/card"):
        assert get(f"{url}{path}", timeout=10).status_code == 200, path
    spec = get(f"{url}/docs.json", timeout=10).json()
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


@pytest.mark.slow
def test_scope_all_closes_metrics_and_docs(bento_home: Path, tmp_path: Path) -> None:
    proc, url = serve(
        bento_home, tmp_path, SENTIMENT_API_TOKEN=TOKEN, SENTIMENT_API_TOKEN_SCOPE="all"
    )
    try:
        wait_ready(proc, f"{url}/readyz", tmp_path / "server.log")
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/metrics", "/docs.json", "/model/card"):
            assert get(f"{url}{path}", timeout=10).status_code == 401, path
            assert get(f"{url}{path}", headers=bearer, timeout=10).status_code == 200
        assert get(f"{url}/readyz", timeout=10).status_code == 200
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


LOAD_AS_THE_SERVICE_DOES = (
    "import bentoml; from sentiment.models.trust import bento_model_dir; "
    "from sentiment.models.predictor import load_predictor; "
    f"load_predictor(bento_model_dir(bentoml.models.get({PRODUCTION!r})))"
)


@pytest.mark.parametrize(
    ("tamper", "exported_after", "message", "served"),
    [
        (flip_a_byte, False, "model files differ: model.skops has sha256", False),
        (crafted, False, "model files differ: model.skops has sha256", False),
        (crafted, True, "refusing to load untrusted types", True),
    ],
)
@pytest.mark.slow
def test_a_tampered_model_stops_the_service(
    tamper, exported_after: bool, message: str, served: bool, tmp_path: Path
) -> None:
    """Changed after export: the digests catch it. Exported as is: the allowlist does.
    One case starts the real server; the others run the loading code the service
    runs at start (``Sentiment.__init__``), in a fresh process."""
    home = tmp_path / "bentoml"
    model_dir = make_model(tmp_path / "champion", 6)
    if exported_after:
        tamper(model_dir)
    export_model(home, model_dir)
    if not exported_after:
        (stored,) = (home / "models" / BENTO_MODEL).glob("*/model")
        tamper(stored)
    if not served:
        done = subprocess.run(
            [sys.executable, "-c", LOAD_AS_THE_SERVICE_DOES],
            cwd=REPO,
            capture_output=True,
            text=True,
            env={**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(REPO)},
        )
        assert done.returncode != 0 and message in done.stderr, done.stderr[-3000:]
        return
    # As in the container image: a worker that fails to start is not respawned.
    proc, _ = serve(home, tmp_path, BENTOML_CONTAINERIZED="true")
    try:
        proc.wait(timeout=120)
    finally:
        stop_group(proc, tmp_path / "server.log")
    log = (tmp_path / "server.log").read_text()
    assert proc.returncode != 0 and message in log, log[-3000:]


def test_300_concurrent_good_bad_and_oversized_requests(server) -> None:
    """Every good request 200 with the right shape, every bad one 4xx, none 5xx, still ready."""
    url, *_ = server
    requests = {
        "good": ({"json": {"text": "good shuttle"}}, 200),
        "bad": ({"json": {"text": ["not", "a", "string"]}}, 400),
        "blank": ({"json": {"text": "\u200b"}}, 400),
        "oversized": ({"json": {"text": "x" * (2**20 + 1)}}, 413),
        "form": ({"data": {"text": "good"}}, 415),
    }
    kinds = [list(requests)[i % len(requests)] for i in range(300)]

    def call(kind: str) -> tuple[str, int, dict]:
        kwargs, _ = requests[kind]
        response = post(f"{url}/predict", timeout=120, **kwargs)
        return kind, response.status_code, response.json()

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(call, kinds))
    for kind, status, body in answers:
        assert status == requests[kind][1], (kind, status, body)
        keys = {"label", "score", "model_version"} if status == 200 else {"error", "detail"}
        assert set(body) == keys, (kind, body)
    assert get(f"{url}/readyz", timeout=10).status_code == 200


@pytest.mark.slow
def test_the_service_passes_schemathesis_against_its_own_document(server, tmp_path: Path) -> None:
    """Every operation of /docs.json fuzzed: no 5xx, responses as declared, schema-valid
    requests accepted, invalid ones and undeclared media types refused (bounded examples)."""
    url, *_ = server
    run = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{url}/docs.json",
            "--checks",
            "all",
            "--max-examples",
            "100",
            "--seed",
            "42",
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested: 7" in run.stdout and "No issues found" in run.stdout, run.stdout[-3000:]


def ternary_model(path: Path) -> Path:
    """A classical model with three classes (as ``prepare.label_scheme: ternary`` gives)."""
    texts = ["great shuttle", "lovely shuttle", "okay shuttle", "average shuttle"] * 5
    texts += ["worst shuttle", "broken shuttle"] * 5
    labels = [2, 2, 1, 1] * 5 + [0, 0] * 5
    pipeline = Pipeline(
        [("features", TfidfVectorizer()), ("classifier", LogisticRegression(C=100))]
    ).fit(texts, labels)
    save_classical(pipeline, path, {"threshold": None, "n_classes": 3, "candidate": "classical"})
    return path


@pytest.mark.slow
def test_a_three_class_model_answers_with_its_own_label_names(tmp_path: Path) -> None:
    home = tmp_path / "bentoml"
    export_model(home, ternary_model(tmp_path / "champion"))
    proc, url = serve(home, tmp_path)
    try:
        wait_ready(proc, f"{url}/readyz", tmp_path / "server.log")
        texts = ["great shuttle", "average shuttle", "worst shuttle"]
        response = post(f"{url}/predict_batch", json={"texts": texts}, timeout=60)
        assert response.status_code == 200, response.text
        answers = response.json()
        assert [a["label"] for a in answers] == ["positive", "neutral", "negative"]
        assert all(1 / 3 < a["score"] <= 1 for a in answers)  # P(the predicted label)
        no_card = get(f"{url}/model/card", timeout=10)  # exported without one
        assert no_card.status_code == 404
        assert no_card.json()["error"].endswith(" was stored without a model card")
    finally:
        stop_group(proc, tmp_path / "server.log")


@pytest.mark.slow
def test_sigterm_answers_what_was_accepted_and_exits_within_the_bound(
    bento_home: Path, tmp_path: Path
) -> None:
    """SIGTERM to the main process under load (as Docker and Kubernetes send it): 16
    clients send requests one after the other until one is not answered. Every request the
    service scored was answered 200, the others were refused without an HTTP error, and
    the whole process group is gone within 10 s."""
    proc, url = serve(bento_home, tmp_path)
    wait_ready(proc, f"{url}/readyz", tmp_path / "server.log")
    deadline = time.monotonic() + 60

    def client(k: int) -> list[tuple[str, object]]:
        outcomes: list[tuple[str, object]] = []
        while time.monotonic() < deadline:
            text = f"good shuttle {k}-{len(outcomes)}"
            try:
                status: object = post(f"{url}/predict", json={"text": text}, timeout=30).status_code
            except httpx.HTTPError as err:
                status = type(err).__name__
            outcomes.append((text, status))
            if status != 200:
                break
        return outcomes

    try:
        with ThreadPoolExecutor(16) as pool:
            clients = [pool.submit(client, k) for k in range(16)]
            time.sleep(1.0)  # under load
            stopped = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            while time.monotonic() < stopped + 60:  # until no process of the group is left
                proc.poll()
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            took = time.monotonic() - stopped
            histories = [c.result() for c in clients]
    finally:
        stop_group(proc, tmp_path / "server.log")
    assert took < 10, f"the process group was gone {took:.1f} s after SIGTERM"
    outcomes = dict(o for history in histories for o in history)
    answered = {text for text, outcome in outcomes.items() if outcome == 200}
    logged_texts = {r["text"] for r in logged(tmp_path / "predictions.jsonl")}
    assert logged_texts <= answered, sorted(logged_texts - answered)[:5]
    # The rest never reached the service (refused, or closed unanswered before it read
    # them): no HTTP error, nothing half done, and a client may resend them.
    refused = {"ConnectError", "RemoteProtocolError", "ReadError"}
    assert set(outcomes.values()) <= {200} | refused, set(outcomes.values())
    assert answered, "the service answered before the signal"
    assert all(history[-1][1] in refused for history in histories), "every client was refused"


def test_the_bento_includes_every_module_the_service_imports() -> None:
    from tests.test_dag import closure

    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    patterns = [pattern.lstrip("/") for pattern in bentofile["include"]]  # "/": from the top
    assert "sentiment/" in patterns, "the library is included by folder"
    needed = {path for path in closure("service.py") if path.endswith(".py")}
    missing = [p for p in needed if not any(p == i or p.startswith(i) for i in patterns)]
    assert not missing, sorted(missing)


@pytest.fixture(scope="module")
def transformer_server(
    transformer_dir: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
):
    """``bentoml serve`` of a tiny BERT with its static int8 copy, the flavor and backend
    the pipeline serves by default."""
    home = tmp_path_factory.mktemp("bentoml-transformer")
    export_model(home, transformer_dir)
    log_dir = tmp_path_factory.mktemp("transformer-log")
    proc, url = serve(home, log_dir, SENTIMENT_WORKERS="2")
    try:
        wait_ready(proc, f"{url}/readyz", log_dir / "server.log")
        yield url
    finally:
        stop_group(proc, log_dir / "server.log")


@pytest.mark.slow
def test_a_review_gets_the_same_score_alone_in_batches_and_under_load(transformer_server) -> None:
    """The same reviews one request each, inside /predict_batch bodies in other orders and
    company, and as concurrent requests the service batches together: one score each."""
    url = transformer_server
    texts = [t for t in varied_texts(60, seed=21) if t.strip()]
    alone = [post(f"{url}/predict", json={"text": t}, timeout=60).json() for t in texts]
    assert {a["model_version"] for a in alone} == {"7"}
    scores = {text: [a["score"]] for text, a in zip(texts, alone, strict=True)}
    rng = np.random.default_rng(0)
    for size in (2, 7, 33, len(texts)):
        for start in range(0, len(texts), size):
            body = [texts[i] for i in rng.permutation(len(texts))[start : start + size]]
            answers = post(f"{url}/predict_batch", json={"texts": body}, timeout=60).json()
            for text, answer in zip(body, answers, strict=True):
                scores[text].append(answer["score"])

    def call(i: int) -> tuple[str, float]:
        text = texts[i % len(texts)]
        return text, post(f"{url}/predict", json={"text": text}, timeout=60).json()["score"]

    with ThreadPoolExecutor(32) as pool:
        for text, score in pool.map(call, range(4 * len(texts))):
            scores[text].append(score)
    spread = max(max(s) - min(s) for s in scores.values())
    assert spread <= INVARIANCE_BOUND


@pytest.mark.slow
def test_the_service_runs_a_worker_per_core_by_default(bento_home: Path) -> None:
    """Unset, SENTIMENT_WORKERS leaves the count to BentoML's "cpu_count" (the container's
    CPU limit); set, it is taken as given."""
    code = "import service; print(service.Sentiment.config['workers'])"
    env = {k: v for k, v in os.environ.items() if k != "SENTIMENT_WORKERS"}
    env |= {
        "BENTOML_HOME": str(bento_home),
        "PYTHONPATH": str(REPO),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    for extra, workers in (({}, "cpu_count"), ({"SENTIMENT_WORKERS": "3"}, "3")):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env | extra
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split()[-1] == workers
