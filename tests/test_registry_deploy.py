"""deploy --version N: any registered version into production, checked first, every step
undone on failure, on the SQLite registry and on a tracking server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from sentiment.models.trust import UntrustedModelError
from sentiment.registry import promotion, store
from sentiment.registry.chosen_version import DEPLOY_TAGS, DeployRefused, deploy
from tests import test_gate
from tests.conftest import REPO
from tests.test_gate import Registry, assert_failure_changes_nothing, served_version, two_versions

registry = test_gate.registry  # the same fixture: SQLite, and a tracking server on loopback


def three_versions(registry: Registry) -> None:
    """Production 3, previous-production 2, and version 1 two promotions back."""
    two_versions(registry)
    promotion.act(registry.params)
    assert registry.aliases() == {"production": "3", "previous-production": "2"}


def deploy_tags(registry: Registry, version: str) -> dict[str, str]:
    tags = registry.client.get_model_version(registry.params["registered_model"], version).tags
    return {key: tags[key] for key in DEPLOY_TAGS if key in tags}


@pytest.mark.slow
def test_deploy_back_two_versions_then_forward_again(registry: Registry) -> None:
    params = registry.params
    three_versions(registry)
    done = deploy(params, 1, "back to the model before the March data")
    assert done.startswith("version 1 is production (was 3), BentoML sentiment:")
    assert registry.aliases() == {"production": "1", "previous-production": "3"}
    assert served_version() == "1"
    tags = deploy_tags(registry, "1")
    assert tags["deploy.reason"] == "back to the model before the March data"
    assert tags["deploy.forced"] == "false" and tags["deploy.replaced"] == "3"
    rules = json.loads(tags["deploy.rules"])
    assert set(rules) == {"min_f1", "size", "behaviour"}  # no paired rule: a deliberate move
    assert all(rule["passed"] for rule in rules.values())

    assert promotion.rollback(params)["production"] == "3"  # rollback undoes a deploy
    assert registry.aliases() == {"production": "3", "previous-production": "1"}
    assert served_version() == "3"
    before = registry.state()
    assert deploy(params, 3, "again").startswith("version 3 is already production; BentoML")
    assert registry.state() == before

    assert deploy(params, 2, "forward to 2")  # and to any other registered version
    assert registry.aliases() == {"production": "2", "previous-production": "3"}
    assert served_version() == "2"


@pytest.mark.slow
def test_a_version_failing_the_rules_is_refused_unless_forced(registry: Registry) -> None:
    three_versions(registry)
    strict = {**registry.params, "min_f1": 0.999}
    before = registry.state()
    with pytest.raises(DeployRefused, match=r"version 1 fails the gate's rules \(min_f1 0\.\d+ < "):
        deploy(strict, 1, "try")
    assert registry.state() == before and deploy_tags(registry, "1") == {}
    done = deploy(strict, 1, "incident 42: the new model mislabels refunds", force=True)
    assert "forced past: min_f1" in done
    assert registry.aliases() == {"production": "1", "previous-production": "3"}
    tags = deploy_tags(registry, "1")
    assert tags["deploy.forced"] == "true"
    assert not json.loads(tags["deploy.rules"])["min_f1"]["passed"]


@pytest.mark.slow
def test_unknown_and_unrecorded_versions_are_refused_before_anything_moves(
    registry: Registry,
) -> None:
    three_versions(registry)
    name = registry.params["registered_model"]
    before = registry.state()
    with pytest.raises(ValueError, match=f"{name} has no version 9 in registry"):
        deploy(registry.params, 9, "typo")
    registry.client.delete_model_version_tag(name, "1", store.DIGESTS_TAG)
    with pytest.raises(UntrustedModelError, match=r"version 1 has no 'model\.sha256' tag"):
        deploy(registry.params, 1, "not ours")
    assert registry.state() == before


def fail_setting_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail after the first deploy tag has been set."""
    original = MlflowClient.set_model_version_tag

    def set_tag(self, name, version, key, value):
        if key == "deploy.forced":
            raise RuntimeError("injected failure at tags")
        return original(self, name, version, key, value)

    monkeypatch.setattr(MlflowClient, "set_model_version_tag", set_tag)


@pytest.mark.parametrize(
    "step", ["export", "tags", "previous-production", "production", "unreachable"]
)
@pytest.mark.slow
def test_a_failed_deploy_leaves_everything_as_it_was(
    step: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError(f"injected failure at {step}")

    def command(params: dict) -> str:  # the alias and registry failures come from fail_at
        with pytest.MonkeyPatch.context() as patch:
            if step == "tags":
                fail_setting_tag(patch)
            elif step == "export":  # deploy exports the checked files it downloaded
                patch.setattr("sentiment.registry.chosen_version.export_to_bentoml", boom)
            return deploy(params, 1, "back to 1")

    before = assert_failure_changes_nothing(registry, step, command, monkeypatch)
    assert before[1] == {"production": "2", "previous-production": "1"}
    assert deploy_tags(registry, "1") == {}  # tags set before the failure are gone again


@pytest.mark.slow
def test_the_command_reports_in_one_line(registry: Registry) -> None:
    three_versions(registry)
    params = yaml.safe_load(Path("params.yaml").read_text())  # the project copy's
    params["gate"]["registered_model"] = registry.params["registered_model"]
    Path("params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def gate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sentiment.registry", "deploy", *args],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip

    done = gate("--version", "1", "--reason", "by hand")
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]  # after MLflow's "View run" lines on a server
    assert last.startswith("deploy: version 1 is production (was 3)")
    unknown = gate("--version", "9", "--reason", "typo")
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert unknown.stderr.startswith("deploy: ") and "no version 9 in registry" in unknown.stderr
    missing = gate("--version", "1")
    assert missing.returncode == 2 and "deploy needs --version N and --reason" in missing.stderr
