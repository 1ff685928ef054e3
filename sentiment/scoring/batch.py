"""Score a file of reviews offline, in bounded memory: one process, or Ray actors.

The input is read ``--chunk-rows`` rows at a time (``inputs``). A row that cannot be scored
(no text, or nothing left once cleaned) gets a null label and the reason in ``error``, and the
summary names how many and which; ``--bad-rows fail`` refuses the file instead. The output
appears only when complete: one Parquet file (written to a temporary file, then renamed), or
with the Ray engine a folder of Parquet parts with a ``_SUCCESS`` marker (``on_ray``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sentiment.data.tables import TextColumns
from sentiment.models.predictor import load_predictor
from sentiment.scoring.core import SCHEMA, ChunkScorer, resolve_model
from sentiment.scoring.inputs import input_files, parquet_rows, read_chunks
from sentiment.scoring.storage import locate, staged_file

SHOWN_BAD_ROWS = 10


class Tally:
    """What the scored chunks add up to, in input order: rows, rows not scored (the first
    few named), and ``--bad-rows fail``'s refusal at the first one."""

    def __init__(self, source: str, fail_on_bad: bool, total: int | None) -> None:
        from tqdm.auto import tqdm

        self.source, self.fail_on_bad = source, fail_on_bad
        self.rows, self.bad, self.chunks, self.shown = 0, 0, 0, []
        self.started = time.perf_counter()
        self.progress = tqdm(total=total, unit="row", desc="score", disable=None)

    def add(self, table: pa.Table) -> None:
        errors = table.column("error").to_pylist()
        failed = [(self.rows + i, e) for i, e in enumerate(errors) if e is not None]
        self.bad += len(failed)
        self.shown += failed[: SHOWN_BAD_ROWS - len(self.shown)]
        if self.fail_on_bad and self.bad:
            raise ValueError(bad_rows_message(self.source, self.bad, self.shown))
        self.rows += len(errors)
        self.chunks += 1
        self.progress.update(len(errors))
        if self.progress.disable:
            rate = self.rows / (time.perf_counter() - self.started)
            line = f"score: chunk {self.chunks}: {self.rows} rows, {rate:.0f} rows/s"
            print(line, file=sys.stderr)

    def counts(self) -> dict[str, Any]:
        self.progress.close()
        seconds = time.perf_counter() - self.started
        return {
            "rows": self.rows,
            "not_scored": self.bad,
            "first_not_scored": self.shown,
            "seconds": seconds,
        }


def score_file(
    model: str,
    source: str | Path,
    target: str | Path,
    text: str | TextColumns,
    rows: int,
    fail_on_bad: bool,
    engine: str = "local",
) -> dict[str, Any]:
    """Score ``source`` (a file, folder or glob, local or on the bucket) into ``target``:
    one Parquet file, or with the Ray engine a folder of Parquet parts and a ``_SUCCESS``
    marker; complete or absent either way. ``text`` names the text column, or the columns
    joined. Return the counts."""
    output = locate(target)
    if engine == "local" and output.suffix != ".parquet":
        raise ValueError(f"{target}: the output is Parquet; name it *.parquet")
    if engine == "ray" and output.suffix:
        raise ValueError(f"{target}: the Ray engine writes a folder of Parquet parts; name one")
    if rows < 1:
        raise ValueError(f"--chunk-rows must be at least 1, got {rows}")
    files = input_files(source)
    model_dir, version = resolve_model(model)
    tally = Tally(str(source), fail_on_bad, parquet_rows(files) or None)
    columns = TextColumns((text,)) if isinstance(text, str) else text
    chunks = (chunk for f in files for chunk in read_chunks(f, columns, rows))
    if engine == "ray":
        from sentiment.scoring.on_ray import score_on_ray

        ran = score_on_ray(model_dir, version, chunks, output, tally.add)
        return tally.counts() | {"nodes": dict(sorted(ran.nodes.items())), "lost": ran.lost}
    scorer = ChunkScorer(load_predictor(model_dir), version, str(model_dir))
    with staged_file(output) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer:
        for values in chunks:
            table = scorer.table(tally.rows, values)
            tally.add(table)
            writer.write_table(table)
    return tally.counts()


def bad_rows_message(source: str, count: int, shown: list[tuple[int, str]]) -> str:
    """``N rows cannot be scored: rows 3 (no text), 17 (...), ...``: how many, the first few."""
    rows = ", ".join(f"{row} ({why})" for row, why in shown)
    more = f" and {count - len(shown)} more" if count > len(shown) else ""
    return f"{source}: {count} rows cannot be scored: rows {rows}{more}"
