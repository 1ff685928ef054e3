"""After `make run`, the workspace holds the committed outputs: the pipeline, recomputed on
this machine from the raw data, gave the bytes that `dvc.lock` records at HEAD, for every
output whose numerics are pinned (data, features, both models, the champion).

Outputs computed from ONNX Runtime's float kernels or from BLAS (evaluate's plot data, the
drift reference's SVD projection and what drift draws from it) follow the CPU's kernels: an
AVX-512 machine gave other bytes for the ROC and PR points and the drift reference than the
AVX2 one that recorded the lock (equal metrics). They are checked to exist, not to match."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from sentiment import paths
from sentiment.settings import setting
from tests.conftest import BIN, REPO
from tests.test_readme import committed


def cached_outputs(dvc_yaml: dict) -> dict[str, set[str]]:
    """Per stage, the outputs DVC caches: metrics and plots kept in git (``cache: false``,
    some holding timings) are left out."""
    found: dict[str, set[str]] = {}
    for stage, spec in dvc_yaml["stages"].items():
        for kind in ("outs", "metrics", "plots"):
            for out in spec.get(kind, []):
                path, options = (out, {}) if isinstance(out, str) else next(iter(out.items()))
                if options.get("cache", True):
                    found.setdefault(stage, set()).add(path)
    return found


MACHINE_DEPENDENT = {
    *(p.as_posix() for p in paths.EVAL_PLOTS.values()),
    paths.DRIFT_REFERENCE.as_posix(),
    paths.DRIFT_REPORT_MD.as_posix(),
    paths.DRIFT_PLOTS.as_posix(),
}


def md5s(lock: dict, stage: str) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in lock["stages"][stage].get("outs", [])}


def test_the_workspace_reproduces_every_cached_output_of_the_committed_lock() -> None:
    if not (REPO / paths.CHAMPION / "meta.json").is_file():
        reason = "no pipeline outputs in the workspace (`make run` computes them)"
        if setting("SENTIMENT_REQUIRE_MODELS"):
            pytest.fail(reason)
        pytest.skip(reason)
    status = subprocess.run(
        [str(BIN / "dvc"), "status", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(status) == {}, f"the workspace is not what its dvc.lock says: {status}"
    here = yaml.safe_load((REPO / "dvc.lock").read_text())
    at_head = committed("dvc.lock")
    for stage, outputs in cached_outputs(committed("dvc.yaml")).items():
        ours, theirs = md5s(here, stage), md5s(at_head, stage)
        for path in sorted(outputs):
            if path in MACHINE_DEPENDENT:
                assert (REPO / path).exists(), path
                continue
            assert ours[path] == theirs[path], (
                f"{stage}: {path} has md5 {ours[path]} here, {theirs[path]} in the committed "
                "dvc.lock"
            )
