"""params.yaml, read and checked: a stage gets its section only if every key in it is one
the section defines, so a misspelt key fails instead of running with the old value."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from sentiment.paths import PARAMS_FILE, REPO_ROOT

# The gate's keys that name models, each with ``{dataset}`` filled from ``dataset:``, so two
# datasets never share a registered model or a BentoML model (nor each other's production).
MODEL_NAME_KEYS = ("registered_model", "bento_model")
# A name both MLflow's registry and BentoML's store take (BentoML's rule: lowercase).
MODEL_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")

# The keys of each section (docs/configuration.md says what each one does).
SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare": ("test_size", "seed", "val_size", "max_quarantine_share"),
    "featurize": (
        "emoji",
        "stem",
        "negation",
        "stop_words",
        "word_ngram_max",
        "char_ngrams",
        "char_ngram_range",
        "min_df",
        "max_df",
        "max_features",
        "sublinear_tf",
    ),
    "tune": ("families", "target", "cv_folds", "n_trials", "timeout", "n_jobs", "seed", "storage"),
    "train_transformer": (
        "base_model",
        "target",
        "epochs",
        "patience",
        "lr",
        "batch_size",
        "max_length",
        "warmup_ratio",
        "weight_decay",
        "max_grad_norm",
        "max_train_samples",
        "quantize",
        "threads",
        "seed",
    ),
    "evaluate": ("bootstrap_resamples", "min_gain", "seed"),
    "gate": (
        "registered_model",
        "bento_model",
        "min_delta",
        "min_f1",
        "max_size_mb",
        "behaviour_tolerance",
        "confidence",
        "bootstrap_resamples",
        "seed",
    ),
    "drift": (
        "reference_size",
        "holdout_rows",
        "svd_components",
        "window_size",
        "min_window",
        "permutations",
        "alpha",
        "retrain_after",
        "seed",
    ),
}


class ParamsError(ValueError):
    """params.yaml lacks what a stage needs, or holds a key no stage reads."""


class Params(dict):
    """One params.yaml section; a missing key is named with its file and section."""

    def __init__(self, values: dict[str, Any], where: str) -> None:
        super().__init__(values)
        self.where = where

    def __missing__(self, key: str) -> Any:
        raise ParamsError(f"{self.where}: no '{key}' (docs/configuration.md lists the keys)")


def unknown_keys(section: str, values: dict[str, Any]) -> list[str]:
    """One phrase per key of ``values`` that ``section`` does not define, with the nearest
    valid key when one is close: ``featurize.min_dff: did you mean min_df?``."""
    known = SECTIONS[section]
    problems = []
    for key in sorted(set(values) - set(known), key=str):
        near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = (
            f"did you mean {near[0]}?" if near else f"not a key of {section} ({', '.join(known)})"
        )
        problems.append(f"{section}.{key}: {hint}")
    return problems


def read_params_file(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params file, parsed (an empty file is no params)."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def dvc_stages(dvc_file: str | Path = "dvc.yaml") -> dict[str, Any]:
    """dvc.yaml's stages with its ``${key}`` templates filled from the params.yaml beside it,
    as DVC fills them (``data/raw/${dataset}`` -> ``data/raw/flipkart``)."""
    dvc_file = Path(dvc_file)
    text = dvc_file.read_text()

    def value(match: re.Match) -> str:
        found: Any = read_params_file(dvc_file.parent / PARAMS_FILE.name)
        for part in match[1].split("."):
            found = found[part]
        return str(found)

    text = re.sub(r"\$\{\s*([\w.]+)\s*\}", value, text)
    return yaml.safe_load(text)["stages"]


def model_names(gate: dict[str, Any], dataset: Any, where: str) -> dict[str, Any]:
    """The gate's section with ``{dataset}`` in its model names filled in, each name checked."""
    filled = dict(gate)
    for key in MODEL_NAME_KEYS:
        if key not in gate:
            continue
        name = str(gate[key]).replace("{dataset}", str(dataset))
        if not MODEL_NAME.fullmatch(name):
            raise ParamsError(
                f"{where}: gate.{key} gives {name!r} for dataset {dataset!r}, not a model name"
                " (lowercase letters, digits, '.', '_' and '-')"
            )
        filled[key] = name
    return filled


def load_params(section: str, path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Return one section of params.yaml, refusing keys the section does not define; the
    gate's model names come with the declared dataset filled in."""
    params = read_params_file(path)
    if not isinstance(params.get(section), dict):
        raise ParamsError(f"{path}: no '{section}:' section")
    if section in SECTIONS and (problems := unknown_keys(section, params[section])):
        raise ParamsError(f"{path}: {'; '.join(problems)}")
    values = params[section]
    if section == "gate":
        values = model_names(values, params.get("dataset"), str(path))
    return Params(values, f"{path}: {section}")


def production_tag(path: str | Path = REPO_ROOT / PARAMS_FILE) -> str:
    """The BentoML store tag of the declared dataset's production model (what the gate
    promotes last): ``<gate.bento_model>:latest``, from the params.yaml beside the library."""
    return f"{load_params('gate', path)['bento_model']}:latest"
