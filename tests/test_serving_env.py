"""The serving lock: the service runs on it alone, and it agrees with the full lock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from sentiment.models.transformer import save_transformer
from tests.conftest import REPO
from tests.test_gate import make_model
from tests.test_transformer import tiny_bert  # noqa: F401 (fixture)

SERVING_LOCK = REPO / "requirements/serving.lock"

# Run in a fresh interpreter: an import hook refuses every package whose distribution is not
# in the serving lock (as if it were not installed), then the service module is imported and
# both flavors score. Optional imports a library guards (try: import torch) fail as they
# would in the image; a needed one fails the run.
ONLY_THE_LOCK = """
import sys
from importlib import metadata
from pathlib import Path

allowed = set(sys.argv[1].split(","))
owners = metadata.packages_distributions()


def norm(name):
    return name.lower().replace("_", "-").replace(".", "-")


class OnlyTheLock:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        dists = owners.get(top)
        if dists and not any(norm(d) in allowed for d in dists):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, OnlyTheLock())
import service  # noqa: E402,F401
from sentiment.models.predictor import load_predictor  # noqa: E402

for model_dir in sys.argv[2:]:
    proba = load_predictor(Path(model_dir)).predict_proba(["great shuttle", "worst"])
    assert proba.shape == (2, 2), proba.shape
try:  # the hook works: pandas is installed here, not in the lock
    import pandas  # noqa: F401
except ModuleNotFoundError:
    print("pandas refused")
print("loaded:", ",".join(sorted({m.partition(".")[0] for m in sys.modules})))
"""


def pins(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return {norm(n): v for n, _, v in (line.partition("==") for line in lines if "==" in line)}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.slow
def test_the_service_imports_and_scores_with_the_serving_lock_alone(
    tiny_bert: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    onnx_dir = tmp_path / "transformer"
    save_transformer(
        AutoModelForSequenceClassification.from_pretrained(tiny_bert),
        AutoTokenizer.from_pretrained(tiny_bert),
        onnx_dir,
        {"threshold": 0.5, "max_length": 16, "n_classes": 2},
    )
    classical = make_model(tmp_path / "classical", 6)
    done = subprocess.run(
        [sys.executable, "-c", ONLY_THE_LOCK, ",".join(pins(SERVING_LOCK)), onnx_dir, classical],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "BENTOML_HOME": str(tmp_path / "bentoml")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pandas refused" in done.stdout
    loaded = set(done.stdout.split("loaded: ")[1].strip().split(","))
    assert not loaded & {"torch", "transformers", "dvc", "mlflow", "optuna", "pandas"}
    assert {"onnxruntime", "tokenizers", "sklearn", "bentoml"} <= loaded


def test_the_serving_lock_is_closed_and_agrees_with_the_full_lock() -> None:
    """Every requirement of every pinned package is pinned too (pip installs nothing else),
    and every pin has the full lock's version (one set of versions is tested)."""
    serving, full = pins(SERVING_LOCK), pins(REPO / "requirements/main.lock")
    assert {n: v for n, v in serving.items() if full.get(n) != v} == {}
    missing = set()
    for name in serving:
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            needed = req.marker is None or req.marker.evaluate({"extra": ""})
            if needed and norm(req.name) not in serving:
                missing.add(f"{name} -> {req.name}")
    assert not missing, sorted(missing)
    assert not {"torch", "dvc", "mlflow", "optuna", "transformers"} & set(serving)


def test_the_serving_group_is_what_the_lock_pins() -> None:
    group = tomllib.loads((REPO / "pyproject.toml").read_text())["dependency-groups"]["serving"]
    assert {norm(Requirement(r).name) for r in group} <= set(pins(SERVING_LOCK))


def test_the_bento_installs_the_serving_lock() -> None:
    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    assert bentofile["python"]["requirements_txt"] == SERVING_LOCK.relative_to(REPO).as_posix()
