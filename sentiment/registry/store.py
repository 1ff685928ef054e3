"""The MLflow registry and the BentoML store: read production, download a version (checked
against its sha256 record), export one to BentoML, and undo steps that a later failure voids."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sentiment.models.predictor import read_meta
from sentiment.models.trust import (
    BENTO_SUBDIR,
    MODEL_CARD_KEY,
    UntrustedModelError,
    verify_digests,
)
from sentiment.tracking import redact_uri, tracking_uri

PRODUCTION, PREVIOUS = "production", "previous-production"


AUTH_ERRORS = ("UNAUTHENTICATED", "PERMISSION_DENIED")  # MLflow error codes: never fall back


DIGESTS_TAG = "model.sha256"  # registry version tag: {relative path: sha256} of its files


MODEL_MD5_TAG = "model.md5"  # registry version tag: DVC md5 of the promoted model directory


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
    """A registry version's checked files (and its model card, the version's description)
    -> the BentoML store; returns the new tag."""
    name, number = params["registered_model"], str(version.version)
    if getattr(version, "description", None):
        extra = {**extra, MODEL_CARD_KEY: version.description}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, digests = download_version(client, name, number, Path(tmp))
        return export_to_bentoml(model_dir, params["bento_model"], number, digests, extra)


class StepFailed(RuntimeError):
    """A step failed (the cause); the message says what was undone and what still holds."""


class UndoError(StepFailed):
    """A step failed and some of the steps before it could not be undone."""


class Steps:
    """Run registry/store steps; if one fails, undo the earlier ones in reverse order.

    Every undo is attempted even if one fails (the registry may be down while the local
    store is not). The error says ``unchanged`` (what holds once every step is undone, e.g.
    "production is still version 2") when it still holds: when every undo ran, or the ones
    that could not only leave something nothing serves (a version without an alias, a tag).
    Otherwise it names what could not be undone.
    """

    def __init__(self, unchanged: str) -> None:
        self.unchanged = unchanged
        self.undos: list[tuple[str, Callable[[], Any], bool]] = []

    def __enter__(self) -> Steps:
        return self

    def done(self, what: str, undo: Callable[[], Any], unused: bool = False) -> None:
        """``what`` was done; ``unused``: left undone, nothing serves or reads it."""
        self.undos.append((what, undo, unused))

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            return
        left, served_left = [], False
        for what, undo, unused in reversed(self.undos):
            try:
                undo()
            except Exception as undo_error:
                left.append(f"{what} ({undo_error})")
                served_left = served_left or not unused
        if not left:
            raise StepFailed(f"every step undone: {self.unchanged}") from error
        if served_left:
            raise UndoError(f"could not undo: {'; '.join(left)}") from error
        raise UndoError(
            f"could not undo (left over, unused): {'; '.join(left)}; {self.unchanged}"
        ) from error


def unchanged(version: Any) -> str:
    """What a failed registry command leaves, ``version`` being production before it."""
    if version is None:
        return "there is still no production version"
    return f"production is still version {version.version}, and so is the BentoML store"


@contextmanager
def recorded_run(name: str, tags: dict[str, str]) -> Iterator[None]:
    """An MLflow run recording a registry command. The registry's being unreachable when the
    run ends neither replaces a failure inside nor fails a command whose steps are done (the
    run then stays RUNNING there)."""
    mlflow.start_run(run_name=name, tags=tags)
    try:
        yield
    except BaseException:
        with suppress(Exception):
            mlflow.end_run("FAILED")
        raise
    with suppress(MlflowException):  # the command's steps are done: it did not fail
        mlflow.end_run()


def restore_alias(client: MlflowClient, name: str, alias: str, before: Any) -> Callable[[], Any]:
    """An undo that puts ``alias`` back where it was (or removes it)."""
    if before is None:
        return lambda: client.delete_registered_model_alias(name, alias)
    return lambda: client.set_registered_model_alias(name, alias, before.version)


def step_error(command: str, err: StepFailed) -> str:
    """The one line a command ends with when one of its steps failed: the failure, then what
    was undone and what still holds."""
    cause = err.__cause__
    if isinstance(cause, MlflowException):
        return f"{registry_error(command, cause)}; {err}"
    return f"{command}: {cause}; {err}"


def registry_error(command: str, err: MlflowException) -> str:
    """The one line a command ends with when the registry refuses or fails it; names the
    credentials to set when the server asks for them."""
    hint = (
        "; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        if err.error_code in AUTH_ERRORS
        else ""
    )
    return f"{command}: registry {redact_uri(tracking_uri())}: {err.message}{hint}"
