"""A shared registry for real: `mlflow server` with MLflow's basic-auth app on loopback.

Promote, rollback and export run over HTTP with credentials from MLFLOW_TRACKING_USERNAME /
MLFLOW_TRACKING_PASSWORD, fail with one line without them, and leave the credentials in no
log, param, tag or decision file.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from stages import gate
from stages.report import gate_lines
from stages.tracking import redact_uri
from tests.conftest import stop_group, wait_ready
from tests.test_gate import PARAMS, alias, make_model, project_copy, served_version
from tests.test_service import free_port

BIN = Path(sys.executable).parent
USER, PASSWORD = "admin", f"pw-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory):
    """``mlflow server --app-name basic-auth`` (SQLite, served artifacts); yields its URL.

    Stopped as a process group: MLflow's server runs uvicorn (and, unless switched off as
    here, job consumers) in child processes.
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    config = root / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    port = free_port()
    log = root / "server.log"
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--app-name",
            "basic-auth",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, f"{url}/health", log)
        yield url, log
    finally:
        stop_group(proc, log)


@pytest.fixture
def shared_registry(
    tracking_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> MlflowClient:
    """test_gate's project copy, pointed at the tracking server with credentials."""
    url, _ = tracking_server
    project_copy(tmp_path, monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    gate.configure()
    return MlflowClient()


def test_promote_rollback_export_over_http_with_credentials(
    shared_registry: MlflowClient, tracking_server, capsys: pytest.CaptureFixture
) -> None:
    _, server_log = tracking_server
    make_model(gate.CANDIDATE_DIR, 4)
    assert gate.run_stage(PARAMS)["candidate_version"] == "1"
    make_model(gate.CANDIDATE_DIR, 6)
    assert gate.run_stage(PARAMS)["candidate_version"] == "2"
    assert alias(shared_registry, "production") == "2"
    assert served_version() == "2"

    assert gate.rollback(PARAMS)["production"] == "1"
    assert alias(shared_registry, "production") == "1"
    gate.export_production(PARAMS)
    assert served_version() == "1"

    # The credentials are nowhere the pipeline writes: runs, versions, decision, output.
    runs = shared_registry.search_runs(
        [e.experiment_id for e in shared_registry.search_experiments()]
    )
    written = [
        json.dumps([[r.data.params, r.data.tags] for r in runs]),
        json.dumps([v.tags for v in shared_registry.search_model_versions()]),
        Path(gate.DECISION).read_text(),
        "\n".join(gate_lines(json.loads(Path(gate.DECISION).read_text()))),  # the PR report's
        "".join(capsys.readouterr()),
        server_log.read_text(),
    ]
    assert runs and all(PASSWORD not in text for text in written)


def run_gate(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENTOML_"))}
    return subprocess.run(
        [sys.executable, "-m", "stages.gate", *args],
        cwd=root,
        env={**clean, "PYTHONPATH": str(Path(__file__).parent.parent), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("command", ["gate", "rollback", "export"])
def test_without_credentials_each_command_fails_in_one_line(
    command: str, shared_registry: MlflowClient, tracking_server, tmp_path: Path
) -> None:
    url, _ = tracking_server
    make_model(gate.CANDIDATE_DIR, 4)
    proc = run_gate(Path.cwd(), command, MLFLOW_TRACKING_URI=url, BENTOML_HOME=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "401" in proc.stderr and "MLFLOW_TRACKING_PASSWORD" in proc.stderr


def test_a_password_in_the_tracking_uri_is_shown_redacted(
    shared_registry: MlflowClient, tracking_server, tmp_path: Path
) -> None:
    url, _ = tracking_server
    wrong = "not-the-password"
    with_password = url.replace("http://", f"http://{USER}:{wrong}@")
    proc = run_gate(Path.cwd(), "rollback", MLFLOW_TRACKING_URI=with_password)
    assert proc.returncode == 1 and wrong not in proc.stdout + proc.stderr
    assert redact_uri(with_password) in proc.stderr
    assert redact_uri(with_password) == url.replace("http://", f"http://{USER}:***@")
    assert redact_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
