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

Each part records the address of the node that scored it (Parquet metadata
``sentiment.node``). An actor lost with its node (killed, or cut off until Ray declares it
dead) costs only its chunk in flight: that chunk runs again on a live actor, and the output
is the same. With every actor lost the job fails in one line, and nothing is written.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from sentiment.models.predictor import load_predictor
from sentiment.models.trust import file_digests, verify_digests
from sentiment.scoring.core import ChunkScorer
from sentiment.scoring.storage import Location, parts_folder
from sentiment.settings import setting

NODE_KEY = "sentiment.node"


@dataclass
class RayTally:
    """Where the chunks ran: parts per node address, and actors lost (their chunks re-run)."""

    nodes: Counter = field(default_factory=Counter)
    lost: int = 0

    @property
    def parts(self) -> int:
        return sum(self.nodes.values())


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
        import ray

        table = self.scorer.table(first_row, values)
        return table.replace_schema_metadata({NODE_KEY: ray.util.get_node_ip_address()})


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
) -> RayTally:
    """Score ``chunks`` (an iterator of value lists) into the folder ``target``; ``on_chunk``
    sees each scored table in input order (counting, bad rows). Returns where they ran."""
    load_predictor(model_dir)  # a damaged or untrusted model fails here, in one line
    ray = start_ray()
    count = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    files, digests = model_files(model_dir), file_digests(model_dir)
    shared = ray.put(files)
    remote_scorer = ray.remote(num_cpus=1)(ScoringActor)
    handles = [remote_scorer.remote(shared, digests, version) for _ in range(count)]
    try:
        return score_in_order(ray, handles, chunks, target, on_chunk)
    finally:  # also on failure: the actors' CPUs go back to the cluster
        ray.wait([actor.close.remote() for actor in handles], num_returns=len(handles), timeout=30)
        for actor in handles:
            ray.kill(actor)


class Job(NamedTuple):
    """One chunk: its part number, the number of its first row, its values."""

    part: int
    first_row: int
    values: list


def numbered(chunks: Any) -> Iterator[Job]:
    first = 0
    for part, values in enumerate(chunks):
        yield Job(part, first, values)
        first += len(values)


def score_in_order(
    ray: Any, actors: list, chunks: Any, target: Location, on_chunk: Any
) -> RayTally:
    """Feed ``chunks`` to the actors, one in flight per actor, and write the scored tables as
    numbered parts in input order; a lost actor's chunk goes to a live one. At most twice
    as many chunks as live actors are in flight or waiting to be written. The folder is
    complete only on success."""
    from ray.exceptions import RayActorError

    jobs, tally = numbered(chunks), RayTally()
    alive, free, again = list(actors), deque(actors), deque()
    in_flight: dict[Any, tuple[Any, Job]] = {}
    ready: dict[int, pa.Table] = {}
    with parts_folder(target) as folder:
        while True:
            while free and (again or len(ready) + len(in_flight) < 2 * len(alive)):
                job = again.popleft() if again else next(jobs, None)
                if job is None:
                    break
                actor = free.popleft()
                in_flight[actor.score.remote(job.first_row, job.values)] = (actor, job)
            if not in_flight:
                return tally
            [done], _ = ray.wait(list(in_flight), num_returns=1)
            actor, job = in_flight.pop(done)
            try:
                ready[job.part] = ray.get(done)
            except RayActorError as err:
                alive.remove(actor)
                tally.lost += 1
                if not alive:
                    first_line = str(err).splitlines()[0]
                    raise RuntimeError(
                        f"every scoring actor was lost, the last: {first_line}"
                    ) from err
                again.append(job)
                continue
            free.append(actor)
            while tally.parts in ready:
                part = ready.pop(tally.parts)
                on_chunk(part)
                name = folder.child(f"part-{tally.parts:06d}.parquet").path
                pq.write_table(part, name, filesystem=folder.filesystem)
                tally.nodes[part.schema.metadata[NODE_KEY.encode()].decode()] += 1
