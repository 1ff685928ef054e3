"""The team stack's compose file is valid Compose, and agrees with the project: the drivers
its MLflow server installs are the lock's, the job consumers are off, Prometheus scrapes the
service and the drift file where they listen, and every variable it sets is one the code reads."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.conftest import BIN, REPO

DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
LOCK = dict(
    line.split("==")
    for line in (REPO / "requirements/main.lock").read_text().splitlines()
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
        "node-exporter",
        "grafana",
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


def test_prometheus_scrapes_the_service_and_the_drift_file_where_they_listen() -> None:
    """The config, rules and reference figures mounted where deploy/monitoring/prometheus.yml
    looks; targets at the ports the stack's services listen on (promtool: test_monitoring)."""
    config = yaml.safe_load((REPO / "deploy" / "monitoring" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: (job.get("metrics_path", "/metrics"), job["static_configs"][0]["targets"])
        for job in config["scrape_configs"]
    }
    services = COMPOSE["services"]
    service_port = services["sentiment"]["ports"][0].split(":")[1]
    exporter_port = services["node-exporter"]["ports"][0].split(":")[1]
    assert targets == {
        "sentiment": ("/metrics", [f"sentiment:{service_port}"]),
        "drift": ("/metrics", [f"node-exporter:{exporter_port}"]),
    }
    mounts = dict(v.rsplit(":", 2)[:2] for v in services["prometheus"]["volumes"])
    assert mounts == {
        "./monitoring/prometheus.yml": "/etc/prometheus/prometheus.yml",
        "./monitoring/rules": "/etc/prometheus/rules",
        "../reports/drift/reference.rules.yml": "/etc/prometheus/reference/reference.rules.yml",
    }
    assert config["rule_files"] == ["rules/*.yml", "reference/*.yml"]
    for source in mounts:
        assert (DEPLOY / source).resolve().is_relative_to(REPO)
    textfile = services["node-exporter"]["command"][0].split("=", 1)[1]
    assert services["node-exporter"]["volumes"] == [f"drift-metrics:{textfile}:ro"]


def test_the_service_variables_are_ones_the_service_reads() -> None:
    service_code = (REPO / "service.py").read_text()
    for name in COMPOSE["services"]["sentiment"]["environment"]:
        assert name in service_code, name
