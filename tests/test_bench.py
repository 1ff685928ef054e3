"""The benches are run by hand, not by the suite: each one must still start (its imports
and arguments hold after the code it measures moved)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

BENCHES = sorted(p.stem for p in (REPO / "bench").glob("*.py") if "__main__" in p.read_text())


def test_every_bench_is_listed() -> None:
    assert {"drift_calibration", "serve_load", "score_file"} <= set(BENCHES)


@pytest.mark.parametrize("bench", BENCHES)
@pytest.mark.slow
def test_the_bench_starts(bench: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_the_skops_save_table_is_the_committed_result() -> None:
    import json

    from bench.skops_save import markdown

    result = json.loads((REPO / "bench" / "skops_save.json").read_text())
    assert markdown(result) in (REPO / "docs" / "benchmarks.md").read_text()
    assert [row["terms"] for row in result["rows"]] == [10_000, 100_000, 1_000_000]
