"""Log a model directory (any flavor) as an MLflow pyfunc model with pinned requirements.

MLflow loads ``sentiment/models/pyfunc_model.py`` ("model from code") and the ``sentiment``
package beside
the directory, so a registered model scores through the same predictor code as the stages.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import mlflow

from sentiment.paths import REPO_ROOT

# Packages a logged model needs at load time, pinned from requirements/main.lock.
MODEL_PACKAGES = (
    "mlflow",
    "torch",
    "transformers",
    "scikit-learn",
    "skops",
    "scipy",
    "numpy",
    "pandas",
    "pyarrow",
    "nltk",
    "emoji",
    "ftfy",
    "pyyaml",
)


def pinned_requirements(names: tuple[str, ...] = MODEL_PACKAGES) -> list[str]:
    """``name==version`` lines from requirements/main.lock (explicit: no slow inference)."""
    pins = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "requirements" / "main.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    return [f"{name}=={pins[name]}" for name in names if name in pins]


def log_model(model_dir: str | Path, name: str = "model") -> Any:
    """Log a model directory (either flavor) as an MLflow pyfunc model; return its info."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema([ColSpec("long", "label"), ColSpec("double", "score")]),
    )
    with warnings.catch_warnings():
        # MLflow asks for an input example to infer a signature; this one is explicit.
        warnings.filterwarnings("ignore", message=r".*An input example was not provided")
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(REPO_ROOT / "sentiment" / "models" / "pyfunc_model.py"),
            artifacts={"model_dir": str(model_dir)},
            code_paths=[str(REPO_ROOT / "sentiment")],
            pip_requirements=pinned_requirements(),
            signature=signature,
        )
