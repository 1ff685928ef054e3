"""Every GitHub Actions workflow validates against GitHub's schema and passes zizmor (offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
