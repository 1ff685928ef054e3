"""Every GitHub Actions workflow validates against GitHub's schema and passes zizmor (offline)."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yaml"))


def test_expected_workflows_exist() -> None:
    assert {w.name for w in WORKFLOWS} >= {"ci.yaml", "cml.yaml", "container.yaml", "drift.yaml"}


def test_workflows_match_github_schema() -> None:
    proc = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, WORKFLOWS),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_of_high_severity() -> None:
    proc = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--format", "json", str(REPO / ".github" / "workflows")],
        capture_output=True,
        text=True,
    )
    findings = json.loads(proc.stdout)
    high = [
        (f["ident"], f["locations"][0]["symbolic"]["key"])
        for f in findings
        if f["determinations"]["severity"] == "High"
    ]
    assert not high


@pytest.mark.skipif(platform.system() != "Linux", reason="PyPI's torch is CPU-only elsewhere")
@pytest.mark.slow
def test_make_installs_the_cpu_build_of_the_locked_torch() -> None:
    """On Linux the CPU build comes first from PyTorch's index; the lock then finds torch
    installed (its pin has no local label). TORCH_VARIANT picks another build."""
    version = re.search(r"^torch==(\S+)$", (REPO / "requirements/main.lock").read_text(), re.M)[1]

    def dry_run(*variables: str) -> str:
        return subprocess.run(
            ["make", "-n", "-B", ".venv/.installed", *variables],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    cpu, cuda = dry_run(), dry_run("TORCH_VARIANT=cu128")
    assert (
        f'--no-deps --index-url https://download.pytorch.org/whl/cpu "torch=={version}+cpu"' in cpu
    )
    assert cpu.index(f"torch=={version}+cpu") < cpu.index("-r requirements/main.lock")
    assert f'whl/cu128 "torch=={version}+cu128"' in cuda


def test_the_drift_workflow_retrains_on_new_reviews_else_opens_an_issue() -> None:
    """What docs/drift.md says it does when the retrain rule fires (exit 3): the retrain
    workflow where NEW_REVIEWS_URI is set, an issue where it is not."""
    import yaml

    jobs = yaml.safe_load((REPO / ".github" / "workflows" / "drift.yaml").read_text())["jobs"]
    assert jobs["retrain"]["uses"] == "./.github/workflows/retrain.yaml"
    assert jobs["retrain"]["if"] == "needs.drift.outputs.exit == '3' && vars.NEW_REVIEWS_URI != ''"
    [ask] = [step for step in jobs["drift"]["steps"] if "gh issue create" in step.get("run", "")]
    assert ask["if"] == "steps.drift.outputs.exit == '3' && vars.NEW_REVIEWS_URI == ''"
