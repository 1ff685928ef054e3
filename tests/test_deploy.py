"""The team stack's compose file is valid Compose, and agrees with the project: the drivers
its MLflow server installs are the lock's, the job consumers are off, Prometheus scrapes the
service where it listens, and every variable it sets is one the code reads."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import BIN, REPO

DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
LOCK = dict(
    line.split("==")
    for line in (REPO / "requirements.lock").read_text().splitlines()
    if "==" in line
)


def test_the_compose_file_is_valid_compose() -> None:
    subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    assert set(COMPOSE["services"]) == {
        "postgres",
        "minio",
        "bucket",
        "mlflow",
        "sentiment",
        "prometheus",
    }


def test_the_tracking_server_runs_as_the_tests_run_it() -> None:
    mlflow = COMPOSE["services"]["mlflow"]
    command = " ".join(mlflow["command"])
    pins = dict(re.findall(r'"([\w-]+)(?:\[\w+\])?==([\w.]+)"', command))
    assert pins == {"psycopg": LOCK["psycopg"], "boto3": LOCK["boto3"]}
    assert '--backend-store-uri "postgresql://' in command
    assert "--artifacts-destination s3://sentiment/mlflow" in command
    assert mlflow["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    version = mlflow["image"].rsplit(":v", 1)[1]
    assert LOCK["mlflow"] == version, "the server runs the client's MLflow version"


def test_prometheus_scrapes_the_service_where_it_listens() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = [
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    service = COMPOSE["services"]["sentiment"]
    port = service["ports"][0].split(":")[1]
    assert targets == [f"sentiment:{port}"]
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package has it)")
    subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")], check=True)


def test_the_service_variables_are_ones_the_service_reads() -> None:
    service_code = (REPO / "service.py").read_text()
    for name in COMPOSE["services"]["sentiment"]["environment"]:
        assert name in service_code, name
