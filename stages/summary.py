"""Print what `make run` produced: stages, headline metrics, where outputs and MLflow live."""

from __future__ import annotations

import json

import yaml
from dvc.api import metrics_show

from stages.common import REPO_ROOT
from stages.tracking import tracking_uri

HEADLINES = (
    "rows",
    "quarantined.total",
    "leakage.test_texts_in_train",
    "best.cv_macro_f1",
    "champion.name",
    "champion.test.macro_f1",
    "promoted",
    "drift_detected",
)


def headline(metrics: dict, prefix: str = "") -> dict:
    """Flatten a metrics file, keeping only the keys a reader looks for first."""
    found = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if name in HEADLINES or key in HEADLINES:
            found[name] = value
        elif isinstance(value, dict):
            found |= headline(value, f"{name}.")
    return found


def main() -> None:
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    print("\n== Pipeline summary ==")
    print("stages:", ", ".join(lock["stages"]))
    for key, value in headline(metrics_show(repo=str(REPO_ROOT))).items():
        print(f"  {key}: {json.dumps(value)}")
    print(f"outputs: {REPO_ROOT / 'data'} and {REPO_ROOT / 'models'} (dvc.lock lists every one)")
    print(
        f"MLflow: {tracking_uri()}  (open with: .venv/bin/mlflow ui --backend-store-uri "
        f"{tracking_uri()})"
    )


if __name__ == "__main__":
    main()
