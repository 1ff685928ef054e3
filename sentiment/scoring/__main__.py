"""score: label a file of reviews offline, in bounded memory.

    python -m sentiment.scoring --model models/champion --input reviews.csv --output scored.parquet
    python -m sentiment.scoring --input raw.csv --text-column "Review text" --output scored.parquet
    python -m sentiment.scoring --model sentiment-clothing:latest --input raw.csv \
        --text-column Title --text-column "Review Text" --text-separator ". "

``--model`` is a model directory or a BentoML store tag; without it, the declared dataset's
promoted model (``<gate.bento_model>:latest``, ``sentiment-flipkart:latest`` by default). The
input (CSV, Parquet or JSON Lines) is read ``--chunk-rows`` rows at a time and only its text
column(s) are kept, so memory does not grow with the file. Without ``--text-column``, the text
is what the dataset params.yaml names declares (``text``, joined by ``text_separator``), so a
file in the training data's own schema scores as it trained. The output is Parquet, one row per
input row: ``row`` (0-based), ``label``, ``score`` (as the service defines it),
``model_version`` and ``error``. A row that cannot be scored (no text, or nothing left once
cleaned) gets a null label and the reason in ``error``, and the summary names how many and
which; ``--bad-rows fail`` refuses the file instead. The output appears only when complete
(written to a temporary file, then renamed).

``--input`` may also be a folder or a glob of such files (rows numbered across them in path
order), and inputs and outputs may be ``s3://`` URIs. ``--engine ray`` (the default when
``RAY_ADDRESS`` names a cluster) scores the chunks on a pool of Ray actors and writes
``--output`` as a folder of Parquet parts with the same columns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sentiment import paths
from sentiment.cli import entry_point
from sentiment.data.tables import TextColumns
from sentiment.params import production_tag
from sentiment.scoring.batch import bad_rows_message, score_file
from sentiment.settings import setting


def ray_line(counts: dict) -> str:
    """Where the Ray engine's parts ran, and the actors lost on the way ('' without Ray)."""
    if "nodes" not in counts:
        return ""
    nodes = ", ".join(f"{node} {parts}" for node, parts in counts["nodes"].items())
    lost = f"; {counts['lost']} actors lost, their chunks re-run" if counts["lost"] else ""
    return f"; parts per node: {nodes}{lost}"


def declared_text(params_file: Path = paths.PARAMS_FILE) -> TextColumns:
    """The text column(s) of the dataset params.yaml declares; ``text`` without a params.yaml."""
    if not Path(params_file).is_file():
        return TextColumns()
    from sentiment.data.dataset import load_dataset

    dataset = load_dataset(params_file)
    return TextColumns(dataset.text, dataset.text_separator)


def declared_model(params_file: Path = paths.PARAMS_FILE) -> str:
    """The production model of the dataset params.yaml declares: its BentoML store tag."""
    if not Path(params_file).is_file():
        raise ValueError(f"no {params_file} here to name the production model: pass --model")
    return production_tag(params_file)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sentiment.scoring", description=__doc__)
    parser.add_argument(
        "--model", help="model directory or BentoML tag (default: the dataset's production)"
    )
    parser.add_argument(
        "--input", required=True, help="CSV, Parquet or JSONL file, folder or glob (or s3://)"
    )
    parser.add_argument(
        "--output", required=True, help="Parquet file, a folder with --engine ray (or s3://)"
    )
    parser.add_argument(
        "--text-column",
        action="append",
        help="the text column, repeated to join several (default: the declared dataset's)",
    )
    parser.add_argument("--text-separator", default=" ", help="what joins several text columns")
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--bad-rows", choices=("mark", "fail"), default="mark")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="ray" if setting("RAY_ADDRESS") else "local",
        help="one process (default), or Ray actors (default when RAY_ADDRESS is set)",
    )
    args = parser.parse_args()
    text = (
        TextColumns(tuple(args.text_column), args.text_separator)
        if args.text_column
        else declared_text()
    )
    counts = score_file(
        args.model or declared_model(),
        args.input,
        args.output,
        text,
        args.chunk_rows,
        args.bad_rows == "fail",
        args.engine,
    )
    print(
        f"score: {args.output}: {counts['rows']} rows in {counts['seconds']:.1f} s "
        f"({counts['rows'] / max(counts['seconds'], 1e-9):.0f} rows/s), "
        f"{counts['rows'] - counts['not_scored']} scored" + ray_line(counts)
    )
    if counts["not_scored"]:
        message = bad_rows_message(args.input, counts["not_scored"], counts["first_not_scored"])
        print(f"score: {message}", file=sys.stderr)


if __name__ == "__main__":
    entry_point(main)
