"""Acting on the gate's decision: promote (register, export, move the aliases, every step
undone if a later one fails), roll back, and hand the production model out (export, download).
Idempotent: ``act`` decides again first when production moved since the stage ran."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from sentiment import paths
from sentiment.fileio import atomic_path
from sentiment.models.mlflow_model import log_model
from sentiment.models.trust import (
    MODEL_CARD_KEY,
    UntrustedModelError,
    file_digests,
    verify_digests,
)
from sentiment.registry.decision import decision_for
from sentiment.registry.store import (
    DIGESTS_TAG,
    MODEL_MD5_TAG,
    PREVIOUS,
    PRODUCTION,
    Steps,
    delete_bento,
    download_version,
    export_to_bentoml,
    export_version,
    production_version,
    recorded_digests,
    recorded_run,
    restore_alias,
    served,
    unchanged,
)
from sentiment.tracking import (
    configure,
    dvc_md5,
    git_info,
    redact_uri,
    tracking_uri,
)


def champion_card(model_md5: str | None) -> str | None:
    """The gate's model card (Markdown) of the champion with DVC md5 ``model_md5``; None when
    the gate wrote none, or one of another model."""
    if not paths.MODEL_CARD_JSON.is_file() or not paths.MODEL_CARD.is_file():
        return None
    card = json.loads(paths.MODEL_CARD_JSON.read_text())
    return paths.MODEL_CARD.read_text() if card["model"]["model_md5"] == model_md5 else None


def promote(client: MlflowClient, params: dict, tags: dict[str, str], old_version) -> dict:
    """Register (with the model card as the version's description), export (the card in the
    BentoML model's metadata), move aliases; undo everything done so far if a step fails."""
    name = params["registered_model"]
    digests = file_digests(paths.CHAMPION)
    tags = {**tags, DIGESTS_TAG: json.dumps(digests, sort_keys=True)}
    extra = {k: tags[k] for k in ("test.macro_f1", "git.commit", "params.hash", "data.md5.test")}
    card = champion_card(tags.get(MODEL_MD5_TAG))
    if card is not None:
        extra[MODEL_CARD_KEY] = card
    previous_before = production_version(client, name, PREVIOUS)
    with Steps(unchanged(old_version)) as steps:
        info = log_model(paths.CHAMPION)
        version = mlflow.register_model(info.model_uri, name, tags=tags)
        steps.done(
            f"version {version.version}",
            lambda: client.delete_model_version(name, version.version),
            unused=True,
        )
        if card is not None:
            client.update_model_version(name, version.version, description=card)
        bento_tag = export_to_bentoml(
            paths.CHAMPION, params["bento_model"], version.version, digests, extra
        )
        steps.done(f"BentoML model {bento_tag}", lambda: delete_bento(bento_tag))
        if old_version is not None:
            client.set_registered_model_alias(name, PREVIOUS, old_version.version)
            steps.done(PREVIOUS, restore_alias(client, name, PREVIOUS, previous_before))
        client.set_registered_model_alias(name, PRODUCTION, version.version)
    return {"version": str(version.version), "bento_tag": bento_tag}


def ensure_served(client: MlflowClient, params: dict, version: Any) -> str:
    """Export ``version`` unless the store's latest model already is it; say which."""
    digests = recorded_digests(version)
    if served(params["bento_model"]) == (str(version.version), digests):
        return "BentoML store up to date"
    return f"exported to BentoML as {export_version(client, params, version, {})}"


def identity(version: Any, model_md5: str | None) -> str | None:
    """What a production model is, for "did production move?": its model md5 if tagged."""
    if version is None:
        return None
    number = version["version"] if isinstance(version, dict) else version.version
    return model_md5 or f"version {number}"


def act(params: dict[str, Any]) -> str:
    """Make the registry and the BentoML store match the decision; idempotent.

    Decides again first when production is no longer the model the decision compared
    against (moved, rolled back, or another registry). Never writes ``decision.json``.
    """
    configure()
    client = MlflowClient()
    name = params["registered_model"]
    if not paths.GATE_DECISION.is_file():
        raise FileNotFoundError(f"{paths.GATE_DECISION} is missing: run dvc repro first")
    record = json.loads(paths.GATE_DECISION.read_text())
    candidate_md5 = dvc_md5(paths.CHAMPION)
    if candidate_md5 != record["candidate"]["model_md5"]:
        raise UntrustedModelError(
            f"{paths.CHAMPION} is not the model {paths.GATE_DECISION} decided on: "
            "run dvc repro first"
        )
    current = production_version(client, name)
    current_md5 = None if current is None else current.tags.get(MODEL_MD5_TAG)
    if current is not None and current_md5 == candidate_md5:
        served_now = ensure_served(client, params, current)
        return f"version {current.version} is already production; {served_now}"
    then = record["production"]
    redecided = identity(current, current_md5) != identity(then, then and then["model_md5"])
    if redecided:
        record = decision_for(client, params, paths.CHAMPION, paths.SPLITS["test"])
    if not record["promote"]:
        failing = ", ".join(r for r, v in record["rules"].items() if not v["passed"])
        kept = f"kept production (failing: {failing})"
        if current is None:
            return f"{kept}; no production model in the registry"
        return f"{kept}; version {current.version}; {ensure_served(client, params, current)}"
    tags = {
        "data.md5.test": record["data_md5"][str(paths.SPLITS["test"])],
        MODEL_MD5_TAG: candidate_md5,
        "params.hash": record["params_hash"],
        "git.commit": git_info()["git.commit"],
        "candidate": str(record["candidate"]["name"]),
        "test.macro_f1": str(record["candidate"]["macro_f1"]),
        "size_mb": str(record["candidate"]["size_mb"]),
    }
    with recorded_run("promote", {"kind": "promote", **tags}):
        promoted = promote(client, params, tags, current)
    note = (
        " (decided again: production moved since reports/gate/decision.json)" if redecided else ""
    )
    return f"promoted as version {promoted['version']}, BentoML {promoted['bento_tag']}{note}"


def rollback(params: dict[str, Any]) -> dict[str, str]:
    """Swap ``production`` and ``previous-production`` and re-export the new production;
    undo what was done if a step fails."""
    configure()
    client = MlflowClient()
    name = params["registered_model"]
    current, previous = production_version(client, name), production_version(client, name, PREVIOUS)
    if current is None or previous is None:
        raise SystemExit(f"rollback: {name} needs both '{PRODUCTION}' and '{PREVIOUS}' aliases")
    with Steps(unchanged(current)) as steps:
        bento_tag = export_version(client, params, previous, {"rolled_back_from": current.version})
        steps.done(f"BentoML model {bento_tag}", lambda: delete_bento(bento_tag))
        client.set_registered_model_alias(name, PRODUCTION, previous.version)
        steps.done(PRODUCTION, restore_alias(client, name, PRODUCTION, current))
        client.set_registered_model_alias(name, PREVIOUS, current.version)
    return {
        "production": str(previous.version),
        "previous-production": str(current.version),
        "bento_tag": bento_tag,
    }


def required_production(params: dict[str, Any], command: str) -> tuple[MlflowClient, Any]:
    """The registry client and its production version; exit with one line if there is none."""
    configure()
    client = MlflowClient()
    name = params["registered_model"]
    current = production_version(client, name)
    if current is None:
        raise SystemExit(
            f"{command}: {name} has no '{PRODUCTION}' alias in registry "
            f"{redact_uri(tracking_uri())}: promote a model first, or set MLFLOW_TRACKING_URI"
        )
    return client, current


def export_production(params: dict[str, Any]) -> str:
    """Put the registry's production model into the BentoML store (image builds, CI)."""
    client, current = required_production(params, "export")
    return export_version(client, params, current, {})


def download_production(params: dict[str, Any], out: Path) -> str:
    """The registry's production model directory, checked against its sha256 record, to
    ``out`` (e.g. for drift to score traffic with the model that served it)."""
    client, current = required_production(params, "download")
    with tempfile.TemporaryDirectory() as tmp:
        name = params["registered_model"]
        model_dir, digests = download_version(client, name, str(current.version), Path(tmp))
        verify_digests(model_dir, digests)
        with atomic_path(out) as dest:
            shutil.copytree(model_dir, dest)
    return f"version {current.version} -> {out}"
