"""Every command lives in one list (``sentiment.commands``), and everything calls those."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from sentiment.commands import COMMANDS
from tests.conftest import REPO

CALLED = re.compile(r"python[\d.]*\s+-m\s+((?:sentiment|stages)(?:\.\w+)*)(?![.\w<])")
CALLERS = ["Makefile", "README.md", "dvc.yaml", "docs/*.md", ".github/workflows/*.y*ml"]


def module_file(module: str) -> str:
    """The file ``python -m module`` runs."""
    path = REPO / module.replace(".", "/")
    return (path / "__main__.py" if path.is_dir() else path.with_suffix(".py")).as_posix()


def test_every_module_that_runs_as_a_command_is_listed() -> None:
    runnable = {
        path.relative_to(REPO).with_suffix("").as_posix().removesuffix("/__main__")
        for folder in ("sentiment", "stages")
        for path in (REPO / folder).rglob("*.py")
        if 'if __name__ == "__main__":' in path.read_text()
    }
    assert {m.replace(".", "/") for m in COMMANDS} == runnable


def test_the_makefile_docs_and_workflows_call_only_listed_commands() -> None:
    called = {
        (path.relative_to(REPO).as_posix(), module)
        for pattern in CALLERS
        for path in REPO.glob(pattern)
        for module in CALLED.findall(path.read_text())
    }
    assert {m for _, m in called} >= {"stages.prepare", "sentiment.registry"}  # it finds them
    unknown = sorted((where, m) for where, m in called if m not in COMMANDS)
    assert not unknown, f"not in sentiment.commands.COMMANDS: {unknown}"


def test_each_stage_is_a_listed_command() -> None:
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert [f"stages.{name}" for name in stages] == [m for m in COMMANDS if m.startswith("stages.")]


@pytest.mark.parametrize("module", list(COMMANDS))
def test_each_command_answers_help(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
