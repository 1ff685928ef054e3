"""Shared fixtures: a throw-away copy of the project that runs DVC for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
BIN = Path(sys.executable).parent


def project_env(root: Path) -> dict[str, str]:
    """Environment for commands in a copy: its own MLflow/Optuna stores, offline HF."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "OPTUNA_", "DVC_", "BENTOML_", "PIPELINE_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(root)
    return env


def sh(root: Path, *cmd: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command in the copy; fail the test with its output when it fails."""
    proc = subprocess.run(
        cmd, cwd=root, env=project_env(root), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def copy_project(dest: Path) -> Path:
    """Copy the tracked and not-ignored files into ``dest/repo``, commit, link shared/."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests need ../shared beside the repository")
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    root = dest / "repo"
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    (dest / "shared").symlink_to(SHARED)
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy")
    return root


@pytest.fixture(scope="session")
def pipeline_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with data pulled and ``prepare featurize`` reproduced."""
    root = copy_project(tmp_path_factory.mktemp("pipeline"))
    sh(root, "dvc", "pull", "--allow-missing", "-q")
    sh(root, "dvc", "repro", "prepare", "featurize")
    return root
