"""Every command lives in one list (``sentiment.commands``), and everything calls those."""

from __future__ import annotations

import json
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


# Each command run with --help in one interpreter (its imports are paid once, not per command).
HELP_ALL = """
import contextlib, io, json, runpy, sys
from sentiment.commands import COMMANDS

answers = {}
for module in COMMANDS:
    sys.argv, out = [module, "--help"], io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    answers[module] = [code, out.getvalue()]
print(json.dumps(answers))
"""


@pytest.mark.slow
def test_each_command_answers_help() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HELP_ALL], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(answers) == set(COMMANDS)
    for module, (code, out) in answers.items():
        assert code == 0 and out.startswith("usage:"), (module, code, out[:200])
