"""monitoring/: the Prometheus config and rules pass promtool (config, rules, and rule tests
in which every alert both fires and stays quiet), the dashboard and the compose stack agree
with them, and a real Prometheus scraping the live service evaluates every panel's query
and every rule's expression with data and without an error."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sentiment import paths
from sentiment.monitoring.prometheus import (
    CONFIDENCE_MEAN,
    POSITIVE_SHARE,
    reference_rules,
    write_drift_metrics,
    write_reference_rules,
)
from sentiment.settings import setting
from tests.conftest import REPO, free_port, stop_group, wait_ready
from tests.test_service import bento_home, post, serve  # noqa: F401 (bento_home: a fixture)

MONITORING = REPO / "deploy" / "monitoring"
RULES = yaml.safe_load((MONITORING / "rules" / "sentiment.yml").read_text())
RULE_TESTS = yaml.safe_load((MONITORING / "tests" / "rules_test.yml").read_text())
DASHBOARD_JSON = MONITORING / "grafana" / "dashboards" / "sentiment.json"
DASHBOARD = yaml.safe_load(DASHBOARD_JSON.read_text())  # JSON is YAML
COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())


def rules(kind: str) -> list[dict]:
    """Every rule of ``kind`` ("alert" or "record") in deploy/monitoring/rules/sentiment.yml."""
    return [rule for group in RULES["groups"] for rule in group["rules"] if kind in rule]


def panel_queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in DASHBOARD["panels"] for t in p["targets"]]


def measured(expr: str) -> str:
    """An alert expression without its final threshold: the quantity it compares."""
    match = re.fullmatch(r"(?s)(.*?)\s*(?:>|<|==|>=|<=)\s*[\d.]+", expr.strip())
    return match.group(1) if match else expr


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (.ci/run installs Debian's prometheus package)"
        if setting("SENTIMENT_REQUIRE_SERVERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def laid_out(root: Path, reference: Path) -> Path:
    """The layout deploy/compose.yaml mounts at /etc/prometheus, under ``root``."""
    shutil.copy(MONITORING / "prometheus.yml", root / "prometheus.yml")
    shutil.copytree(MONITORING / "rules", root / "rules")
    (root / "reference").mkdir()
    shutil.copy(reference, root / "reference" / "reference.rules.yml")
    return root / "prometheus.yml"


def test_promtool_checks_the_config_the_rules_and_the_rule_tests(
    promtool: str, tmp_path: Path
) -> None:
    def run(*args: str | Path) -> None:
        proc = subprocess.run([promtool, *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 0, f"promtool {args}: {proc.stdout}{proc.stderr}"

    config = laid_out(tmp_path, MONITORING / "tests" / "reference.rules.yml")
    run("check", "config", config)
    run("check", "rules", *sorted((MONITORING / "rules").glob("*.yml")))
    run("test", "rules", MONITORING / "tests" / "rules_test.yml")
    pipeline_reference = REPO / paths.DRIFT_REFERENCE_RULES
    if pipeline_reference.exists():  # what `dvc repro drift` wrote
        run("check", "rules", pipeline_reference)
    elif setting("SENTIMENT_REQUIRE_MODELS"):
        pytest.fail(f"{paths.DRIFT_REFERENCE_RULES} is missing: run `dvc repro drift`")


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing, quiet = set(), set()
    for case in RULE_TESTS["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules("alert")}
    assert alerts - firing == set(), "alerts no rule test makes fire"
    assert alerts - quiet == set(), "alerts no rule test keeps quiet"
    assert RULE_TESTS["rule_files"] == ["../rules/sentiment.yml", "reference.rules.yml"]


def test_the_reference_rules_hold_the_champions_figures(tmp_path: Path) -> None:
    path = tmp_path / "reference.rules.yml"
    write_reference_rules(path, {"positive_share": 0.712, "confidence_mean": 0.934})
    written = yaml.safe_load(path.read_text())
    assert written == reference_rules({"positive_share": 0.712, "confidence_mean": 0.934})
    records = {r["record"]: r["expr"] for r in written["groups"][0]["rules"]}
    assert records == {POSITIVE_SHARE: "vector(0.712)", CONFIDENCE_MEAN: "vector(0.934)"}
    used = " ".join(rule["expr"] for rule in rules("alert"))
    assert POSITIVE_SHARE in used and CONFIDENCE_MEAN in used


def drift_results(retrain: bool) -> tuple[list[dict], dict]:
    tests = {
        "label_share": {"p_adjusted": 0.0004, "drift": True},
        "score_ks": {"p_adjusted": 0.31, "drift": False},
    }
    verdict = {"windows": 2, "drifting": 2 if retrain else 0, "retrain": retrain}
    return [{"tests": tests}, {"tests": tests}], verdict


def test_drift_metrics_are_the_text_exposition_format(tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "drift.prom"
    write_drift_metrics(path, *drift_results(retrain=True))
    samples = {
        (s.name, s.labels.get("test")): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
    }
    assert samples[("sentiment_drift_p_value", "label_share")] == 0.0004
    assert samples[("sentiment_drift_test_drifting", "score_ks")] == 0
    assert samples[("sentiment_drift_retrain", None)] == 1
    assert samples[("sentiment_drift_windows_drifting", None)] == 2
    assert samples[("sentiment_drift_last_run_timestamp_seconds", None)] > time.time() - 60
    assert list(path.parent.iterdir()) == [path], "written whole, no temporary file left"


def test_the_dashboard_and_the_stack_agree_with_the_rules() -> None:
    provisioning = MONITORING / "grafana" / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [datasource] = source["datasources"]
    uids = {p["datasource"]["uid"] for p in DASHBOARD["panels"]}
    uids |= {t["datasource"]["uid"] for p in DASHBOARD["panels"] for t in p["targets"]}
    assert uids == {datasource["uid"]}
    port = COMPOSE["services"]["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{port}"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "sentiment.yml").read_text())[
        "providers"
    ]
    mounts = dict(v.rsplit(":", 2)[:2] for v in COMPOSE["services"]["grafana"]["volumes"])
    assert mounts["./monitoring/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    recorded = {rule["record"] for rule in rules("record")} | {POSITIVE_SHARE, CONFIDENCE_MEAN}
    for _, expr in panel_queries():
        for name in re.findall(r"sentiment:[\w:]+", expr):
            assert name in recorded, f"the dashboard reads {name}, which no rule records"
    assert len(DASHBOARD["panels"]) == 10  # as docs/monitoring.md counts them
    topics = " ".join(p["title"] for p in DASHBOARD["panels"]).lower()
    for topic in ("requests", "latency", "error", "batch", "label", "confidence", "length"):
        assert topic in topics
    assert "model version" in topics


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def drift_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A file server over a directory holding what `sentiment.monitoring --prometheus` writes (as
    node-exporter's textfile collector would serve it): its host:port."""
    folder = tmp_path_factory.mktemp("textfile")
    write_drift_metrics(folder / "drift.prom", *drift_results(retrain=True))
    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.fixture(scope="module")
def live(
    bento_home: Path,  # noqa: F811 (the fixture imported above)
    drift_exporter: str,
    promtool: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, str]]:
    """The service on loopback, and a real Prometheus (Debian's, beside promtool) scraping
    it and the drift file every second with deploy/monitoring/'s rules: (service URL, Prometheus
    URL)."""
    log_dir = tmp_path_factory.mktemp("service")
    service, service_url = serve(bento_home, log_dir)
    root = tmp_path_factory.mktemp("prometheus")
    config_path = laid_out(root, MONITORING / "tests" / "reference.rules.yml")
    config = yaml.safe_load(config_path.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    targets = {"sentiment": service_url.removeprefix("http://"), "drift": drift_exporter}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        if job["job_name"] == "drift":
            job["metrics_path"] = "/drift.prom"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    prometheus = subprocess.Popen(
        [
            str(Path(promtool).with_name("prometheus")),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(root / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    prometheus_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(service, f"{service_url}/readyz", log_dir / "server.log")
        wait_ready(prometheus, f"{prometheus_url}/-/ready", root / "prometheus.log")
        yield service_url, prometheus_url
    finally:
        stop_group(prometheus, root / "prometheus.log")
        stop_group(service, log_dir / "server.log")


def loaded_rules(prometheus: str) -> dict[str, dict]:
    """The rules Prometheus has loaded, by alert or record name, with their state."""
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    return {rule["name"]: rule for group in groups for rule in group["rules"]}


def query(prometheus: str, expr: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]["result"]


@pytest.mark.slow
def test_a_live_prometheus_evaluates_every_panel_and_rule_with_data(live) -> None:
    service, prometheus = live
    reviews = ["Wonderful shuttle, great grip", "broke on day one, terrible", "okay product"]
    expressions = [
        *(f"{title}: {expr}" for title, expr in panel_queries()),
        *(f"record {rule['record']}: {rule['expr']}" for rule in rules("record")),
        *(f"alert {rule['alert']}: {measured(rule['expr'])}" for rule in rules("alert")),
    ]
    empty = expressions
    deadline = time.monotonic() + 90
    while empty and time.monotonic() < deadline:
        for i in range(4):  # traffic on both routes across several scrapes
            assert post(f"{service}/predict", json={"text": reviews[i % 3]}, timeout=30).is_success
        batch = post(f"{service}/predict_batch", json={"texts": reviews * 5}, timeout=30)
        assert batch.is_success
        time.sleep(1)
        empty = [e for e in expressions if not query(prometheus, e.split(": ", 1)[1])]
    assert empty == [], "no data"

    # An alert without a `for` fires at the first rule evaluation (every second here) after
    # its data arrives, which can come just after the loop above saw the data: wait for it.
    firing = ("SentimentDriftRetrain", "SentimentModelVersionChanged")
    loaded, deadline = loaded_rules(prometheus), time.monotonic() + 30
    while time.monotonic() < deadline and any(
        loaded.get(name, {}).get("state") != "firing" for name in firing
    ):
        time.sleep(0.5)
        loaded = loaded_rules(prometheus)
    assert {r.get("alert") or r["record"] for r in RULES["groups"][0]["rules"]} <= set(loaded)
    assert {r["alert"] for r in rules("alert")} <= set(loaded)
    assert [n for n, rule in loaded.items() if rule["health"] != "ok"] == []
    # Alerts without a `for`: the drift file holds a retrain verdict, and the version
    # answering now did not answer an hour ago (this Prometheus is minutes old).
    assert loaded["SentimentDriftRetrain"]["state"] == "firing"
    assert loaded["SentimentModelVersionChanged"]["state"] == "firing"
    [answering] = query(prometheus, "sum by (model_version) (sentiment_predictions_total)")
    assert answering["metric"]["model_version"] == "7"  # the version the store holds


def test_the_docs_list_every_alert_with_its_wait_and_severity() -> None:
    table = {
        name: (wait, severity)
        for name, wait, severity in re.findall(
            r"^\| `(\w+)` \|[^|]*\| ([^|]*) \| (\w+) \|$",
            (REPO / "docs" / "monitoring.md").read_text(),
            re.MULTILINE,
        )
    }
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Monitoring") : readme.index("## Layout")]
    for rule in rules("alert"):
        name = rule["alert"]
        wait = f"{rule['for'].removesuffix('m')} min" if "for" in rule else "at once"
        assert table[name][0].startswith(wait), f"docs/monitoring.md: {name} waits {wait}"
        assert table[name][1] == rule["labels"]["severity"]
        assert f"`{name}`" in section, f"the README's Monitoring section misses {name}"
    assert set(table) == {rule["alert"] for rule in rules("alert")}


THRESHOLDS = {  # alert: (its comparison in the rule, how the README and docs say it)
    "SentimentErrorRatioHigh": ("> 0.01", "1 %"),
    "SentimentLatencyOverBudget": ("> 0.3", "300 ms"),
    "SentimentPositiveShareMoved": ("> 0.1", "10 points"),
    "SentimentConfidenceMoved": ("> 0.05", "0.05"),
}


@pytest.mark.slow
def test_the_readme_states_the_rules_thresholds_and_waits() -> None:
    readme = (REPO / "README.md").read_text()
    section = " ".join(readme[readme.index("## Monitoring") : readme.index("## Layout")].split())
    docs = (REPO / "docs" / "monitoring.md").read_text()
    for rule in rules("alert"):
        if "for" in rule:
            assert f"{rule['for'].removesuffix('m')} minutes" in section, rule["alert"]
        if rule["alert"] in THRESHOLDS:
            comparison, said = THRESHOLDS[rule["alert"]]
            assert comparison in rule["expr"] and said in section, rule["alert"]
            row = next(line for line in docs.splitlines() if f"`{rule['alert']}`" in line)
            assert said in row, rule["alert"]
