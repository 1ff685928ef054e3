"""gate: decide whether the champion beats production; ``promote`` makes it so.

The DVC stage only decides. It scores the candidate (``models/champion``) and the current
production model (registry alias ``production`` of ``gate.registered_model``, read-only) on
the same rows of the current test split, and writes ``gate/decision.json``: every rule, the
paired bootstrap CI of the macro-F1 difference, and which production model it compared
against. Acting is a separate, idempotent command: ``promote`` makes the registry and the
BentoML store match the decision (deciding again first if production moved since), so a
skipped stage, an applied experiment or an empty registry still ends promoted or kept as the
rules say. Every registry or store step it takes is undone if a later one fails.

    python -m stages.gate            # the DVC stage: decide
    python -m stages.gate promote    # act on the decision (make run / make promote)
    python -m stages.gate rollback   # production <-> previous-production, re-exported
    python -m stages.gate export     # production model -> BentoML store (image builds)
    python -m stages.gate download --out DIR   # production model directory (drift on traffic)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from stages.behaviour import run_suite
from stages.common import atomic_path, entry_point, fail, load_params, read_split, write_json
from stages.evaluate import dir_size_mb
from stages.metrics import macro_f1
from stages.mlflow_model import log_model
from stages.model_files import BENTO_SUBDIR, UntrustedModelError, file_digests, verify_digests
from stages.predictor import load_predictor, predict, read_meta
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
VERDICT = Path("gate/verdict.json")  # its headline, declared as DVC metrics
PRODUCTION, PREVIOUS = "production", "previous-production"
AUTH_ERRORS = ("UNAUTHENTICATED", "PERMISSION_DENIED")  # MLflow error codes: never fall back
DIGESTS_TAG = "model.sha256"  # registry version tag: {relative path: sha256} of its files
MODEL_MD5_TAG = "model.md5"  # registry version tag: DVC md5 of the promoted model directory


def assess(model_dir: Path, texts: list[str], labels: list[int]) -> dict[str, Any]:
    """Test predictions, macro-F1, size and behavioural pass rates, as evaluate measures them.

    Nothing timed: the decision must follow from the inputs (latency is evaluate's report
    and ``bench.serve_load``'s, where noise is expected).
    """
    predictor = load_predictor(model_dir)
    predicted = predict(predictor, texts)
    return {
        "predicted": [int(p) for p in predicted],
        "macro_f1": round(macro_f1(labels, predicted), 4),
        "size_mb": dir_size_mb(model_dir),
        "behaviour": run_suite(lambda batch: predict(predictor, batch)),
    }


def resampled_macro_f1(y: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Macro-F1 of each row of a (resamples x rows) array, over the classes each row has."""
    scores, present = np.zeros(len(y)), np.zeros(len(y))
    for c in classes:
        tp = ((predicted == c) & (y == c)).sum(axis=1)
        wrong = ((predicted == c) != (y == c)).sum(axis=1)  # false positives + negatives
        seen = (tp + wrong) > 0
        scores += np.where(seen, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)
        present += seen
    return scores / np.maximum(present, 1)


def paired_bootstrap(
    labels: list[int], candidate: list[int], production: list[int], params: dict[str, Any]
) -> dict[str, Any]:
    """Macro-F1 difference (candidate - production) on the same rows, with the lower bound
    of its one-sided ``gate.confidence`` bootstrap interval (both scored on each resample)."""
    y, a, b = np.asarray(labels), np.asarray(candidate), np.asarray(production)
    rows = np.random.default_rng(params["seed"]).integers(
        0, len(y), size=(params["bootstrap_resamples"], len(y))
    )
    classes = np.union1d(y, np.union1d(a, b))
    diffs = resampled_macro_f1(y[rows], a[rows], classes) - resampled_macro_f1(
        y[rows], b[rows], classes
    )
    return {
        "delta": round(macro_f1(y, a) - macro_f1(y, b), 4),
        "ci_low": round(float(np.quantile(diffs, 1 - params["confidence"])), 4),
        "confidence": params["confidence"],
        "resamples": params["bootstrap_resamples"],
    }


def decide(
    candidate: dict, production: dict | None, comparison: dict | None, params: dict
) -> dict[str, Any]:
    """Every promotion rule with its values and verdict; ``promote`` only if all pass."""
    f1 = candidate["macro_f1"]
    rules: dict[str, dict[str, Any]] = {
        "min_f1": {
            "candidate": f1,
            "threshold": params["min_f1"],
            "passed": f1 >= params["min_f1"],
        },
        "size": {
            "candidate": candidate["size_mb"],
            "threshold": params["max_size_mb"],
            "passed": candidate["size_mb"] <= params["max_size_mb"],
        },
    }
    if production is not None and comparison is not None:
        rules["min_delta"] = {
            "candidate": comparison["delta"],
            "threshold": params["min_delta"],
            "passed": comparison["delta"] >= params["min_delta"],
        }
        rules["paired_ci"] = {
            "candidate": comparison["ci_low"],
            "threshold": 0.0,
            "passed": comparison["ci_low"] > 0,
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
    return {"promote": all(rule["passed"] for rule in rules.values()), "rules": rules}


def production_version(client: MlflowClient, name: str, alias: str = PRODUCTION):
    """The model version behind an alias, or None (the registry being unreachable raises)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


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


def delete_bento(tag: str) -> None:
    import bentoml

    bentoml.models.delete(tag)


def served(bento_name: str) -> tuple[str, dict] | None:
    """(registry version, sha256 record) of ``<bento_name>:latest``, or None."""
    import bentoml

    try:
        info = bentoml.models.get(f"{bento_name}:latest").info
    except bentoml.exceptions.NotFound:
        return None
    return info.labels.get("registry_version", ""), info.metadata.get("sha256", {})


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


def export_version(client: MlflowClient, params: dict, version: Any, extra: dict) -> str:
    """A registry version's checked files -> the BentoML store; returns the new tag."""
    name, number = params["registered_model"], str(version.version)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, digests = download_version(client, name, number, Path(tmp))
        return export_to_bentoml(model_dir, params["bento_model"], number, digests, extra)


class UndoError(RuntimeError):
    """A step failed and some of the steps before it could not be undone."""


class Steps:
    """Run registry/store steps; if one fails, undo the earlier ones in reverse order.

    Every undo is attempted even if one fails (the registry may be down while the local
    store is not); the error then names what could not be undone.
    """

    def __init__(self) -> None:
        self.undos: list[tuple[str, Callable[[], Any]]] = []

    def __enter__(self) -> Steps:
        return self

    def done(self, what: str, undo: Callable[[], Any]) -> None:
        self.undos.append((what, undo))

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            return
        left = []
        for what, undo in reversed(self.undos):
            try:
                undo()
            except Exception as undo_error:
                left.append(f"{what} ({undo_error})")
        if left:
            raise UndoError(f"{error}; and could not undo: {'; '.join(left)}") from error


def restore_alias(client: MlflowClient, name: str, alias: str, before: Any) -> Callable[[], Any]:
    """An undo that puts ``alias`` back where it was (or removes it)."""
    if before is None:
        return lambda: client.delete_registered_model_alias(name, alias)
    return lambda: client.set_registered_model_alias(name, alias, before.version)


def promote(client: MlflowClient, params: dict, tags: dict[str, str], old_version) -> dict:
    """Register, export, move aliases; undo everything done so far if a step fails."""
    name = params["registered_model"]
    digests = file_digests(CANDIDATE_DIR)
    tags = {**tags, DIGESTS_TAG: json.dumps(digests, sort_keys=True)}
    extra = {k: tags[k] for k in ("test.macro_f1", "git.commit", "params.hash", "data.md5.test")}
    previous_before = production_version(client, name, PREVIOUS)
    with Steps() as steps:
        info = log_model(CANDIDATE_DIR)
        version = mlflow.register_model(info.model_uri, name, tags=tags)
        steps.done(
            f"version {version.version}",
            lambda: client.delete_model_version(name, version.version),
        )
        bento_tag = export_to_bentoml(
            CANDIDATE_DIR, params["bento_model"], version.version, digests, extra
        )
        steps.done(f"BentoML model {bento_tag}", lambda: delete_bento(bento_tag))
        if old_version is not None:
            client.set_registered_model_alias(name, PREVIOUS, old_version.version)
            steps.done(PREVIOUS, restore_alias(client, name, PREVIOUS, previous_before))
        client.set_registered_model_alias(name, PRODUCTION, version.version)
    return {"version": str(version.version), "bento_tag": bento_tag}


def without_predictions(assessment: dict[str, Any]) -> dict[str, Any]:
    """What the decision records of an assessment: all but the per-row predictions."""
    return {k: v for k, v in assessment.items() if k != "predicted"}


def decision_for(client: MlflowClient, params: dict[str, Any]) -> dict[str, Any]:
    """Score the candidate and the registry's production on the test split and decide."""
    texts, labels = read_split(TEST_SPLIT)
    name = params["registered_model"]
    candidate = assess(CANDIDATE_DIR, texts, labels)
    current = production_version(client, name)
    production = comparison = None
    if current is not None:
        # The registry's files, checked against their record and loaded with this
        # project's code: never the code logged beside the model (it runs on load).
        with tempfile.TemporaryDirectory() as tmp:
            model_dir, digests = download_version(client, name, current.version, Path(tmp))
            verify_digests(model_dir, digests)
            production = assess(model_dir, texts, labels)
        comparison = paired_bootstrap(
            labels, candidate["predicted"], production["predicted"], params
        )
    decision = decide(candidate, production, comparison, params)
    data_md5 = {str(TEST_SPLIT): dvc_md5(TEST_SPLIT), str(CANDIDATE_DIR): dvc_md5(CANDIDATE_DIR)}
    return {
        **decision,
        "comparison": comparison,
        "candidate": {
            "name": read_meta(CANDIDATE_DIR).get("candidate"),
            "model_md5": data_md5[str(CANDIDATE_DIR)],
            **without_predictions(candidate),
        },
        "production": None
        if current is None
        else {
            "version": str(current.version),
            "model_md5": current.tags.get(MODEL_MD5_TAG),
            **without_predictions(production),
        },
        "data_md5": data_md5,
        "params_hash": params_hash(params),
    }


def verdict(record: dict[str, Any]) -> dict[str, Any]:
    """The decision's headline for ``dvc exp show``: promote or not, against what."""
    production = record["production"]
    return {
        "gate": {
            "promote": record["promote"],
            "against": f"version {production['version']}" if production else "none",
        }
    }


def run_stage(params: dict[str, Any]) -> dict[str, Any]:
    """The DVC stage: decide and record; the registry and the store are only read."""
    with stage_run("gate"):
        record = decision_for(MlflowClient(), params)
        write_json(DECISION, record)
        write_json(VERDICT, verdict(record))
        mlflow.log_metrics(
            {
                "promote": int(record["promote"]),
                "candidate.test.macro_f1": record["candidate"]["macro_f1"],
            }
        )
        mlflow.log_artifact(str(DECISION))
    return record


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
    if not DECISION.is_file():
        raise FileNotFoundError(f"{DECISION} is missing: run dvc repro first")
    record = json.loads(DECISION.read_text())
    candidate_md5 = dvc_md5(CANDIDATE_DIR)
    if candidate_md5 != record["candidate"]["model_md5"]:
        raise UntrustedModelError(
            f"{CANDIDATE_DIR} is not the model {DECISION} decided on: run dvc repro first"
        )
    current = production_version(client, name)
    current_md5 = None if current is None else current.tags.get(MODEL_MD5_TAG)
    if current is not None and current_md5 == candidate_md5:
        served_now = ensure_served(client, params, current)
        return f"version {current.version} is already production; {served_now}"
    then = record["production"]
    redecided = identity(current, current_md5) != identity(then, then and then["model_md5"])
    if redecided:
        record = decision_for(client, params)
    if not record["promote"]:
        failing = ", ".join(r for r, v in record["rules"].items() if not v["passed"])
        kept = f"kept production (failing: {failing})"
        if current is None:
            return f"{kept}; no production model in the registry"
        return f"{kept}; version {current.version}; {ensure_served(client, params, current)}"
    tags = {
        "data.md5.test": record["data_md5"][str(TEST_SPLIT)],
        MODEL_MD5_TAG: candidate_md5,
        "params.hash": record["params_hash"],
        "git.commit": git_info()["git.commit"],
        "candidate": str(record["candidate"]["name"]),
        "test.macro_f1": str(record["candidate"]["macro_f1"]),
        "size_mb": str(record["candidate"]["size_mb"]),
    }
    with mlflow.start_run(run_name="promote", tags={"kind": "promote", **tags}):
        promoted = promote(client, params, tags, current)
    note = " (decided again: production moved since gate/decision.json)" if redecided else ""
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
    with Steps() as steps:
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


def run_command(command: str, params: dict[str, Any], out: Path) -> str:
    """Run one command; return the line that reports what it did."""
    if command == "download":
        return f"download: {download_production(params, out)}"
    if command == "promote":
        return f"promote: {act(params)}"
    if command == "rollback":
        return f"rollback: {rollback(params)}"
    if command == "export":
        return f"export: {export_production(params)}"
    record = run_stage(params)
    failing = [rule for rule, v in record["rules"].items() if not v["passed"]]
    verdict = "promote" if record["promote"] else f"keep production (failing: {', '.join(failing)})"
    return (
        f"gate: would {verdict}; candidate test macro-F1 {record['candidate']['macro_f1']}"
        " (`python -m stages.gate promote` acts on it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Promotion gate: decide (default), act, undo.")
    parser.add_argument(
        "command",
        nargs="?",
        default="gate",
        choices=["gate", "promote", "rollback", "export", "download"],
    )
    parser.add_argument("--out", type=Path, default=Path("models/production"), help="download")
    args = parser.parse_args()
    params = load_params("gate")
    try:
        print(run_command(args.command, params, args.out))
    except MlflowException as err:
        hint = (
            "; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            if err.error_code in AUTH_ERRORS
            else ""
        )
        fail(f"{args.command}: registry {redact_uri(tracking_uri())}: {err.message}{hint}")
    except (UntrustedModelError, FileNotFoundError, UndoError) as err:
        fail(f"{args.command}: {err}")


if __name__ == "__main__":
    entry_point(main)
