"""score: label a file of reviews offline, in bounded memory.

    python -m sentiment.score --model models/champion --input reviews.csv --output scored.parquet
    python -m sentiment.score --model sentiment:latest --input raw.csv --text-column "Review text"

``--model`` is a model directory or a BentoML store tag (the promoted model is
``sentiment:latest``). The input (CSV, Parquet or JSON Lines) is read ``--chunk-rows`` rows at
a time and only its text column is kept, so memory does not grow with the file. The output is
Parquet, one row per input row: ``row`` (0-based), ``label``, ``score`` (as the service
defines it), ``model_version`` and ``error``. A row that cannot be scored (no text, or
nothing left once cleaned) gets a null label and the reason in ``error``, and the summary
names how many and which; ``--bad-rows fail`` refuses the file instead. The output appears
only when complete (written to a temporary file, then renamed).

``--input`` may also be a folder or a glob of such files (rows numbered across them in path
order), and inputs and outputs may be ``s3://`` URIs (``sentiment.storage``). ``--engine ray``
(the default when ``RAY_ADDRESS`` names a cluster) scores the chunks on a pool of Ray actors
and writes ``--output`` as a folder of Parquet parts with the same columns
(``sentiment.ray_engine``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sentiment.cli import entry_point
from sentiment.models.files import bento_model_dir, file_digests
from sentiment.models.predictor import Predictor, decide, load_predictor, read_meta
from sentiment.serving.rules import label_names, nothing_to_score
from sentiment.storage import Location, locate, matching_files, staged_file

READERS = (".csv", ".parquet", ".jsonl")
SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("model_version", pa.string()),
        ("error", pa.string()),
    ]
)
SHOWN_BAD_ROWS = 10


def read_chunks(source: Location, column: str, rows: int) -> Iterator[list[Any]]:
    """The text column of ``source``, ``rows`` values at a time (None where missing)."""
    if source.suffix == ".parquet":
        parquet = pq.ParquetFile(source.open())
        if column not in parquet.schema_arrow.names:
            raise ValueError(no_column(source, column, parquet.schema_arrow.names))
        for batch in parquet.iter_batches(batch_size=rows, columns=[column]):
            yield batch.column(0).to_pylist()
        return
    import pandas as pd

    if source.suffix == ".csv":
        with source.open() as head:
            header = pd.read_csv(head, nrows=0).columns.tolist()
        if column not in header:
            raise ValueError(no_column(source, column, header))
        options: dict[str, Any] = {"usecols": [column], "dtype": str}
        read = pd.read_csv
    elif source.suffix == ".jsonl":
        options, read = {"lines": True, "dtype": False}, pd.read_json
    else:
        kind = source.suffix
        raise ValueError(f"{source.shown}: unknown input type {kind!r}; use one of {READERS}")
    with source.open() as body, read(body, chunksize=rows, **options) as reader:
        for chunk in reader:
            if column not in chunk.columns:
                raise ValueError(no_column(source, column, chunk.columns.tolist()))
            yield [None if v is None or v != v else v for v in chunk[column].tolist()]


def no_column(source: Location, column: str, columns: list[str]) -> str:
    return f"{source.shown}: no column {column!r} (it has {columns}); pick one with --text-column"


def why_not_scored(value: Any) -> str | None:
    """Why a cell cannot be scored, or None."""
    if value is None:
        return "no text"
    if not isinstance(value, str):
        return f"not text ({type(value).__name__})"
    return nothing_to_score(value)


def score_chunk(
    predictor: Predictor, names: list[str], values: list[Any]
) -> tuple[list[str | None], list[float | None], list[str | None]]:
    """Labels, scores and errors for one chunk; unscorable rows get a reason, not a label."""
    errors = [why_not_scored(v) for v in values]
    good = [i for i, e in enumerate(errors) if e is None]
    labels: list[str | None] = [None] * len(values)
    scores: list[float | None] = [None] * len(values)
    if good:
        proba = predictor.predict_proba([values[i] for i in good])
        ids = decide(proba, predictor.meta.get("threshold"))
        chosen = proba[:, 1] if len(names) == 2 else proba[np.arange(len(ids)), ids]
        for i, label, score in zip(good, ids, chosen, strict=True):
            labels[i], scores[i] = names[label], float(score)
    return labels, scores, errors


def resolve_model(model: str) -> tuple[Path, str]:
    """A model directory, or a BentoML store tag: the directory and a version to record
    (the registry version, else the directory's name and a digest of its files)."""
    path = Path(model)
    if path.is_dir():
        meta = read_meta(path)
        files = hashlib.sha256(repr(sorted(file_digests(path).items())).encode())
        return path, str(meta.get("registry_version") or f"{path.name}@{files.hexdigest()[:12]}")
    import bentoml

    stored = bentoml.models.get(model)
    return bento_model_dir(stored), stored.info.labels.get("registry_version") or str(stored.tag)


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


def input_files(source: str | Path) -> list[Location]:
    """One file, every CSV/Parquet/JSONL file of a folder, or a glob's matches (in the last
    path part), sorted; local or on the bucket."""
    found = matching_files(locate(source), READERS)
    if not found:
        raise FileNotFoundError(f"{source}: no such file (or no {'/'.join(READERS)} files)")
    return found


def score_file(
    model: str,
    source: str | Path,
    target: str | Path,
    column: str,
    rows: int,
    fail_on_bad: bool,
    engine: str = "local",
) -> dict[str, Any]:
    """Score ``source`` (a file, folder or glob, local or on the bucket) into ``target``:
    one Parquet file, or with the Ray engine a folder of Parquet parts and a ``_SUCCESS``
    marker; complete or absent either way. Return the counts."""
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
    chunks = (chunk for f in files for chunk in read_chunks(f, column, rows))
    if engine == "ray":
        from sentiment.ray_engine import score_on_ray

        score_on_ray(model_dir, version, chunks, output, tally.add)
        return tally.counts()
    predictor = load_predictor(model_dir)
    names = label_names(predictor.meta, str(model_dir))
    with staged_file(output) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer:
        for values in chunks:
            labels, scores, errors = score_chunk(predictor, names, values)
            first = tally.rows
            table = pa.table(
                {
                    "row": np.arange(first, first + len(values)),
                    "label": labels,
                    "score": scores,
                    "model_version": [version] * len(values),
                    "error": errors,
                },
                schema=SCHEMA,
            )
            tally.add(table)
            writer.write_table(table)
    return tally.counts()


def parquet_rows(files: list[Location]) -> int:
    """The rows the Parquet inputs hold, from their footers (for the progress bar)."""
    total = 0
    for source in files:
        if source.suffix == ".parquet":
            with source.open() as handle:
                total += pq.ParquetFile(handle).metadata.num_rows
    return total


def bad_rows_message(source: str, count: int, shown: list[tuple[int, str]]) -> str:
    """``N rows cannot be scored: rows 3 (no text), 17 (...), ...``: how many, the first few."""
    rows = ", ".join(f"{row} ({why})" for row, why in shown)
    more = f" and {count - len(shown)} more" if count > len(shown) else ""
    return f"{source}: {count} rows cannot be scored: rows {rows}{more}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sentiment.score", description=__doc__)
    parser.add_argument("--model", required=True, help="model directory or BentoML tag")
    parser.add_argument(
        "--input", required=True, help="CSV, Parquet or JSONL file, folder or glob (or s3://)"
    )
    parser.add_argument(
        "--output", required=True, help="Parquet file, a folder with --engine ray (or s3://)"
    )
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--bad-rows", choices=("mark", "fail"), default="mark")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="ray" if os.environ.get("RAY_ADDRESS") else "local",
        help="one process (default), or Ray actors (default when RAY_ADDRESS is set)",
    )
    args = parser.parse_args()
    counts = score_file(
        args.model,
        args.input,
        args.output,
        args.text_column,
        args.chunk_rows,
        args.bad_rows == "fail",
        args.engine,
    )
    print(
        f"score: {args.output}: {counts['rows']} rows in {counts['seconds']:.1f} s "
        f"({counts['rows'] / max(counts['seconds'], 1e-9):.0f} rows/s), "
        f"{counts['rows'] - counts['not_scored']} scored"
    )
    if counts["not_scored"]:
        message = bad_rows_message(args.input, counts["not_scored"], counts["first_not_scored"])
        print(f"score: {message}", file=sys.stderr)


if __name__ == "__main__":
    entry_point(main)
