"""A shared registry for real: `mlflow server` with MLflow's basic-auth app on loopback.

Promote, rollback and export run over HTTP with credentials from MLFLOW_TRACKING_USERNAME /
MLFLOW_TRACKING_PASSWORD, fail with one line without them, and leave the credentials in no
log, param, tag or decision file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sentiment import paths, tracking
from sentiment.registry import promotion
from sentiment.report import gate_lines
from sentiment.settings import setting
from sentiment.tracking import redact_uri
from stages import gate
from tests.conftest import TrackingServer
from tests.test_gate import PARAMS, decide_and_act, make_model, project_copy, served_version


@pytest.fixture
def shared_registry(
    tracking_server: TrackingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> MlflowClient:
    """test_gate's project copy, pointed at the tracking server with credentials."""
    project_copy(tmp_path, monkeypatch)
    tracking_server.use(monkeypatch)
    tracking.configure()
    return MlflowClient()


def promote_twice_then_roll_back() -> None:
    """Versions 1 and 2 promoted in turn, then production rolled back to 1 and exported."""
    make_model(paths.CHAMPION, 4)
    assert decide_and_act(PARAMS)[1].startswith("promoted as version 1")
    make_model(paths.CHAMPION, 6)
    assert decide_and_act(PARAMS)[1].startswith("promoted as version 2")
    assert served_version() == "2"
    assert promotion.rollback(PARAMS)["production"] == "1"
    promotion.export_production(PARAMS)
    assert served_version() == "1"


@pytest.mark.slow
def test_promote_rollback_export_over_http_with_credentials(
    shared_registry: MlflowClient, tracking_server: TrackingServer, capsys: pytest.CaptureFixture
) -> None:
    server_log = tracking_server.log
    promote_twice_then_roll_back()

    # The credentials are nowhere the pipeline writes: runs, versions, decision, output.
    runs = shared_registry.search_runs(
        [e.experiment_id for e in shared_registry.search_experiments()]
    )
    written = [
        json.dumps([[r.data.params, r.data.tags] for r in runs]),
        json.dumps([v.tags for v in shared_registry.search_model_versions()]),
        Path(paths.GATE_DECISION).read_text(),
        "\n".join(gate_lines(json.loads(Path(paths.GATE_DECISION).read_text()))),  # the PR report's
        "".join(capsys.readouterr()),
        server_log.read_text(),
    ]
    assert runs and all(tracking_server.password not in text for text in written)


def run_gate(root: Path, command: str, **env: str) -> subprocess.CompletedProcess:
    """The gate stage (``gate``) or a registry command, as a person runs them."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENTOML_"))}
    module = ["stages.gate"] if command == "gate" else ["sentiment.registry", command]
    return subprocess.run(
        [sys.executable, "-m", *module],
        cwd=root,
        env={**clean, "PYTHONPATH": str(Path(__file__).parent.parent), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("command", ["gate", "promote", "rollback", "export"])
@pytest.mark.slow
def test_without_credentials_each_command_fails_in_one_line(
    command: str, shared_registry: MlflowClient, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    url = tracking_server.url
    make_model(paths.CHAMPION, 4)
    if command == "promote":
        gate.run_stage(PARAMS)  # a decision to act on, made with credentials
    proc = run_gate(Path.cwd(), command, MLFLOW_TRACKING_URI=url, BENTOML_HOME=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "401" in proc.stderr and "MLFLOW_TRACKING_PASSWORD" in proc.stderr


@pytest.mark.slow
def test_a_password_in_the_tracking_uri_is_shown_redacted(
    shared_registry: MlflowClient, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    url = tracking_server.url
    wrong = "not-the-password"
    with_password = url.replace("http://", f"http://{tracking_server.user}:{wrong}@")
    proc = run_gate(Path.cwd(), "rollback", MLFLOW_TRACKING_URI=with_password)
    assert proc.returncode == 1 and wrong not in proc.stdout + proc.stderr
    assert redact_uri(with_password) in proc.stderr
    assert redact_uri(with_password) == url.replace(
        "http://", f"http://{tracking_server.user}:***@"
    )
    assert redact_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_the_ui_api_sees_a_training_experiment(
    shared_registry: MlflowClient, tracking_server: TrackingServer
) -> None:
    """What MLflow's UI reads (its ``ajax-api``) on a real server: the experiment says it is
    a training experiment, so the UI opens on its runs, not on a GenAI project's traces."""
    import httpx

    name = setting("MLFLOW_EXPERIMENT_NAME")
    reply = httpx.get(
        f"{tracking_server.url}/ajax-api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": name},
        auth=(tracking_server.user, tracking_server.password),
        timeout=30,
    )
    reply.raise_for_status()
    tags = {t["key"]: t["value"] for t in reply.json()["experiment"]["tags"]}
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert "DVC md5" in tags["mlflow.note.content"]
