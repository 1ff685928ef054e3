"""dvc.yaml tells the truth: every local file a stage's command imports or loads is a dep."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from sentiment.params import dvc_stages
from sentiment.tracking import CODE_SUFFIXES
from tests.conftest import REPO, copy_project, sh

STAGES = dvc_stages(REPO / "dvc.yaml")
PACKAGE = "sentiment"  # the library the stages import
# Imported by every stage, deciding none of their outputs: the environment variables'
# declarations (DVC cannot track their values either) and the headline lines the stages
# print. Listing them would make a new setting or a reworded line re-run the whole pipeline.
DECIDE_NO_OUTPUT = {"sentiment/settings.py", "sentiment/headlines.py"}


def local_files(path: Path) -> set[str]:
    """Project files one module imports (at any depth of the code) or names by path."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value
            if name.endswith(CODE_SUFFIXES) and "/" not in name:
                candidates = [
                    REPO / name,
                    *REPO.glob(f"*/{name}"),
                    *REPO.glob(f"{PACKAGE}/**/{name}"),
                ]
                found.update(c.relative_to(REPO).as_posix() for c in candidates if c.is_file())
        for module in modules:
            candidate = REPO / (module.replace(".", "/") + ".py")
            if module.startswith(("stages.", f"{PACKAGE}.")) and candidate.is_file():
                found.add(candidate.relative_to(REPO).as_posix())
    return found


def closure(start: str) -> set[str]:
    """``start`` and everything it reaches, transitively."""
    seen, pending = set(), [start]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        if current.endswith(".py"):
            pending.extend(local_files(REPO / current))
    return seen


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_local_file_a_stage_uses_is_a_dep(stage: str) -> None:
    module = STAGES[stage]["cmd"].split("python -m ", 1)[1].split()[0]
    needed = closure(module.replace(".", "/") + ".py") - DECIDE_NO_OUTPUT
    missing = sorted(needed - set(STAGES[stage]["deps"]))
    assert not missing, f"stage {stage} does not declare {missing} in dvc.yaml"


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_depends_on_no_code_it_does_not_run(stage: str) -> None:
    module = STAGES[stage]["cmd"].split("python -m ", 1)[1].split()[0]
    needed = closure(module.replace(".", "/") + ".py")
    code = {dep for dep in STAGES[stage]["deps"] if dep.endswith(CODE_SUFFIXES)}
    extra = sorted(code - (needed - DECIDE_NO_OUTPUT))
    assert not extra, (
        f"stage {stage} declares {extra}, which its command never runs or which decide no output"
    )


def test_the_closure_follows_function_level_imports_and_paths() -> None:
    promotion = closure("sentiment/registry/promotion.py")
    assert "sentiment/models/pyfunc_model.py" in promotion  # loaded by path by log_model
    assert "requirements/main.lock" in promotion  # read by mlflow_model.pinned_requirements
    assert "sentiment/models/transformer.py" in closure("stages/evaluate.py")  # in a function
    # The gate stage only decides: the registry's commands are not its deps.
    assert "sentiment/registry/promotion.py" not in closure("stages/gate.py")


def test_editing_text_py_makes_every_stage_using_it_stale(tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    with open(root / "sentiment" / "data" / "text.py", "a") as fh:
        fh.write("# edited\n")
    status = json.loads(sh(root, "dvc", "status", "--json").stdout)
    stale = {
        stage
        for stage, changes in status.items()
        for change in changes
        if isinstance(change, dict)
        and change.get("changed deps", {}).get("sentiment/data/text.py") == "modified"
    }
    users = {stage for stage in STAGES if "sentiment/data/text.py" in STAGES[stage]["deps"]}
    assert users == set(STAGES)  # every stage cleans or tokenises text
    assert stale == users
