"""The registry commands: act on the gate's decision, undo it, hand production out.

    python -m sentiment.registry promote    # act on the decision (make run / make promote)
    python -m sentiment.registry rollback   # production <-> previous-production, re-exported
    python -m sentiment.registry export     # production model -> BentoML store (image builds)
    python -m sentiment.registry download --out DIR   # production model directory

``python -m stages.gate <command>`` runs the same commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from sentiment import paths
from sentiment.cli import entry_point, fail
from sentiment.models.files import UntrustedModelError
from sentiment.params import load_params
from sentiment.registry.promotion import act, download_production, export_production, rollback
from sentiment.registry.store import UndoError, registry_error

COMMANDS = ("promote", "rollback", "export", "download")


def run_command(command: str, params: dict[str, Any], out: Path) -> str:
    """Run one command; return the line that reports what it did."""
    if command == "download":
        return f"download: {download_production(params, out)}"
    if command == "promote":
        return f"promote: {act(params)}"
    if command == "rollback":
        return f"rollback: {rollback(params)}"
    return f"export: {export_production(params)}"


def run(command: str, out: Path = paths.PRODUCTION_DIR) -> None:
    """Run ``command`` with the gate's params; registry failures end as one line."""
    params = load_params("gate")
    try:
        print(run_command(command, params, out))
    except MlflowException as err:
        fail(registry_error(command, err))
    except (UntrustedModelError, FileNotFoundError, UndoError) as err:
        fail(f"{command}: {err}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Registry commands: act, undo, hand out.")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--out", type=Path, default=paths.PRODUCTION_DIR, help="download")
    args = parser.parse_args()
    run(args.command, args.out)


if __name__ == "__main__":
    entry_point(main)
