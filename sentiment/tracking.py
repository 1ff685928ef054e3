"""MLflow tracking shared by every stage.

Each stage run is an MLflow run tagged with the git commit, the DVC md5 of each data
dependency and a hash of the params the stage names in ``dvc.yaml``. All stage runs of
one ``dvc repro`` (or one ``dvc exp run`` experiment) are children of one pipeline run.

Switches: ``MLFLOW_TRACKING_URI`` (default: ``mlflow.db`` SQLite file in the project root)
and ``MLFLOW_EXPERIMENT_NAME`` (default ``sentiment``). Runs of ``dvc exp run --temp`` or
``--queue`` execute in a temporary copy; DVC points ``DVC_ROOT`` at the real project, so
their runs land in the same store.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import mlflow
import psutil
from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sentiment.params import dvc_stages, read_params_file
from sentiment.paths import REPO_ROOT
from sentiment.settings import setting

PIPELINE_TAG = "pipeline.run_id"
CODE_SUFFIXES = (".py", ".lock")  # deps that are code (and pinned requirements), not data
GIT_COMMIT_TAG = "mlflow.source.git.commit"
DESCRIPTION = (
    "Sentiment of product reviews. One parent run per `dvc repro` or `dvc exp run` "
    "(tag dvc.exp_name), one child run per stage: tagged with the git commit, the params "
    "hash and the DVC md5 of every input, which the Datasets column lists (digest = DVC md5); "
    "tune's Optuna trials are children of the tune run. Promoted models: the registry's "
    "`production` alias (gate)."
)


def project_root() -> Path:
    """The real project directory, also from inside a DVC temporary experiment copy."""
    return Path(setting("DVC_ROOT") or REPO_ROOT).resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store of the project."""
    return setting("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def redact_uri(uri: str) -> str:
    """A URI fit to print or log: any password in it replaced by ``***``."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def experiment_tags() -> dict[str, str]:
    """What the experiment says of itself: its description, and that it is a training
    experiment, so MLflow's UI opens on its runs, not on a GenAI project's traces."""
    return {"mlflow.note.content": DESCRIPTION, "mlflow.experimentKind": "custom_model_development"}


def configure() -> str:
    """Point MLflow at the tracking store and experiment; return the experiment id."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    name = setting("MLFLOW_EXPERIMENT_NAME")
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        # Embedded store: keep artifacts in the project (absolute, so temp copies agree).
        location = (project_root() / "mlartifacts").as_uri() if uri.startswith("sqlite") else None
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    tags = {} if experiment is None else experiment.tags
    for key, value in experiment_tags().items():
        if key not in tags:
            MlflowClient().set_experiment_tag(experiment_id, key, value)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_info(cwd: Path = REPO_ROOT) -> dict[str, str]:
    """Commit and dirty flag of the working tree ("unknown" outside git)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    # MLflow's own tag too: the UI's Source/Version columns show it for every run.
    return {"git.commit": commit, "git.dirty": str(dirty).lower(), GIT_COMMIT_TAG: commit}


def dvc_md5(path: str | Path) -> str:
    """The md5 DVC records for a file or directory (``<md5>.dir`` for directories)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_data.hashfile.hash import file_md5
    from dvc_objects.fs import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    fs = LocalFileSystem()
    path = os.fspath(path)
    if not os.path.isdir(path):
        return file_md5(path, fs)
    odb = HashFileDB(MemoryFileSystem(), "/odb")
    _, _, obj = build(odb, path, fs, "md5")
    return obj.hash_info.value


def stage_spec(stage: str, dvc_file: Path = Path("dvc.yaml")) -> tuple[list[str], dict]:
    """Data dependencies (code excluded) and params a stage declares in dvc.yaml."""
    spec = dvc_stages(dvc_file)[stage]
    deps = [d for d in spec.get("deps", []) if not d.endswith(CODE_SUFFIXES)]
    params_file = read_params_file(dvc_file.parent / "params.yaml")
    used: dict[str, Any] = {}
    for entry in spec.get("params", []):
        keys = entry if isinstance(entry, str) else next(iter(entry.values()))
        for key in [keys] if isinstance(keys, str) else keys:
            value: Any = params_file
            for part in key.split("."):
                value = value[part]
            used[key] = value
    return deps, used


def code_hash(stage: str, dvc_file: Path = Path("dvc.yaml"), root: Path = REPO_ROOT) -> str:
    """A short hash of the code a stage declares (its ``.py`` and ``.lock`` deps in dvc.yaml),
    read from ``root``, the code that runs."""
    spec = dvc_stages(dvc_file)[stage]
    sha = hashlib.sha256()
    for dep in sorted(d for d in spec.get("deps", []) if d.endswith(CODE_SUFFIXES)):
        sha.update(dep.encode() + b"\0" + (root / dep).read_bytes() + b"\0")
    return sha.hexdigest()[:16]


def local_dataset(path: str, digest: str) -> MetaDataset:
    """An MLflow dataset for a local file, identified by its DVC md5."""
    # MLflow registers the local source class twice; name it to avoid an ambiguity warning.
    local = [s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource"]
    source = resolve_dataset_source(str(Path(path).resolve()), candidate_sources=local[:1])
    return MetaDataset(source, name=path, digest=digest)


def log_dataset(dataset: MetaDataset, context: str) -> None:
    """Log a dataset input; a concurrent run (e.g. another tune worker) may insert the same
    dataset row first, in which case the second attempt links the existing one."""
    try:
        mlflow.log_input(dataset, context=context)
    except MlflowException:
        mlflow.log_input(dataset, context=context)


def params_hash(params: dict[str, Any]) -> str:
    """A short stable hash of a params mapping."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def log_numeric_metrics(data: dict[str, Any]) -> None:
    """Log every number of a (nested) mapping as an MLflow metric, named by its flat key."""
    mlflow.log_metrics(
        {
            key: value
            for key, value in flatten(data).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
    )


def log_key_metrics(data: dict[str, Any], *, on_stage_run: bool = True) -> None:
    """A stage's key figures: every number of ``data`` on the stage's run (unless
    ``on_stage_run`` is false) and on its pipeline run as ``<stage>.<key>``, so the pipeline
    run shows each stage's result beside the others."""
    numbers = {
        key: float(value)
        for key, value in flatten(data).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    run = mlflow.active_run()
    if on_stage_run:
        mlflow.log_metrics(numbers)
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent and numbers:
        stage, now = run.data.tags["stage"], int(time.time() * 1000)
        metrics = [Metric(f"{stage}.{key}", value, now, 0) for key, value in numbers.items()]
        MlflowClient().log_batch(parent, metrics=metrics)


def pipeline_run_key() -> str:
    """Identify the current ``dvc repro`` / ``dvc exp run`` so its stages share a parent.

    ``PIPELINE_RUN_ID`` wins when set (e.g. a CI run id); otherwise the pid and start
    time of the calling dvc process (plus the experiment name); a lone stage run gets
    a fresh id.
    """
    if setting("PIPELINE_RUN_ID"):
        return setting("PIPELINE_RUN_ID")
    process = psutil.Process().parent()
    while process is not None:
        try:
            args = process.cmdline()
        except psutil.Error:
            break
        if any(Path(arg).name == "dvc" for arg in args[:2]) or args[1:3] == ["-m", "dvc"]:
            exp = setting("DVC_EXP_NAME")
            return f"dvc-{exp}-{process.pid}-{int(process.create_time())}"
        process = process.parent()
    return f"standalone-{uuid.uuid4().hex}"


def _pipeline_parent(
    client: MlflowClient, experiment_id: str, key: str, tags: dict[str, str]
) -> str:
    """The pipeline run for ``key``, created on the first stage that asks."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PIPELINE_TAG}` = '{key}' and tags.kind = 'pipeline'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    name = setting("DVC_EXP_NAME") or "pipeline"
    source = {"mlflow.source.name": "dvc.yaml", "mlflow.source.type": "PROJECT"}
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={**tags, **source, PIPELINE_TAG: key, "kind": "pipeline"},
    )
    return run.info.run_id


@contextmanager
def stage_run(stage: str, run_name: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Run a stage inside an MLflow run tagged with its code, data and params identity."""
    experiment_id = configure()
    client = MlflowClient()
    deps, params = stage_spec(stage)
    data_md5 = {dep: dvc_md5(dep) for dep in deps if Path(dep).exists()}
    common = git_info()
    common["dataset"] = str(read_params_file().get("dataset"))  # the runs say whose reviews
    if setting("DVC_EXP_NAME"):
        common["dvc.exp_name"] = setting("DVC_EXP_NAME")
    key = pipeline_run_key()
    parent_id = _pipeline_parent(client, experiment_id, key, common)
    tags = {
        **common,
        "stage": stage,
        PIPELINE_TAG: key,
        "params.hash": params_hash(params),
        "code.hash": code_hash(stage),
        **{f"data.md5.{dep}": md5 for dep, md5 in data_md5.items()},
    }
    with mlflow.start_run(run_name=run_name or stage, parent_run_id=parent_id, tags=tags) as run:
        mlflow.log_params({k: str(v) for k, v in flatten(params).items()})
        for dep, md5 in data_md5.items():
            log_dataset(local_dataset(dep, md5), stage)
        try:
            yield run
        finally:
            client.set_terminated(parent_id)
