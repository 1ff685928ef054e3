"""The team stack of deploy/compose.yaml brought up for real: PostgreSQL, the S3 bucket, the
MLflow server, the service image and Prometheus. The champion is promoted through the stack's
MLflow into its bucket, the image `make image` builds from that promotion serves that
version, Prometheus scrapes it, and `down -v` leaves nothing behind.

Where the official images cannot be pulled, deploy/compose.stand-ins.yaml runs the same
software from Debian's and PyPI's packages (moto's server for MinIO; Grafana not started).
Needs a Docker engine and Compose (`docker compose`, or Debian's docker-compose), both
installed by `.ci/run`, and the pipeline's champion and gate decision (`make run`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sentiment import paths
from sentiment.params import load_params
from tests.conftest import BIN, REPO, free_port
from tests.test_image import build, docker, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.system]
STAND_INS = "sentiment-stand-in:test"
OFFICIAL = ("postgres:15", "prom/prometheus:v2.42.0")  # pulled: the stack's own images
PORTS = ("POSTGRES", "S3", "S3_CONSOLE", "MLFLOW", "SERVICE", "PROMETHEUS", "NODE_EXPORTER")


def compose_command() -> list[str]:
    """Compose 2 as the docker plugin, else Compose 1 (Debian's docker-compose)."""
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        unavailable("no Docker engine answers (.ci/run installs docker.io and starts dockerd)")
    if docker("compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    unavailable("no Compose (.ci/run installs Debian's docker-compose)")
    raise AssertionError  # unreachable: unavailable() skips or fails


def official_images_here() -> bool:
    """Whether the official images can be had (then no stand-ins are built)."""
    return all(
        docker("image", "inspect", tag, check=False).returncode == 0
        or docker("pull", "--quiet", tag, check=False, timeout=300).returncode == 0
        for tag in OFFICIAL
    )


@dataclass
class Stack:
    """One project of the compose file, on free host ports."""

    command: list[str]
    env_file: Path
    values: dict[str, str]

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        files = ["-f", "deploy/compose.yaml"]
        if "STAND_IN_IMAGE" in self.values:
            files += ["-f", "deploy/compose.stand-ins.yaml"]
        proc = subprocess.run(
            [*self.command, *files, "--env-file", str(self.env_file), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"compose {' '.join(args)}: {proc.stderr[-3000:]}"
        return proc

    def url(self, port: str) -> str:
        return f"http://127.0.0.1:{self.values[f'{port}_PORT']}"

    def left(self) -> dict[str, list[str]]:
        """What of the project is still on the engine: containers, volumes, networks."""
        label = f"label=com.docker.compose.project={self.values['COMPOSE_PROJECT_NAME']}"
        return {
            kind: docker(*kind_args, "--quiet", "--filter", label).stdout.split()
            for kind, kind_args in (
                ("containers", ("ps", "--all")),
                ("volumes", ("volume", "ls")),
                ("networks", ("network", "ls")),
            )
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack's settings in an env file (the stand-ins built where needed); `down -v`
    however the tests end."""
    command = compose_command()
    values = {
        "COMPOSE_PROJECT_NAME": f"sentiment-test-{os.getpid()}",
        "POSTGRES_PASSWORD": secrets.token_hex(8),
        "S3_ACCESS_KEY": "sentiment",
        "S3_SECRET_KEY": secrets.token_hex(8),
        "SENTIMENT_IMAGE": f"sentiment-service:stack-{os.getpid()}",
        "SENTIMENT_API_TOKEN": "",
        **{f"{port}_PORT": str(free_port()) for port in PORTS},
    }
    built = []
    if not official_images_here():
        print(build("deploy/stand-ins/build.sh", STAND_INS))
        values["STAND_IN_IMAGE"] = STAND_INS
        built.append(STAND_INS)
    env_file = tmp_path_factory.mktemp("stack") / "stack.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    stack = Stack(command, env_file, values)
    try:
        yield stack
    finally:
        if stack.left()["containers"]:  # the test stopped before its own down
            print(stack.compose("logs", "--no-color", "--tail", "20", timeout=60).stdout[-6000:])
        stack.compose("down", "--volumes", timeout=120)
        built.append(values["SENTIMENT_IMAGE"])
        docker("rmi", "--force", *built, check=False)
        docker("image", "prune", "--force", check=False)


def wait_for(what: str, check, seconds: float = 90) -> float:
    """Seconds until ``check()`` is true (``check`` may raise meanwhile)."""
    started = time.monotonic()
    last = None
    while time.monotonic() - started < seconds:
        try:
            if check():
                return time.monotonic() - started
        except (httpx.HTTPError, OSError, KeyError, IndexError) as err:
            last = err
        time.sleep(1)
    pytest.fail(f"{what}: not within {seconds} s ({last!r})")


def run_here(*args: str, **env: str) -> str:
    """A project command from the repository root, with ``env`` added; its last line."""
    proc = subprocess.run(
        [str(BIN / "python"), *args],
        cwd=REPO,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_promoted_through_the_stack_served_scraped_and_gone_after_down(
    stack: Stack, tmp_path: Path
) -> None:
    if not (paths.GATE_DECISION.is_file() and paths.CHAMPION.is_dir()):
        unavailable("no champion and gate decision (make run)")
    params = load_params("gate")
    started = time.monotonic()
    stack.compose("up", "--detach", "postgres", "minio", "bucket", "mlflow")
    mlflow_uri = stack.url("MLFLOW")
    wait_for("MLflow answers", lambda: httpx.get(f"{mlflow_uri}/health", timeout=2).text == "OK")
    print(f"data services up in {time.monotonic() - started:.1f} s")

    # Promote through the stack's MLflow; the BentoML store of this test gets the version.
    store = tmp_path / "bentoml"
    line = run_here(
        "-m",
        "sentiment.registry",
        "promote",
        MLFLOW_TRACKING_URI=mlflow_uri,
        BENTOML_HOME=str(store),
    )
    promoted = f"promote: promoted as version 1, BentoML {params['bento_model']}:"
    assert line.startswith(promoted), line
    from mlflow.tracking import MlflowClient

    production = MlflowClient(mlflow_uri).get_model_version_by_alias(
        params["registered_model"], "production"
    )
    assert production.version == "1"

    # Its files are in the stack's bucket (MLflow serves the artifacts it stores there).
    import boto3

    bucket = boto3.client(
        "s3",
        endpoint_url=stack.url("S3"),
        region_name="us-east-1",
        aws_access_key_id=stack.values["S3_ACCESS_KEY"],
        aws_secret_access_key=stack.values["S3_SECRET_KEY"],
    )
    listed = bucket.list_objects_v2(Bucket="sentiment", Prefix="mlflow/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any(key.endswith("/champion/model.onnx") for key in keys), keys[:20]

    # Optuna's database is there for the team's studies.
    import psycopg

    optuna_url = (
        f"postgresql://sentiment:{stack.values['POSTGRES_PASSWORD']}@127.0.0.1:"
        f"{stack.values['POSTGRES_PORT']}/optuna"
    )
    with psycopg.connect(optuna_url, connect_timeout=10) as connection:
        assert connection.execute("SELECT current_database()").fetchone() == ("optuna",)

    # The image of that promotion, started by the stack, serves version 1.
    print(build("deploy/image/build.sh", stack.values["SENTIMENT_IMAGE"], BENTOML_HOME=str(store)))
    stack.compose("up", "--detach")
    service = stack.url("SERVICE")
    ready = wait_for("the service is ready", lambda: httpx.get(f"{service}/readyz").is_success)
    print(f"service ready {ready:.1f} s after up")
    answer = httpx.post(f"{service}/predict", json={"text": "Great shuttles"}, timeout=10).json()
    assert answer["model_version"] == "1", answer

    # Prometheus scrapes the service and node-exporter, with the alert and reference rules.
    prometheus = stack.url("PROMETHEUS")

    def scraped() -> bool:
        query = httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}, timeout=5)
        up = {r["metric"]["job"]: r["value"][1] for r in query.json()["data"]["result"]}
        return up == {"sentiment": "1", "drift": "1"}

    print(f"up == 1 for both jobs {wait_for('Prometheus scrapes both jobs', scraped):.1f} s later")
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    files = {Path(group["file"]).parent.name for group in groups}
    assert files == {"rules", "reference"}, files
    assert not [rule["name"] for g in groups for rule in g["rules"] if rule["health"] == "err"]

    # down -v: no container, volume or network of the project is left.
    stack.compose("down", "--volumes", timeout=120)
    assert stack.left() == {"containers": [], "volumes": [], "networks": []}
    print(json.dumps({"whole test s": round(time.monotonic() - started, 1)}))
