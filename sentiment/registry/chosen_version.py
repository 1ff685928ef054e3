"""Put a chosen registered version into production (``deploy --version N``).

The version's files are checked against their sha256 record and loaded through the
allowlist, then the gate's absolute rules are re-checked on the current test split (the
macro-F1 floor, the size budget, and behaviour against production); the paired "beats
production" rule does not apply, since going back or sideways is a deliberate choice. A
version that fails is refused unless forced. Then, as in promote and rollback, every step is
undone if a later one fails: export to the BentoML store, tags on the version (the reason,
the rules' outcome, ``--force``), ``previous-production`` to the old production, and
``production`` to N. ``rollback`` undoes a deploy.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sentiment import paths
from sentiment.fileio import read_split
from sentiment.models.trust import verify_digests
from sentiment.registry.decision import assess, assess_version, deploy_rules
from sentiment.registry.promotion import ensure_served
from sentiment.registry.store import (
    PREVIOUS,
    PRODUCTION,
    Steps,
    delete_bento,
    download_version,
    export_to_bentoml,
    production_version,
    recorded_run,
    restore_alias,
    unchanged,
)
from sentiment.tracking import configure, redact_uri, tracking_uri

DEPLOY_TAGS = ("deploy.reason", "deploy.rules", "deploy.forced", "deploy.replaced")


class DeployRefused(ValueError):
    """The chosen version fails the gate's absolute rules and ``--force`` was not given."""


def registered_version(client: MlflowClient, name: str, version: str) -> Any:
    """The registry's version ``version`` of ``name``; a one-line error when there is none."""
    try:
        return client.get_model_version(name, version)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ValueError(
                f"{name} has no version {version} in registry {redact_uri(tracking_uri())}"
            ) from err
        raise


def failing_rules(rules: dict[str, Any]) -> str | None:
    """The rules a version fails, each with its value and threshold; None when it passes."""
    failing = []
    for name, rule in rules.items():
        if rule["passed"]:
            continue
        if name == "behaviour":
            suite, drop = max(rule["drops"].items(), key=lambda item: item[1])
            failing.append(f"behaviour: {suite} drops {drop} > {rule['threshold']}")
        else:
            side = "<" if name == "min_f1" else ">"
            failing.append(f"{name} {rule['candidate']} {side} {rule['threshold']}")
    return "; ".join(failing) or None


def restore_tags(
    client: MlflowClient, name: str, version: str, before: dict[str, str]
) -> Callable[[], None]:
    """An undo that puts the deploy tags of a version back as they were."""

    def undo() -> None:
        for key in DEPLOY_TAGS:
            if key in before:
                client.set_model_version_tag(name, version, key, before[key])
            else:
                client.delete_model_version_tag(name, version, key)

    return undo


def deploy(params: dict[str, Any], version: int, reason: str, force: bool = False) -> str:
    """Move ``production`` to ``version`` (and ``previous-production`` to the old production)
    after checking it; re-export it to the BentoML store. Returns what was done."""
    configure()
    client = MlflowClient()
    name, number = params["registered_model"], str(version)
    target = registered_version(client, name, number)
    current = production_version(client, name)
    if current is not None and str(current.version) == number:
        return f"version {number} is already production; {ensure_served(client, params, target)}"
    texts, labels = read_split(paths.SPLITS["test"])
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, digests = download_version(client, name, number, Path(tmp))
        verify_digests(model_dir, digests)  # before anything is loaded or moved
        production = (
            None
            if current is None
            else assess_version(client, name, str(current.version), texts, labels)
        )
        rules = deploy_rules(assess(model_dir, texts, labels), production, params)
        failing = failing_rules(rules)
        if failing and not force:
            raise DeployRefused(
                f"version {number} fails the gate's rules ({failing}); --force deploys it anyway"
            )
        replaced = "none" if current is None else str(current.version)
        tags = {
            "deploy.reason": reason,
            "deploy.rules": json.dumps(rules, sort_keys=True),
            "deploy.forced": str(bool(failing)).lower(),
            "deploy.replaced": replaced,
        }
        previous_before = production_version(client, name, PREVIOUS)
        run_tags = {"kind": "deploy", "version": number, **tags}
        with recorded_run("deploy", run_tags), Steps(unchanged(current)) as steps:
            extra = {"deployed_from": replaced, "deploy_reason": reason}
            bento_tag = export_to_bentoml(model_dir, params["bento_model"], number, digests, extra)
            steps.done(f"BentoML model {bento_tag}", lambda: delete_bento(bento_tag))
            restore = restore_tags(client, name, number, dict(target.tags))
            steps.done("version tags", restore, unused=True)
            for key, value in tags.items():
                client.set_model_version_tag(name, number, key, value)
            if current is not None:
                client.set_registered_model_alias(name, PREVIOUS, current.version)
                steps.done(PREVIOUS, restore_alias(client, name, PREVIOUS, previous_before))
            client.set_registered_model_alias(name, PRODUCTION, number)
    forced = f" (forced past: {failing})" if failing else ""
    return f"version {number} is production (was {replaced}), BentoML {bento_tag}{forced}"
