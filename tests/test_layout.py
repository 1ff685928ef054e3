"""The house's shape: few top-level entries, and pyproject.toml packages what the project is."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib

from tests.conftest import REPO


def test_at_most_20_visible_entries_at_the_top() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    visible = {path.split("/")[0] for path in tracked if not path.startswith(".")}
    assert len(visible) <= 20, sorted(visible)


def test_pyproject_packages_every_python_package_at_the_top() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = setuptools["packages"]["find"]["include"]
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert packages == {"sentiment", "stages"}
    for package in packages:
        assert any(fnmatch.fnmatch(package, pattern) for pattern in include), package
    assert setuptools["py-modules"] == ["service"]
