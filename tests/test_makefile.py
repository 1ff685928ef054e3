"""The make targets a newcomer tries first: one line naming a missing variable, and `make exp`
showing the champion's headline even when every experiment agrees."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess

import pytest

from tests.conftest import BIN, REPO

MAKEFILE = (REPO / "Makefile").read_text()
NEED = re.compile(r"\$\(call need,([A-Z_ ]+),")
USED = re.compile(r"\$\(([A-Z_]+)\)")
OPTIONAL = re.compile(r"\$\((?:or|if) \$\(([A-Z_]+)\)")
DEFINED = set(re.findall(r"^(?:export )?([A-Z_]+)\s*[:?]?=", MAKEFILE, re.M)) | {"MAKEFILE_LIST"}


def recipes() -> dict[str, str]:
    """Each target's recipe lines, joined."""
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=[a-z][\w-]*:)", MAKEFILE):
        target = re.match(r"([a-z][\w-]*):", block)
        if target:
            found[target[1]] = "\n".join(line for line in block.splitlines() if line[:1] == "\t")
    return found


def needed(recipe: str) -> set[str]:
    return {name for match in NEED.findall(recipe) for name in match.split()}


def test_every_variable_a_recipe_needs_is_checked() -> None:
    """A recipe's variable with no default (``$(or $(TAG),...)``) is one it needs: the
    target must say so in one line rather than run a command with an empty argument."""
    checked = {}
    for target, recipe in recipes().items():
        used = set(USED.findall(recipe)) - DEFINED - set(OPTIONAL.findall(recipe))
        assert used <= needed(recipe), f"make {target}: {sorted(used - needed(recipe))}"
        if needed(recipe):
            checked[target] = needed(recipe)
    assert checked == {
        "deploy": {"VERSION", "REASON"},
        "score": {"INPUT", "OUTPUT"},
        "ingest": {"INPUT"},
        "retrain": {"DROP"},
        "drift": {"LOG"},
    }


@pytest.mark.parametrize(
    ("target", "given", "missing"),
    [
        ("score", {}, "INPUT OUTPUT"),
        ("score", {"INPUT": "reviews.csv"}, "OUTPUT"),
        ("drift", {}, "LOG"),
        ("ingest", {}, "INPUT"),
        ("retrain", {}, "DROP"),
        ("deploy", {"VERSION": "3"}, "REASON"),
    ],
)
def test_a_missing_variable_is_one_line(target: str, given: dict, missing: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"INPUT", "OUTPUT", "LOG", "DROP"}}
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", target]
        + [f"{k}={v}" for k, v in given.items()],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert f"*** make {target}: set {missing}, as in: make {target} " in lines[0]


def test_make_score_passes_the_text_column() -> None:
    def command(*extra: str) -> str:
        make = ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "score"]
        make += ["INPUT=a.csv", "OUTPUT=b.parquet"]
        done = subprocess.run([*make, *extra], cwd=REPO, capture_output=True, text=True, check=True)
        return done.stdout

    assert "--text-column" not in command()  # the dataset's declared text (test_score.py)
    assert '--text-column "Review text"' in command("TEXT=Review text")


@pytest.mark.slow
def test_make_exp_shows_the_champion_where_every_experiment_agrees() -> None:
    """Right after `make run` the workspace and main share every value, so --only-changed
    alone left only `Experiment` and `Created`. Shown here on main's row alone (nothing
    varies across one row): the kept columns stay."""
    command = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "exp"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    args = re.findall(r"'([^']*)'", command)
    drop, keep = args
    # --wait-for-lock: make test's other worker may be running DVC in this checkout
    show = [str(BIN / "dvc"), "--wait-for-lock", "exp", "show", "--csv", "--hide-workspace"]
    show += ["--only-changed"]
    table = subprocess.run(
        [*show, "--drop", drop, "--keep", keep],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    header = next(csv.reader(io.StringIO(table)))
    assert {
        "headline.champion.name",
        "headline.champion.test_macro_f1",
        "headline.champion.test_ci_low",
        "headline.champion.test_ci_high",
        "gate.promote",
    } <= set(header)
