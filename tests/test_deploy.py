"""The team stack's compose file is valid Compose, and agrees with the project: the drivers
its MLflow server installs are the lock's, the job consumers are off, Prometheus scrapes the
service and the drift file where they listen, and every variable it sets is one the code reads.
The stand-ins' override only replaces what it must, and stack.env.example names every variable
the files read. (tests/test_stack.py brings the stack up.)"""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.conftest import BIN, REPO

DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
STAND_INS = yaml.safe_load((DEPLOY / "compose.stand-ins.yaml").read_text())
LOCK = dict(
    line.split("==")
    for line in (REPO / "requirements/main.lock").read_text().splitlines()
    if "==" in line
)


def test_the_compose_files_are_valid_compose() -> None:
    subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(DEPLOY / "compose.yaml"),
            str(DEPLOY / "compose.stand-ins.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    assert "name" not in COMPOSE, "Compose 1 refuses a top-level name (stack.env names it)"
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
    service_port = services["sentiment"]["ports"][0].rsplit(":", 1)[1]
    exporter_port = services["node-exporter"]["ports"][0].rsplit(":", 1)[1]
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


def test_the_stand_ins_replace_images_and_starts_only() -> None:
    """Every service but the service image and Grafana from the stand-in image, with only
    how it starts changed: ports, volumes, environment and dependencies stay the stack's."""
    replaced = STAND_INS["services"]
    assert set(replaced) == set(COMPOSE["services"]) - {"sentiment"}
    assert replaced.pop("grafana") == {"profiles": ["grafana"]}  # in neither Debian nor PyPI
    allowed = {"image", "user", "entrypoint", "command", "healthcheck"}
    for name, service in replaced.items():
        assert set(service) <= allowed, name
        assert service["image"] == "${STAND_IN_IMAGE:-sentiment-stand-in:latest}", name
    assert "command" not in replaced["mlflow"], "the server starts as the stack starts it"


def test_the_example_env_file_names_every_variable_the_files_read() -> None:
    read = set()
    for path in (DEPLOY / "compose.yaml", DEPLOY / "compose.stand-ins.yaml"):
        text = re.sub(r"\$\$", "", path.read_text())  # $$: the container's shell, not Compose
        read |= set(re.findall(r"\$\{(\w+)", text))
    example = (DEPLOY / "stack.env.example").read_text()
    named = set(re.findall(r"^(\w+)=", example, flags=re.M))
    # STAND_IN_IMAGE has the tag deploy/stand-ins/build.sh gives by default
    assert read - {"STAND_IN_IMAGE"} <= named, read - named
    assert "COMPOSE_PROJECT_NAME" in named
