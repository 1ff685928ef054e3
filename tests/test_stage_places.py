"""A stage has all of its places (docs/development.md's "Add a stage" checklist): this fails
naming the stage and the place it misses."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from sentiment.commands import COMMANDS
from sentiment.headlines import EXP_METRICS, HEADLINES, stage_line
from sentiment.params import SECTIONS, dvc_stages
from tests.conftest import REPO

DVC = dvc_stages(REPO / "dvc.yaml")
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
MAKEFILE = (REPO / "Makefile").read_text()


def exp_columns() -> set[str]:
    """The prefixes the Makefile's EXP_COLUMNS keeps (it drops every other column)."""
    kept = re.search(r"^EXP_COLUMNS := \^\(\?!\(([\w|]+)\)", MAKEFILE, re.M)[1]
    return set(kept.split("|"))


def declared_metrics(spec: dict) -> set[str]:
    return {
        next(iter(entry)) if isinstance(entry, dict) else entry
        for kind in ("metrics", "plots", "outs")
        for entry in spec.get(kind, [])
    }


@pytest.mark.parametrize("stage", list(DVC))
def test_a_stage_has_every_place(stage: str) -> None:
    spec = DVC[stage]
    assert spec["cmd"] == f"python -m stages.{stage}", "dvc.yaml runs stages/<name>.py"
    assert (REPO / "stages" / f"{stage}.py").is_file(), "stages/<name>.py"
    assert f"stages.{stage}" in COMMANDS, "sentiment/commands.py"
    assert stage in HEADLINES, "sentiment/headlines.py"
    assert HEADLINES[stage].file.as_posix() in declared_metrics(spec), "its headline's file"
    if "params" in spec:
        assert stage in PARAMS, "a params.yaml section"
        assert set(PARAMS[stage]) == set(SECTIONS[stage]), "sentiment/params.py SECTIONS"
        assert stage in exp_columns(), "the Makefile's EXP_COLUMNS"
    assert f"`{stage}`" in (REPO / "docs" / "pipeline.md").read_text(), "docs/pipeline.md"
    diagram = (REPO / "README.md").read_text().split("## The pipeline")[1].split("```")[1]
    assert f"─{stage}─" in diagram, "the README's pipeline diagram"


def test_make_exp_keeps_the_headline_files_and_the_params() -> None:
    tops = {next(iter(json.loads((REPO / path).read_text()))) for path in EXP_METRICS}
    assert exp_columns() == tops | {stage for stage, spec in DVC.items() if "params" in spec}
    declared = {path for spec in DVC.values() for path in declared_metrics(spec)}
    assert {path.as_posix() for path in EXP_METRICS} <= declared


@pytest.mark.parametrize("stage", list(HEADLINES))
def test_each_headline_reads_the_committed_metrics(stage: str) -> None:
    line = stage_line(stage)
    assert line is not None and line.startswith(f"{stage}: ") and "\n" not in line
