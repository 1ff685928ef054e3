"""The champion as a DVC artifact: declared in dvc.yaml under ``artifacts:``, and fetched by
name from another clone through the DVC remote (``dvc artifacts get``, no Studio)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from sentiment import paths
from tests.conftest import BIN, REPO, copy_project, project_env, sh
from tests.test_reproduced import pipeline_ran  # noqa: F401 (a fixture)


def test_the_champion_is_declared_with_the_dataset_it_was_trained_on() -> None:
    with Repo(str(REPO)) as repo:
        champion = repo.artifacts.read()["dvc.yaml"]["champion"]
    assert champion.path == paths.CHAMPION.as_posix() and champion.type == "model"
    assert champion.meta["dataset"] == yaml.safe_load((REPO / "params.yaml").read_text())["dataset"]
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert champion.path in stages["evaluate"]["outs"]
    assert str(paths.MODEL_CARD) in champion.desc


@pytest.mark.slow
def test_another_clone_fetches_the_champion_by_name_from_the_dvc_remote(
    pipeline_ran: None,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A copy of the project whose remote is a fresh folder: the champion pushed there and its
    version tagged as GTO does (``champion@v1.0.0``); ``dvc artifacts get`` from elsewhere
    clones the copy, finds the artifact and downloads it from the remote."""
    root = copy_project(tmp_path / "source")
    sh(root, "dvc", "cache", "dir", "--local", str(REPO / ".dvc" / "cache"))
    sh(root, "dvc", "remote", "add", "-f", "-d", "store", str(tmp_path / "remote"))
    sh(root, "dvc", "push", "-r", "store", paths.CHAMPION.as_posix())
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "remote")
    tag = ["tag", "-a", "champion@v1.0.0", "-m", "Registering artifact champion version v1.0.0"]
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", *tag)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    got = subprocess.run(
        [str(BIN / "dvc"), "artifacts", "get", str(root), "champion", "-o", "champion"],
        cwd=elsewhere, env=project_env(elsewhere), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert files(elsewhere / "champion") == files(REPO / paths.CHAMPION)


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
