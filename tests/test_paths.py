"""Paths live in one place: each stage reads and writes exactly what dvc.yaml declares for it,
through ``sentiment.paths``, and no module spells a pipeline path itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path, PurePosixPath

import pytest

from sentiment import paths
from sentiment.data.dataset import load_dataset
from sentiment.params import dvc_stages
from tests.conftest import REPO

STAGES = dvc_stages(REPO / "dvc.yaml")
CODE = (".py", ".lock")


def declared(spec: dict) -> set[str]:
    """A stage's data deps and every output (outs, metrics, plots), code left out."""
    found = {d for d in spec.get("deps", []) if not d.endswith(CODE)}
    for kind in ("outs", "metrics", "plots"):
        for out in spec.get(kind, []):
            found.add(out if isinstance(out, str) else next(iter(out)))
    return found


def flatten(value: object) -> set[str]:
    if isinstance(value, Path):
        return {value.as_posix()}
    if isinstance(value, dict):
        return set().union(*(flatten(v) for v in value.values()))
    return set()


def referenced(module: Path) -> set[str]:
    """The paths a module takes from ``sentiment.paths``: ``paths.NAME``, or one entry of a
    mapping, ``paths.NAME["key"]``; and the dataset's folder where it calls ``load_dataset``."""
    tree = ast.parse(module.read_text())
    used = set()
    if any(isinstance(n, ast.Name) and n.id == "load_dataset" for n in ast.walk(tree)):
        used.add((paths.RAW / load_dataset(REPO / "params.yaml").name).as_posix())
    subscripted = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "paths"
            and isinstance(node.slice, ast.Constant)
        ):
            used |= flatten(getattr(paths, node.value.attr)[node.slice.value])
            subscripted.add(id(node.value))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "paths"
            and id(node) not in subscripted
        ):
            used |= flatten(getattr(paths, node.attr))
    return used


def inside(path: str, folder: str) -> bool:
    return path == folder or PurePosixPath(path).is_relative_to(folder)


ALL_DECLARED = set().union(*(declared(spec) for spec in STAGES.values()))


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_uses_exactly_the_paths_dvc_yaml_declares_for_it(stage: str) -> None:
    spec = STAGES[stage]
    module = REPO / (spec["cmd"].split("python -m ", 1)[1].split()[0].replace(".", "/") + ".py")
    ours = declared(spec)
    used = referenced(module) - {p.as_posix() for p in paths.NOT_DVC_OUTPUTS}
    undeclared = [
        path
        for path in sorted(used)
        # a declared path, or inside one; or a folder holding only paths this stage declares
        if not any(inside(path, d) for d in ours)
        and not (
            any(inside(d, path) for d in ours)
            and all(d in ours for d in ALL_DECLARED if inside(d, path))
        )
    ]
    unused = [d for d in sorted(ours) if not any(inside(d, u) or inside(u, d) for u in used)]
    assert not undeclared, f"stage {stage} uses {undeclared}, not declared in its dvc.yaml entry"
    assert not unused, f"stage {stage} declares {unused} in dvc.yaml but never uses them"


PIPELINE_PATH = re.compile(r"^(data|models|reports)/[\w./-]+$")


def test_no_module_spells_a_pipeline_path_but_sentiment_paths() -> None:
    spelled = []
    for module in [*REPO.glob("stages/*.py"), *REPO.glob("sentiment/**/*.py"), REPO / "service.py"]:
        if module == REPO / "sentiment" / "paths.py":
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            literal = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if literal and PIPELINE_PATH.match(node.value):
                spelled.append(f"{module.relative_to(REPO)}: {node.value!r}")
    assert not spelled, spelled


def test_outputs_live_under_three_roots() -> None:
    roots = {PurePosixPath(path).parts[0] for path in ALL_DECLARED}
    assert roots == {"data", "models", "reports"}
    top = {p.name for p in REPO.iterdir() if not p.name.startswith(".")}
    assert not top & {"eval", "gate", "drift", "tune", "featurize", "train_transformer"}
