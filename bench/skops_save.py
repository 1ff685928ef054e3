"""How long saving a fitted vectoriser takes as its vocabulary grows (``save_skops``).

    python -m bench.skops_save [--terms 10000 100000 1000000] [--save bench/skops_save.json]

Each size is a TF-IDF vectoriser fitted on synthetic documents whose words are all distinct,
so the vocabulary has exactly that many terms. Reported per size: the whole save (skops's own
dump, the canonical renumbering, the deterministic zip), the load (the allowlist check
included), the file's size, and the growth exponent of the save time between the smallest
and largest size (1.0 is linear). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer

from sentiment.fileio import write_json
from sentiment.models.trust import load_skops, save_skops

WORDS_PER_DOCUMENT = 1000


def large_vectorizer(terms: int) -> TfidfVectorizer:
    """A fitted vectoriser with exactly ``terms`` distinct terms in its vocabulary."""
    words = [f"w{i}" for i in range(terms)]
    documents = [
        " ".join(words[start : start + WORDS_PER_DOCUMENT])
        for start in range(0, terms, WORDS_PER_DOCUMENT)
    ]
    return TfidfVectorizer(token_pattern=r"\S+").fit(documents)


def measure(terms: int) -> dict[str, float]:
    """Seconds to save a vectoriser of ``terms`` terms and to load it back (allowlist check
    included), and the file's size."""
    vectorizer = large_vectorizer(terms)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "vectorizer.skops"
        start = time.perf_counter()
        save_skops(vectorizer, path)
        save_seconds = time.perf_counter() - start
        start = time.perf_counter()
        load_skops(path)
        load_seconds = time.perf_counter() - start
        size_mb = path.stat().st_size / 2**20
    return {
        "terms": terms,
        "save_seconds": round(save_seconds, 2),
        "load_seconds": round(load_seconds, 2),
        "size_mb": round(size_mb, 1),
    }


def markdown(result: dict) -> str:
    """The table docs/benchmarks.md shows of a saved result (a test keeps the two equal)."""
    lines = ["| terms | save (s) | load (s) | file (MB) |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {row['terms']:,} | {row['save_seconds']:.2f} | {row['load_seconds']:.2f} "
        f"| {row['size_mb']:.1f} |"
        for row in result["rows"]
    ]
    return "\n".join(lines) + f"\n\nGrowth exponent of the save time: {result['save_exponent']}."


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.skops_save", description=__doc__)
    parser.add_argument("--terms", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--save", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    measure(100)  # imports and first-call costs, not counted
    rows = [measure(terms) for terms in sorted(args.terms)]
    for row in rows:
        print(
            f"{row['terms']:>9,} terms: saved in {row['save_seconds']:.2f} s "
            f"loaded in {row['load_seconds']:.2f} s, {row['size_mb']:.1f} MB"
        )
    first, last = rows[0], rows[-1]
    exponent = (
        math.log(last["save_seconds"] / first["save_seconds"])
        / math.log(last["terms"] / first["terms"])
        if len(rows) > 1 and first["save_seconds"] > 0
        else None
    )
    result = {
        "bench": "skops_save",
        "cores": os.cpu_count(),
        "rows": rows,
        "save_exponent": None if exponent is None else round(exponent, 2),
    }
    if args.save:
        write_json(args.save, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
