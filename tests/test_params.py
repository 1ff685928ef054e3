"""A misspelt param is refused, never silently replaced by the old value: every stage names
the key and the nearest valid one, run as a command and through ``dvc exp run -S``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sentiment.params import (
    SECTIONS,
    ParamsError,
    dvc_stages,
    load_params,
    production_tag,
    unknown_keys,
)
from tests.conftest import REPO, copy_project, project_env

STAGES = dvc_stages(REPO / "dvc.yaml")
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
# One plausible typo per stage, and the key it should have been.
TYPOS = {
    "prepare": ("test_sise", "test_size"),
    "featurize": ("min_dff", "min_df"),
    "tune": ("n_trails", "n_trials"),
    "train_transformer": ("epoch", "epochs"),
    "evaluate": ("min_gian", "min_gain"),
    "gate": ("min_f", "min_f1"),
    "drift": ("alpah", "alpha"),
}


def test_every_section_defines_exactly_the_keys_params_yaml_has() -> None:
    assert set(SECTIONS) == set(PARAMS) - {"dataset", "datasets"} == set(STAGES)
    for section, keys in SECTIONS.items():
        assert sorted(keys) == sorted(PARAMS[section]), section


def test_an_unknown_key_is_named_with_the_nearest_valid_one(tmp_path: Path) -> None:
    assert unknown_keys("featurize", {"min_dff": 2, "min_df": 1}) == [
        "featurize.min_dff: did you mean min_df?"
    ]
    far = unknown_keys("evaluate", {"colour": "red"})[0]
    assert far.startswith("evaluate.colour: not a key of evaluate (bootstrap_resamples")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS | {"drift": PARAMS["drift"] | {"alpah": 0.1}}))
    with pytest.raises(ParamsError, match=r"drift\.alpah: did you mean alpha\?"):
        load_params("drift", params)
    assert load_params("prepare", params) == PARAMS["prepare"]  # other sections still load


def test_each_dataset_gets_its_own_registered_and_bentoml_model(tmp_path: Path) -> None:
    """Two datasets never share a name, and so never each other's production."""
    params = tmp_path / "params.yaml"
    names = {}
    for dataset in ("flipkart", "clothing"):
        params.write_text(yaml.safe_dump(PARAMS | {"dataset": dataset}))
        gate = load_params("gate", params)
        names[dataset] = (gate["registered_model"], gate["bento_model"], production_tag(params))
    assert names["flipkart"] == (
        "sentiment-classifier-flipkart",
        "sentiment-flipkart",
        "sentiment-flipkart:latest",
    )
    assert names["clothing"] == (
        "sentiment-classifier-clothing",
        "sentiment-clothing",
        "sentiment-clothing:latest",
    )
    assert production_tag() == "sentiment-flipkart:latest"  # the repository's, from its params


def test_a_dataset_name_that_makes_no_model_name_is_one_line(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS | {"dataset": "My Shop"}))
    with pytest.raises(ParamsError) as raised:
        load_params("gate", params)
    assert str(raised.value) == (
        f"{params}: gate.registered_model gives 'sentiment-classifier-My Shop' for dataset"
        " 'My Shop', not a model name (lowercase letters, digits, '.', '_' and '-')"
    )


def add_placeholders(root: Path) -> None:
    """Placeholders for the data deps and outputs a copy lacks: each stage gets as far as
    reading its params, which is where a typo must stop it; the raw files the ``.dvc`` files
    in ``data/raw`` track too."""
    for dvc_file in root.glob("data/raw/**/*.dvc"):
        for out in yaml.safe_load(dvc_file.read_text())["outs"]:
            path = dvc_file.parent / out["path"]
            if not path.exists():
                path.write_text("placeholder\n")
    for spec in STAGES.values():
        entries = [*spec["deps"], *spec.get("outs", []), *spec.get("plots", [])]
        for entry in entries:
            dep = entry if isinstance(entry, str) else next(iter(entry))
            path = root / dep
            if path.exists():
                continue
            if Path(dep).suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("placeholder\n")
            else:
                path.mkdir(parents=True)
                (path / "placeholder").write_text("placeholder\n")


@pytest.fixture(scope="module")
def typo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The copy with its placeholders committed to DVC's cache and lock, so that
    ``dvc exp run`` can check the stages before each one out as it starts."""
    root = copy_project(tmp_path_factory.mktemp("typos"))
    add_placeholders(root)
    env = project_env(root)
    for command in (
        ["dvc", "commit", "--force", "--quiet"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "placeholders"],
    ):
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    return root


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.slow
def test_a_stage_run_as_a_command_refuses_a_misspelt_key(typo_project: Path, stage: str) -> None:
    typo, meant = TYPOS[stage]
    params = PARAMS | {stage: PARAMS[stage] | {typo: 1}}
    work = typo_project.parent / f"command-{stage}"
    subprocess.run(["cp", "-a", str(typo_project), str(work)], check=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    module = STAGES[stage]["cmd"].split("python -m ", 1)[1]
    proc = subprocess.run(
        [sys.executable, "-m", *module.split()],
        cwd=work,
        env=project_env(work),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{stage}.{typo}: did you mean {meant}?" in lines[0], lines


def failed_exp_run(project: Path, override: str, stage: str) -> subprocess.CompletedProcess:
    """``dvc exp run -S override stage``, which must fail; params.yaml is put back, and the
    ``cache: false`` outputs DVC deleted before the failed stage (no copy in the cache to
    check out; later stages depend on them)."""
    proc = subprocess.run(
        ["dvc", "exp", "run", "--single-item", "-S", override, stage],
        cwd=project,
        env=project_env(project),
        capture_output=True,
        text=True,
        timeout=300,
    )
    subprocess.run(["git", "checkout", "--", "."], cwd=project, check=True)
    assert proc.returncode != 0, proc.stdout
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGES))
def test_dvc_exp_run_set_param_with_a_typo_fails_the_stage(typo_project: Path, stage: str) -> None:
    """``-S key=value`` on a key params.yaml lacks is refused by DVC itself; ``-S +key=value``
    adds the key, and then the stage refuses it."""
    typo, meant = TYPOS[stage]
    refused = failed_exp_run(typo_project, f"{stage}.{typo}=1", stage)
    assert f"Could not override '{stage}.{typo}'" in refused.stderr
    added = failed_exp_run(typo_project, f"+{stage}.{typo}=1", stage)
    assert f"{stage}.{typo}: did you mean {meant}?" in added.stdout + added.stderr


@pytest.mark.slow
def test_a_misspelt_dataset_key_fails_prepare_through_dvc_exp_run(typo_project: Path) -> None:
    """The dataset's declaration is checked as a section is: ``-S +datasets.flipkart.txt``
    stops prepare with the nearest valid key."""
    proc = failed_exp_run(typo_project, "+datasets.flipkart.txt=x", "prepare")
    assert "datasets.flipkart.txt: did you mean text?" in proc.stdout + proc.stderr
