"""The registry across simulated hosts (tests/hosts.py): ``mlflow server`` on host mlflow, the
registry commands on host a, a following service on host s. The server restarted, and
separately cut off, in the middle of ``promote`` and of ``deploy``: production,
previous-production and the BentoML store end wholly new or wholly old, and the command's
last line says which. The serving host cut off from the registry while production moves:
it keeps answering, says so once, and serves the new production once it is back.
docs/across-machines.md has the fault table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO
from tests.hosts import Hosts, require_hosts, wait_port
from tests.test_gate import PARAMS, project_copy

pytestmark = [pytest.mark.slow, pytest.mark.system]
PORT = 5000


@pytest.fixture(autouse=True)
def hosts_can_be_made() -> None:
    require_hosts()


PREPARE = """
from sentiment import paths
from sentiment.registry import promotion
from stages import gate
from tests.test_gate import PARAMS, make_model
for words in {promoted}:
    make_model(paths.CHAMPION, words)
    gate.run_stage(PARAMS)
    print(promotion.act(PARAMS))
make_model(paths.CHAMPION, 6)  # the candidate: better than any promoted
gate.run_stage(PARAMS)
"""
STATE = """
import json, bentoml
from mlflow import MlflowClient
from tests.test_gate import PARAMS
model = MlflowClient().get_registered_model(PARAMS["registered_model"])
latest = bentoml.models.get(PARAMS["bento_model"] + ":latest")
print(json.dumps({
    "aliases": {alias: str(version) for alias, version in model.aliases.items()},
    "store": latest.info.labels["registry_version"],
}))
"""


class Registry:
    """``mlflow server`` (SQLite and an artifact folder on the shared volume) on host mlflow,
    and a project on host a whose MLflow client and BentoML store use it."""

    def __init__(self, hosts: Hosts, project: Path) -> None:
        self.hosts, self.project = hosts, project
        self.server_host, self.client = hosts["mlflow"], hosts["a"]
        self.url = f"http://{self.server_host.address}:{PORT}"
        self.starts = 0
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENTOML_"))}
        path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
        self.server_env = {**clean, "PATH": path, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.env = {
            **clean,
            "PATH": path,
            "PYTHONPATH": str(REPO),
            "MLFLOW_TRACKING_URI": self.url,
            "BENTOML_HOME": str(project / "bentoml"),
        }

    def start(self) -> None:
        self.starts += 1
        self.server = self.server_host.run(
            "mlflow",
            "server",
            "--host",
            self.server_host.address,
            "--port",
            str(PORT),
            "--backend-store-uri",
            f"sqlite:///{self.project / 'server' / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.project / "server" / "artifacts"),
            "--allowed-hosts",  # the default allows private addresses, not the test range
            f"{self.server_host.address}:{PORT}",
            "--workers",
            "1",
            env=self.server_env,
            log=f"mlflow-{self.starts}",
        )
        wait_port(self.client, self.server_host.address, PORT, seconds=120)

    def stop(self) -> None:
        os.killpg(self.server.pid, signal.SIGTERM)  # uvicorn and its workers: a group
        self.server.wait(timeout=60)

    def python(self, code: str, **env: str) -> str:
        done = self.client.exec("python", "-c", code, env={**self.env, **env}, cwd=self.project)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    def state(self) -> dict:
        return json.loads(self.python(STATE))

    def command(self, *args: str, log: str, **env: str) -> subprocess.Popen:
        cmd = ("python", "-m", "sentiment.registry", *args)
        return self.client.run(*cmd, env={**self.env, **env}, log=log, cwd=self.project)

    def requests(self, path: str) -> int:
        """How many requests for ``path`` the server has logged (all its starts)."""
        logs = [self.hosts.logs / f"mlflow-{n}" for n in range(1, self.starts + 1)]
        return sum(log.read_text().count(path) for log in logs if log.exists())


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    (tmp_path / "project").mkdir()
    project_copy(tmp_path / "project", monkeypatch)  # the test split, params, dvc.yaml
    (tmp_path / "project" / "server").mkdir()
    with Hosts(["a", "mlflow", "s"], tmp_path / "logs") as hosts:
        made = Registry(hosts, tmp_path / "project")
        made.start()
        yield made


def last_line(registry: Registry, proc: subprocess.Popen, log: str) -> tuple[int, str]:
    proc.wait(timeout=600)
    text = (registry.hosts.logs / log).read_text()
    assert "Traceback" not in text, text[-3000:]
    return proc.returncode, text.strip().splitlines()[-1]


def inject(registry: Registry, fault: str, trigger: str, proc: subprocess.Popen) -> float:
    """Once the server has logged ``trigger``, restart it (stop, start) or cut it off (its
    firewall resetting every connection, as a closed port); the fault's duration."""
    seen = registry.requests(trigger)
    deadline = time.monotonic() + 300
    while registry.requests(trigger) == seen:
        assert proc.poll() is None and time.monotonic() < deadline, "no trigger request"
        time.sleep(0.02)
    began = time.monotonic()
    if fault == "restart":
        registry.stop()
        registry.start()
    else:
        registry.server_host.partition(refuse=True)
        proc.wait(timeout=600)
        registry.server_host.heal()
    return time.monotonic() - began


# Where each command is cut: promote while it uploads the model's files (its first step),
# deploy once its run is created (before its first step, the export to BentoML).
CASES = {
    "promote": (
        ["promote"],
        "/mlflow-artifacts/artifacts/",
        ({"production": "1"}, "1"),
        ({"production": "2", "previous-production": "1"}, "2"),
    ),
    "deploy": (
        ["deploy", "--version", "1", "--reason", "back to 1", "--force"],
        "/runs/create",
        ({"production": "2", "previous-production": "1"}, "2"),
        ({"production": "1", "previous-production": "2"}, "1"),
    ),
}


@pytest.mark.parametrize("fault", ["restart", "cut"])
@pytest.mark.parametrize("command", ["promote", "deploy"])
def test_the_registry_server_lost_mid_command_leaves_it_wholly_old_or_new(
    registry: Registry, command: str, fault: str
) -> None:
    args, trigger, old, new = CASES[command]
    registry.python(PREPARE.format(promoted=[4] if command == "promote" else [2, 4]))
    assert (before := registry.state()) == {"aliases": old[0], "store": old[1]}, before
    # The client's retries (MLflow's: 7, with backoff from 2 s) outlast a restart; a cut-off
    # server is given up on sooner here, as a CI job would with a bounded wait.
    bounded = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    proc = registry.command(*args, log=command, **(bounded if fault == "cut" else {}))
    seconds = inject(registry, fault, trigger, proc)
    status, line = last_line(registry, proc, command)
    after = registry.state()
    aliases, store = new if fault == "restart" else old
    assert after == {"aliases": aliases, "store": store}, (line, after)
    said = {  # carried through after a restart: wholly new; given up when cut: wholly old
        ("promote", "restart"): f"promote: promoted as version {new[1]}, BentoML ",
        ("deploy", "restart"): f"deploy: version {new[1]} is production (was {old[1]}), ",
    }.get((command, fault), f"production is still version {old[1]}, and so is the BentoML")
    assert status == (0 if fault == "restart" else 1) and said in line, line
    print(f"{command}, server {fault} ({seconds:.1f} s): {line[:100]} ... {line[-150:]} -> {after}")


ANSWERING = """
import httpx
ready = httpx.get("http://127.0.0.1:3000/readyz", timeout=10)
one = httpx.post("http://127.0.0.1:3000/predict", json={"text": "great shuttle"}, timeout=10)
print(ready.status_code, one.status_code, one.json()["model_version"] if one.is_success else "")
"""
UNREACHABLE = "the store keeps its model"


def test_a_serving_host_cut_off_from_the_registry_keeps_serving_then_follows(
    registry: Registry,
) -> None:
    """Host s runs the service, following its store, and ``mirror`` keeping that store on
    the registry's production. s is cut off; production moves to version 2 meanwhile: the
    service still answers with version 1, mirror says once that the registry is lost, and
    once s is back the service answers with version 2."""
    registry.python(PREPARE.format(promoted=[4]))  # production 1, and a better candidate
    s = registry.hosts["s"]
    env = {
        **registry.env,
        "BENTOML_HOME": str(registry.project / "bentoml-s"),  # s's own store
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
        "SENTIMENT_FOLLOW_PRODUCTION": "1",
        "SENTIMENT_FOLLOW_INTERVAL_S": "0.5",
        "SENTIMENT_WORKERS": "1",
        "SENTIMENT_INFERENCE_LOG": str(registry.project / "s-predictions.jsonl"),
        "SENTIMENT_MODEL_TAG": f"{PARAMS['bento_model']}:latest",  # the project's, not REPO's
    }
    mirror_cmd = ("python", "-m", "sentiment.registry", "mirror", "--every", "1")
    mirror = s.run(*mirror_cmd, env=env, log="mirror", cwd=registry.project)
    mirror_log = registry.hosts.logs / "mirror"
    wait_until(lambda: "exported to BentoML" in mirror_log.read_text(), mirror)
    serve = ("bentoml", "serve", "service:Sentiment", "--host", "127.0.0.1", "--port", "3000")
    service = s.run(*serve, env=env, log="service", cwd=REPO)

    def answer() -> str:
        done = s.exec("python", "-c", ANSWERING, env=env, timeout=60)
        return done.stdout.strip() if done.returncode == 0 else f"no answer: {done.stderr[-200:]}"

    wait_until(lambda: answer() == "200 200 1", service, seconds=180)
    s.partition()
    promoted = registry.command("promote", log="promote")
    assert last_line(registry, promoted, "promote")[0] == 0
    wait_until(lambda: UNREACHABLE in mirror_log.read_text(), mirror)
    for _ in range(5):  # s keeps answering with what it has while mirror keeps failing
        assert answer() == "200 200 1"
        time.sleep(1)
    assert mirror_log.read_text().count(UNREACHABLE) == 1  # said once, not every look
    s.heal()
    healed = time.monotonic()
    wait_until(lambda: answer() == "200 200 2", service)
    seconds = time.monotonic() - healed
    said = mirror_log.read_text()
    assert said.count(UNREACHABLE) == 1 and said.count("exported to BentoML") == 2, said
    print(f"serving host cut off: kept version 1; served version 2 {seconds:.1f} s after")


def wait_until(check, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, f"{proc.args} ended"
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.5)
