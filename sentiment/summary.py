"""Print what `make run` produced: stages, headline metrics, where outputs and MLflow live."""

from __future__ import annotations

import yaml

from sentiment import paths
from sentiment.cli import entry_point, no_options
from sentiment.headlines import HEADLINES, stage_line
from sentiment.paths import REPO_ROOT
from sentiment.tracking import redact_uri, tracking_uri


def main() -> None:
    no_options(__doc__)
    lock_file = REPO_ROOT / "dvc.lock"
    stages = list(yaml.safe_load(lock_file.read_text())["stages"]) if lock_file.is_file() else []
    print("\n== Pipeline summary ==")
    print("stages:", " -> ".join(stages))
    for stage in HEADLINES:
        if line := stage_line(stage):
            print(f"  {line}")
    print(
        f"outputs: {paths.RAW.parent}/, {paths.CLASSICAL.parent}/, {paths.REPORTS}/ "
        "(dvc.lock lists all)"
    )
    print(
        f"MLflow: {redact_uri(tracking_uri())}\n  open it with: .venv/bin/mlflow ui "
        f"--backend-store-uri {redact_uri(tracking_uri())}"
    )


if __name__ == "__main__":
    entry_point(main)
