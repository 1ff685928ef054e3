"""gate: promote the champion only if it beats production, in the MLflow registry and BentoML.

Production is the registry alias ``production`` of ``gate.registered_model``. Both the
candidate (``models/champion``) and the current production model are scored on the
*current* test split with evaluate's code; the candidate is promoted only if every rule
holds (``decide``). Promotion registers a version, exports it to the BentoML store as
``gate.bento_model`` and then moves ``production`` (the old one becomes
``previous-production``); a failure at any step undoes the steps before it. Inside a
``dvc exp run`` experiment the gate only decides (``would_promote``); it never promotes.

    python -m stages.gate            # the DVC stage
    python -m stages.gate rollback   # production <-> previous-production, re-exported
    python -m stages.gate export     # production model -> BentoML store (image builds)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from stages.behaviour import run_suite
from stages.common import fail, load_params, read_split, write_json
from stages.evaluate import latency_ms_per_1k
from stages.metrics import macro_f1
from stages.mlflow_model import log_model
from stages.model_files import BENTO_SUBDIR, UntrustedModelError, file_digests, verify_digests
from stages.predictor import Predictor, load_predictor, predict, read_meta
from stages.tracking import (
    configure,
    dvc_md5,
    git_info,
    params_hash,
    redact_uri,
    stage_run,
    tracking_uri,
)

CANDIDATE_DIR = Path("models/champion")
TEST_SPLIT = Path("data/prepared/test.parquet")
DECISION = Path("gate/decision.json")
PRODUCTION, PREVIOUS = "production", "previous-production"
AUTH_ERRORS = ("UNAUTHENTICATED", "PERMISSION_DENIED")  # MLflow error codes: never fall back
DIGESTS_TAG = "model.sha256"  # registry version tag: {relative path: sha256} of its files


def assess(predictor: Predictor, texts: list[str], labels: list[int]) -> dict[str, Any]:
    """Test macro-F1, latency and behavioural pass rates, as evaluate measures them."""
    return {
        "macro_f1": round(macro_f1(labels, predict(predictor, texts)), 4),
        "latency_ms_per_1k": latency_ms_per_1k(predictor, texts),
        "behaviour": run_suite(lambda batch: predict(predictor, batch)),
    }


def decide(candidate: dict, production: dict | None, params: dict) -> dict[str, Any]:
    """Every promotion rule with its values and verdict; ``promoted`` only if all pass."""
    f1 = candidate["macro_f1"]
    rules: dict[str, dict[str, Any]] = {
        "min_f1": {
            "candidate": f1,
            "threshold": params["min_f1"],
            "passed": f1 >= params["min_f1"],
        },
        "latency": {
            "candidate": candidate["latency_ms_per_1k"],
            "threshold": params["max_latency_ms_per_1k"],
            "passed": candidate["latency_ms_per_1k"] <= params["max_latency_ms_per_1k"],
        },
    }
    if production is not None:
        needed = round(production["macro_f1"] + params["min_delta"], 6)
        rules["min_delta"] = {
            "candidate": f1,
            "production": production["macro_f1"],
            "threshold": needed,
            "passed": f1 >= needed,
        }
        drops = {
            name: round(production["behaviour"].get(name, 0.0) - rate, 4)
            for name, rate in candidate["behaviour"].items()
        }
        rules["behaviour"] = {
            "drops": drops,
            "threshold": params["behaviour_tolerance"],
            "passed": all(d <= params["behaviour_tolerance"] for d in drops.values()),
        }
    return {"promoted": all(rule["passed"] for rule in rules.values()), "rules": rules}


def production_version(client: MlflowClient, name: str, alias: str = PRODUCTION):
    """The model version behind an alias, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def download_model_dir(name: str, version: str, dest: Path) -> Path:
    """Fetch a registered version and return its model directory (the pyfunc artifact)."""
    local = Path(
        mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(dest))
    )
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    relative = mlmodel["flavors"]["python_function"]["artifacts"]["model_dir"]["path"]
    return local / relative


def export_to_bentoml(
    model_dir: Path, bento_name: str, version: str, digests: dict[str, str], extra: dict
) -> str:
    """Copy a model directory into the BentoML store with its sha256 record, after checking
    its files against that record (the service checks the copy before loading it); the store
    keeps nothing on failure."""
    import bentoml

    verify_digests(model_dir, digests)
    meta = read_meta(model_dir)
    labels = {
        "registry_version": str(version),
        "flavor": meta["flavor"],
        "candidate": str(meta.get("candidate", meta["flavor"])),
    }
    metadata = {"registry_version": str(version), "sha256": digests, **extra}
    with bentoml.models.create(bento_name, labels=labels, metadata=metadata) as model:
        shutil.copytree(model_dir, Path(model.path) / BENTO_SUBDIR)
    return str(model.tag)


def recorded_digests(version: Any) -> dict[str, str]:
    """The sha256 record a registry version was promoted with."""
    record = version.tags.get(DIGESTS_TAG)
    if record is None:
        raise UntrustedModelError(
            f"registry version {version.version} has no '{DIGESTS_TAG}' tag: it was not "
            "promoted by this gate, so its files cannot be checked"
        )
    return json.loads(record)


def download_version(
    client: MlflowClient, name: str, version: str, dest: Path
) -> tuple[Path, dict[str, str]]:
    """A registered version's model directory and the sha256 record it was promoted with."""
    digests = recorded_digests(client.get_model_version(name, version))
    return download_model_dir(name, version, dest), digests


def promote(client: MlflowClient, params: dict, tags: dict[str, str], old_version) -> dict:
    """Register, export, move aliases; undo everything done so far if a step fails."""
    name = params["registered_model"]
    digests = file_digests(CANDIDATE_DIR)
    info = log_model(CANDIDATE_DIR)
    tags = {**tags, DIGESTS_TAG: json.dumps(digests, sort_keys=True)}
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    bento_tag = None
    try:
        bento_tag = export_to_bentoml(
            CANDIDATE_DIR,
            params["bento_model"],
            version.version,
            digests,
            {
                k: tags[k]
                for k in (
                    "test.macro_f1",
                    "latency_ms_per_1k",
                    "git.commit",
                    "params.hash",
                    "data.md5.test",
                )
            },
        )
        if old_version is not None:
            client.set_registered_model_alias(name, PREVIOUS, old_version.version)
        client.set_registered_model_alias(name, PRODUCTION, version.version)
    except Exception:
        if old_version is not None:
            client.set_registered_model_alias(name, PRODUCTION, old_version.version)
        if bento_tag is not None:
            import bentoml

            bentoml.models.delete(bento_tag)
        client.delete_model_version(name, version.version)
        raise
    return {"version": str(version.version), "bento_tag": bento_tag}


def run_stage(params: dict[str, Any]) -> dict[str, Any]:
    texts, labels = read_split(TEST_SPLIT)
    with stage_run("gate") as run:
        client = MlflowClient()
        name = params["registered_model"]
        candidate_meta = read_meta(CANDIDATE_DIR)
        candidate = assess(load_predictor(CANDIDATE_DIR), texts, labels)
        current = production_version(client, name)
        production = None
        if current is not None:
            # The registry's files, checked against their record and loaded with this
            # project's code: never the code logged beside the model (it runs on load).
            with tempfile.TemporaryDirectory() as tmp:
                model_dir, digests = download_version(client, name, current.version, Path(tmp))
                verify_digests(model_dir, digests)
                production = assess(load_predictor(model_dir), texts, labels)
        decision = decide(candidate, production, params)
        data_md5 = {
            str(TEST_SPLIT): dvc_md5(TEST_SPLIT),
            str(CANDIDATE_DIR): dvc_md5(CANDIDATE_DIR),
        }
        record = {
            **decision,
            "candidate": {"name": candidate_meta.get("candidate"), **candidate},
            "production": None
            if current is None
            else {"version": str(current.version), **production},
            "data_md5": data_md5,
            "params_hash": params_hash(params),
            "git_commit": git_info()["git.commit"],
            "candidate_version": None,
        }
        experiment = os.environ.get("DVC_EXP_NAME")
        if experiment and decision["promoted"]:
            # Experiments compare, they don't ship: promotion runs only from the workspace.
            record |= {"promoted": False, "would_promote": True, "experiment": experiment}
        if record["promoted"]:
            tags = {
                "data.md5.test": data_md5[str(TEST_SPLIT)],
                "model.md5": data_md5[str(CANDIDATE_DIR)],
                "params.hash": record["params_hash"],
                "git.commit": record["git_commit"],
                "candidate": str(candidate_meta.get("candidate")),
                "test.macro_f1": str(candidate["macro_f1"]),
                "latency_ms_per_1k": str(candidate["latency_ms_per_1k"]),
                "mlflow.run_id": run.info.run_id,
            }
            promoted = promote(client, params, tags, current)
            record["candidate_version"] = promoted["version"]
            record["bento_tag"] = promoted["bento_tag"]
        write_json(DECISION, record)
        mlflow.log_metrics(
            {
                "promoted": int(record["promoted"]),
                "candidate.test.macro_f1": candidate["macro_f1"],
            }
        )
        mlflow.log_artifact(str(DECISION))
    return record


def rollback(params: dict[str, Any]) -> dict[str, str]:
    """Swap ``production`` and ``previous-production`` and re-export the new production."""
    configure()
    client = MlflowClient()
    name = params["registered_model"]
    current, previous = production_version(client, name), production_version(client, name, PREVIOUS)
    if current is None or previous is None:
        raise SystemExit(f"rollback: {name} needs both '{PRODUCTION}' and '{PREVIOUS}' aliases")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, digests = download_version(client, name, previous.version, Path(tmp))
        bento_tag = export_to_bentoml(
            model_dir,
            params["bento_model"],
            previous.version,
            digests,
            {"rolled_back_from": current.version},
        )
    client.set_registered_model_alias(name, PRODUCTION, previous.version)
    client.set_registered_model_alias(name, PREVIOUS, current.version)
    return {
        "production": str(previous.version),
        "previous-production": str(current.version),
        "bento_tag": bento_tag,
    }


def export_production(params: dict[str, Any]) -> str:
    """Put the production model into the BentoML store (for image builds, e.g. in CI).

    From the registry when it has a ``production`` alias; otherwise (no registry reachable
    from the build machine) ``models/champion`` after ``dvc pull``, but only when
    ``gate/decision.json``, committed with the pipeline's outputs, says it was promoted.
    """
    configure()
    client = MlflowClient()
    name = params["registered_model"]
    try:
        current = production_version(client, name)
    except MlflowException as err:
        if err.error_code in AUTH_ERRORS:
            raise
        current = None
    if current is not None:
        with tempfile.TemporaryDirectory() as tmp:
            version = str(current.version)
            model_dir, digests = download_version(client, name, version, Path(tmp))
            return export_to_bentoml(model_dir, params["bento_model"], version, digests, {})
    record = json.loads(DECISION.read_text())
    if not record["promoted"]:
        raise SystemExit(
            f"export: no '{PRODUCTION}' alias in the registry and {DECISION} says "
            "the champion was not promoted; set MLFLOW_TRACKING_URI to the registry"
        )
    decided = record["data_md5"][str(CANDIDATE_DIR)]
    if dvc_md5(CANDIDATE_DIR) != decided:
        raise UntrustedModelError(
            f"export: {CANDIDATE_DIR} is not the model {DECISION} promoted (DVC md5 {decided})"
        )
    return export_to_bentoml(
        CANDIDATE_DIR,
        params["bento_model"],
        record["candidate_version"],
        file_digests(CANDIDATE_DIR),
        {"git_commit": record["git_commit"]},
    )


def run_command(command: str, params: dict[str, Any]) -> str:
    """Run one command; return the line that reports what it did."""
    if command == "rollback":
        return f"rollback: {rollback(params)}"
    if command == "export":
        return f"export: {export_production(params)}"
    record = run_stage(params)
    failing = [rule for rule, v in record["rules"].items() if not v["passed"]]
    verdict = (
        f"promoted as version {record['candidate_version']}"
        if record["promoted"]
        else (f"kept production (failing: {', '.join(failing)})")
    )
    return (
        f"gate: {verdict}; candidate test macro-F1 {record['candidate']['macro_f1']}"
        f" (BENTOML_HOME={os.environ.get('BENTOML_HOME', 'default')})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Promotion gate (default), rollback, export.")
    parser.add_argument(
        "command", nargs="?", default="gate", choices=["gate", "rollback", "export"]
    )
    args = parser.parse_args()
    params = load_params("gate")
    try:
        print(run_command(args.command, params))
    except MlflowException as err:
        hint = (
            "; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            if err.error_code in AUTH_ERRORS
            else ""
        )
        fail(f"{args.command}: registry {redact_uri(tracking_uri())}: {err.message}{hint}")
    except UntrustedModelError as err:
        fail(f"{args.command}: {err}")


if __name__ == "__main__":
    main()
