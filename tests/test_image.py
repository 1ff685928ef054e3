"""The serving image, built by `make image`'s script and run as users run it: slim and safe,
exactly the serving lock, the in-process scores, the service's refusals, auth, the log on a
volume, read-only root, one worker per CPU of its limit, and a clean stop under load.

Needs a Docker engine (`.ci/run` installs docker.io and starts dockerd) and the promoted
model in the BentoML store (`make run`). Where Docker Hub cannot be reached, the base is the
stand-in deploy/image/base.sh builds from Debian's packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from sentiment import paths
from sentiment.params import production_tag
from sentiment.settings import setting
from tests.conftest import BIN, REPO, free_port, slow_post
from tests.test_service import BAD_REQUESTS

pytestmark = pytest.mark.slow  # an image built, containers started
OFFICIAL_BASE = "python:3.11-slim"
STAND_IN_BASE = "sentiment-base:bookworm-python3.11"
SIZE_BUDGET_MB = 750
READY_WITHIN_S = 30
TEXTS = [
    "Great shuttles, lasted the whole tournament",
    "worst purchase ever, feathers fell off",
    "ok for the price",
    "Nice product 👍",
    "not good, not bad",
    "Delivery was late but the quality is superb",
]


def unavailable(reason: str) -> None:
    if setting("SENTIMENT_REQUIRE_SERVERS"):
        pytest.fail(reason)
    pytest.skip(reason)


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


@pytest.fixture(scope="module")
def engine() -> None:
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        unavailable("no Docker engine answers (.ci/run installs docker.io and starts dockerd)")


def base_image() -> str:
    """The official base where it is here or can be pulled, else the Debian stand-in."""
    for tag in (OFFICIAL_BASE, STAND_IN_BASE):
        if docker("image", "inspect", tag, check=False).returncode == 0:
            return tag
    if docker("pull", "--quiet", OFFICIAL_BASE, check=False, timeout=300).returncode == 0:
        return OFFICIAL_BASE
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        unavailable(f"{OFFICIAL_BASE} cannot be pulled and deploy/image/base.sh needs root")
    subprocess.run(["bash", "deploy/image/base.sh", STAND_IN_BASE], cwd=REPO, check=True)
    return STAND_IN_BASE


def extra_ca() -> str | None:
    """The CA bundle this machine's pip uses, for pip inside the build (none: the default)."""
    for variable in ("SENTIMENT_EXTRA_CA", "PIP_CERT", "REQUESTS_CA_BUNDLE"):
        if os.environ.get(variable) and Path(os.environ[variable]).is_file():
            return os.environ[variable]
    configured = subprocess.run(
        [str(BIN / "python"), "-m", "pip", "config", "get", "global.cert"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return configured if configured and Path(configured).is_file() else None


def build(script: str, tag: str, **env: str) -> str:
    """Run one of deploy/'s build scripts as .ci/run would (the base of this machine, pip's
    CA bundle), with ``env`` added; its last line (tag, size, time)."""
    env = {"SENTIMENT_BASE_IMAGE": base_image(), **env}
    if ca := extra_ca():
        env["SENTIMENT_EXTRA_CA"] = ca
    built = subprocess.run(
        ["bash", script, tag],
        cwd=REPO,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def image(engine: None) -> Iterator[str]:
    """``SENTIMENT_TEST_IMAGE`` (the workflow's build, tested before it is pushed), else the
    image deploy/image/build.sh builds now, removed afterwards."""
    if tag := setting("SENTIMENT_TEST_IMAGE"):
        yield tag
        return
    yield from built_image()


def built_image() -> Iterator[str]:
    import bentoml

    try:
        bentoml.models.get(production_tag())
    except bentoml.exceptions.NotFound:
        missing = f"no {production_tag()} in the BentoML store (make run promotes it)"
        if setting("SENTIMENT_REQUIRE_MODELS"):
            pytest.fail(missing)
        pytest.skip(missing)
    tag = f"sentiment-service:test-{os.getpid()}"
    assert build("deploy/image/build.sh", tag).startswith(f"image: {tag} (")
    try:
        yield tag
    finally:
        docker("rmi", "--force", tag, check=False)
        docker("image", "prune", "--force", check=False)


@contextmanager
def container(image: str, *options: str) -> Iterator[tuple[str, str]]:
    """A container of ``image`` published on a free loopback port: (id, base URL); removed
    (with its logs shown on failure) however the test ends."""
    port = free_port()
    started = docker("run", "--detach", "--publish", f"127.0.0.1:{port}:3000", *options, image)
    name = started.stdout.strip()
    try:
        yield name, f"http://127.0.0.1:{port}"
    except BaseException:
        print(docker("logs", "--tail", "60", name, check=False).stderr[-4000:])
        raise
    finally:
        docker("rm", "--force", name, check=False)


def wait_ready(name: str, url: str, seconds: float = 60) -> float:
    """Seconds until ``/readyz`` answers 200 (fails if the container exits first)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        state = docker("inspect", "--format", "{{.State.Running}}", name, check=False).stdout
        if state.strip() != "true":
            pytest.fail(f"the container exited: {docker('logs', name, check=False).stderr[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"not ready within {seconds} s: {docker('logs', name, check=False).stderr[-3000:]}")


def running(name: str) -> bool:
    return docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"


@pytest.fixture(scope="module")
def served(image: str) -> Iterator[tuple[str, str, float]]:
    """The image run as `docker run` runs it: (container, URL, seconds to ready)."""
    with container(image) as (name, url):
        yield name, url, wait_ready(name, url)


def test_the_image_is_slim_small_and_runs_as_its_own_user(image: str) -> None:
    config = json.loads(docker("image", "inspect", image).stdout)[0]
    assert config["Size"] / 1e6 <= SIZE_BUDGET_MB, f"{config['Size'] / 1e6:.0f} MB"
    assert config["Config"]["User"] == "bentoml"
    assert "SENTIMENT_FOLLOW_PRODUCTION=0" in config["Config"]["Env"]
    assert "/readyz" in " ".join(config["Config"]["Healthcheck"]["Test"])
    found = docker(
        "run", "--rm", "--entrypoint", "sh", image, "-c",
        "for p in gcc cc g++ make git pip curl; do command -v $p; done;"
        " ls -d /root/.cache /home/bentoml/.cache /var/cache/apt/archives/*.deb 2>/dev/null;"
        " id -u",
        check=False,
    ).stdout.split()  # fmt: skip
    assert found == ["1034"], found


def test_no_file_of_the_build_machine_is_in_any_layer(image: str, tmp_path: Path) -> None:
    """The extra CA bundle pip used stays in the build stage: no layer's command names it,
    and no file of the image has its bytes."""
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    assert "extra.pem" not in history and "PIP_CERT" not in history
    ca = extra_ca()
    banned = {hashlib.sha256(Path(ca).read_bytes()).hexdigest()} if ca else set()
    created = docker("create", image).stdout.strip()
    try:
        export = subprocess.Popen(["docker", "export", created], stdout=subprocess.PIPE)
        with export, tarfile.open(fileobj=export.stdout, mode="r|") as layers:
            for member in layers:
                assert "extra.pem" not in member.name and not member.name.startswith("tmp/ca")
                if member.isfile() and member.size > 100_000 and banned:
                    body = layers.extractfile(member).read()
                    assert hashlib.sha256(body).hexdigest() not in banned, member.name
    finally:
        docker("rm", created, check=False)


def test_its_packages_are_exactly_the_serving_lock(image: str) -> None:
    listed = docker(
        "run", "--rm", "--entrypoint", "python", image, "-c",
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version"
        " for d in m.distributions()}))",
    ).stdout  # fmt: skip
    lock = {
        name.lower().replace("_", "-"): version
        for line in (REPO / "requirements" / "serving.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
        for name, version in [line.split("==", 1)]
    }
    assert json.loads(listed) == lock


def test_ready_in_time_with_the_in_process_scores(served: tuple[str, str, float]) -> None:
    from sentiment.models.predictor import load_predictor

    _, url, ready_s = served
    assert ready_s < READY_WITHIN_S
    proba = load_predictor(REPO / paths.CHAMPION).predict_proba(TEXTS)
    one = [httpx.post(f"{url}/predict", json={"text": t}, timeout=30).json() for t in TEXTS]
    many = httpx.post(f"{url}/predict_batch", json={"texts": TEXTS}, timeout=30).json()
    for answers in (one, many):
        assert [a["score"] for a in answers] == [float(p) for p in proba[:, 1]]


@pytest.mark.parametrize(("route", "request_kwargs"), BAD_REQUESTS)
def test_bad_input_gets_the_documented_refusal(served, route: str, request_kwargs: dict) -> None:
    name, url, _ = served
    response = httpx.post(f"{url}{route}", timeout=30, **request_kwargs)
    assert response.status_code in (400, 415), (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "detail"} and "\n" not in body["error"], body
    assert running(name)


def test_an_oversized_body_from_a_slow_client_gets_its_413(served) -> None:
    name, url, _ = served
    status, body = slow_post(url, "/predict", 3 * 2**20)
    assert status == 413 and b"SENTIMENT_MAX_BODY_BYTES" in body
    assert running(name) and httpx.get(f"{url}/readyz", timeout=10).status_code == 200


def test_a_token_closes_the_prediction_routes(image: str) -> None:
    with container(image, "--env", "SENTIMENT_API_TOKEN=s3cret") as (name, url):
        wait_ready(name, url)
        body = {"text": "good shuttle"}
        assert httpx.post(f"{url}/predict", json=body, timeout=30).status_code == 401
        auth = {"authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/predict", json=body, headers=auth, timeout=30).status_code == 200


def test_the_inference_log_lands_on_a_volume_whole_and_redacted(image: str, tmp_path: Path):
    logs = tmp_path / "log"
    logs.mkdir(mode=0o777)
    logs.chmod(0o777)  # the container's user writes it
    mount = f"{logs}:/home/bentoml/inference-log"
    texts = [f"review {i}: mail me at buyer{i}@example.com" for i in range(40)]
    with container(image, "--volume", mount) as (name, url):
        wait_ready(name, url)

        def send(text: str) -> httpx.Response:
            return httpx.post(f"{url}/predict", json={"text": text}, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, texts))
        assert all(a.status_code == 200 for a in answers)
    lines = [line for f in sorted(logs.glob("*.jsonl*")) for line in f.read_text().splitlines()]
    records = [json.loads(line) for line in lines]  # every line whole
    assert len(records) == len(texts)
    assert all("@example.com" not in r["text"] and "<email>" in r["text"] for r in records)


def test_a_read_only_root_with_a_tmpfs_serves(image: str) -> None:
    with container(image, "--read-only", "--tmpfs", "/tmp") as (name, url):
        wait_ready(name, url)
        answer = httpx.post(f"{url}/predict", json={"text": "good shuttle"}, timeout=30)
        assert answer.status_code == 200, answer.text


def workers(name: str) -> int:
    return docker("top", name).stdout.count("_bentoml_impl.worker")


def test_one_worker_per_cpu_of_the_limit(image: str) -> None:
    with container(image, "--cpus", "1") as (name, url):
        wait_ready(name, url)
        assert workers(name) == 1
    with container(image, "--cpus", "2") as (name, url):
        wait_ready(name, url)
        assert workers(name) == 2


def test_docker_stop_under_load_answers_what_it_accepted(image: str) -> None:
    """16 clients send requests until one is not answered; `docker stop` meanwhile. Every
    request answered is a 200, the rest were refused without an HTTP error, the container is
    gone within 10 s and exits 0."""
    with container(image) as (name, url):
        wait_ready(name, url)
        deadline = time.monotonic() + 60

        def client(k: int) -> list[object]:
            outcomes: list[object] = []
            while time.monotonic() < deadline:
                try:
                    status: object = httpx.post(
                        f"{url}/predict", json={"text": f"good {k}"}, timeout=30
                    ).status_code
                except httpx.HTTPError as err:
                    status = type(err).__name__
                outcomes.append(status)
                if status != 200:
                    break
            return outcomes

        with ThreadPoolExecutor(16) as pool:
            clients = [pool.submit(client, k) for k in range(16)]
            time.sleep(1.0)
            stopped = time.monotonic()
            docker("stop", "--time", "10", name)
            took = time.monotonic() - stopped
            outcomes = [o for c in clients for o in c.result()]
        state = json.loads(docker("inspect", name).stdout)[0]["State"]
    assert took < 10, f"docker stop took {took:.1f} s"
    assert state["ExitCode"] == 0, state
    assert outcomes.count(200) > 16, "the service answered before it was stopped"
    refused = {"ConnectError", "RemoteProtocolError", "ReadError"}
    assert set(outcomes) <= {200} | refused, set(outcomes)
