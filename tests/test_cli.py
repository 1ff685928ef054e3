"""Every stage command fails as one line naming what is wrong (a traceback only on request)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from sentiment.cli import entry_point
from sentiment.params import dvc_stages, load_params
from tests.conftest import BIN, REPO, copy_project, project_env

STAGES = dvc_stages(REPO / "dvc.yaml")


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_command_fails_in_one_line(
    stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run in a directory without params.yaml, each stage's command names the file."""
    module = importlib.import_module(f"stages.{stage}")
    assert "entry_point(main)" in Path(module.__file__).read_text()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [module.__file__])
    monkeypatch.delenv("SENTIMENT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        entry_point(module.main)
    assert exit_.value.code == f"{stage}: params.yaml: no such file"


def test_a_missing_param_is_named_with_its_file_and_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("prepare:\n  seed: 1\n")
    params = load_params("prepare", path)
    with pytest.raises(ValueError, match=r"params\.yaml: prepare: no 'test_size'"):
        params["test_size"]
    with pytest.raises(ValueError, match=r"params\.yaml: no 'tune:' section"):
        load_params("tune", path)


@pytest.mark.slow
def test_make_run_without_a_readable_remote_says_which_in_one_line(tmp_path: Path) -> None:
    """A clone without ``../shared``: `make run` names the remote it tried and the page that
    says how to configure one, instead of DVC's "missing data 'source'" later."""
    root = copy_project(tmp_path)
    (tmp_path / "shared").unlink(missing_ok=True)
    proc = subprocess.run(
        ["make", "run", f"VENV={BIN.parent}"],
        cwd=root,
        env=project_env(root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    said = [line for line in proc.stdout.splitlines() if line.startswith("make run:")]
    assert len(said) == 1, proc.stdout + proc.stderr
    assert f"DVC remote 'shared' ({tmp_path / 'shared' / 'dvc-store'})" in said[0]
    assert "docs/data.md" in said[0]
    assert not (root / "data" / "prepared" / "train.parquet").exists()  # no stage ran
