"""Batch scoring on a Ray cluster (``python -m sentiment.scoring --engine ray``).

The driver reads the input in chunks, exactly as the single-process path does (so rows are
numbered the same way and memory stays bounded), and hands each chunk to a pool of scoring
actors, at most one chunk in flight per actor. Each actor gets the model directory's files
through Ray's object store, checks them against the sha256 record the driver computed, and
loads them once with the same allowlist as everywhere (``load_predictor``). The output is
partitioned Parquet: a folder of ``part-NNNNNN.parquet`` files with the single-process
columns and a ``_SUCCESS`` marker, complete only on success (``storage``: locally a
renamed folder, on the bucket an empty prefix and the marker last). ``RAY_ADDRESS`` names a
running cluster; without it a local Ray is started with this machine's CPUs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sentiment.models.predictor import load_predictor
from sentiment.models.trust import file_digests, verify_digests
from sentiment.scoring.core import ChunkScorer
from sentiment.scoring.storage import Location, parts_folder
from sentiment.settings import setting


class ScoringActor:
    """One scoring actor: the model, loaded once from files checked against their record."""

    def __init__(self, files: dict[str, bytes], digests: dict[str, str], version: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="sentiment-model-"))
        for relative, body in files.items():
            (self.home / relative).parent.mkdir(parents=True, exist_ok=True)
            (self.home / relative).write_bytes(body)
        verify_digests(self.home, digests)
        self.scorer = ChunkScorer(load_predictor(self.home), version, "the model")

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)

    def score(self, first_row: int, values: list[Any]) -> pa.Table:
        return self.scorer.table(first_row, values)


def model_files(model_dir: Path) -> dict[str, bytes]:
    """Every file of a model directory by its relative path: what the actors rebuild."""
    return {
        path.relative_to(model_dir).as_posix(): path.read_bytes()
        for path in sorted(model_dir.rglob("*"))
        if path.is_file()
    }


def start_ray() -> Any:
    """Connect to ``RAY_ADDRESS``'s cluster, or start a local Ray without its dashboard."""
    import ray

    if not ray.is_initialized():
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        if setting("RAY_ADDRESS"):
            ray.init(**quiet)
        else:
            ray.init(include_dashboard=False, **quiet)
    return ray


def score_on_ray(
    model_dir: Path,
    version: str,
    chunks: Any,
    target: Location,
    on_chunk: Any,
    actors: int | None = None,
) -> int:
    """Score ``chunks`` (an iterator of value lists) into the folder ``target``; ``on_chunk``
    sees each scored table in input order (counting, bad rows). Returns the rows written."""
    load_predictor(model_dir)  # a damaged or untrusted model fails here, in one line
    ray = start_ray()
    from ray.util import ActorPool

    count = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    files, digests = model_files(model_dir), file_digests(model_dir)
    shared = ray.put(files)
    remote_scorer = ray.remote(num_cpus=1)(ScoringActor)
    handles = [remote_scorer.remote(shared, digests, version) for _ in range(count)]
    try:
        return score_in_order(ActorPool(handles), chunks, target, on_chunk)
    finally:  # also on failure: the actors' CPUs go back to the cluster
        ray.get([actor.close.remote() for actor in handles])
        for actor in handles:
            ray.kill(actor)


def score_in_order(pool: Any, chunks: Any, target: Location, on_chunk: Any) -> int:
    """Feed ``chunks`` to the actor pool, one in flight per actor, and write the scored
    tables as numbered parts in input order; the folder is complete only on success."""
    done, part = 0, 0
    with parts_folder(target) as folder:

        def write(table: pa.Table) -> None:
            nonlocal part
            on_chunk(table)
            name = folder.child(f"part-{part:06d}.parquet").path
            pq.write_table(table, name, filesystem=folder.filesystem)
            part += 1

        for values in chunks:
            if not pool.has_free():
                write(pool.get_next())
            first = done
            pool.submit(lambda actor, v, first=first: actor.score.remote(first, v), values)
            done += len(values)
        while pool.has_next():
            write(pool.get_next())
    return done
