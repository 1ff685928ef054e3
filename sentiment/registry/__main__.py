"""The registry commands: act on the gate's decision, undo it, hand production out.

python -m sentiment.registry promote    # act on the decision (make run / make promote)
python -m sentiment.registry rollback   # production <-> previous-production, re-exported
python -m sentiment.registry export     # production model -> BentoML store (image builds)
python -m sentiment.registry download --out DIR   # production model directory
python -m sentiment.registry deploy --version N --reason "..." [--force]
                                        # a chosen version -> production, checked first
python -m sentiment.registry mirror --every S   # a serving host's store keeps production
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from threading import Event
from typing import Any

from mlflow.exceptions import MlflowException

from sentiment import paths
from sentiment.cli import entry_point, fail
from sentiment.models.trust import UntrustedModelError
from sentiment.params import load_params
from sentiment.registry.chosen_version import deploy
from sentiment.registry.mirror import mirror
from sentiment.registry.promotion import act, download_production, export_production, rollback
from sentiment.registry.store import StepFailed, registry_error, step_error

COMMANDS = ("promote", "rollback", "export", "download", "deploy", "mirror")


def run_command(command: str, params: dict[str, Any], args: argparse.Namespace) -> str:
    """Run one command; return the line that reports what it did."""
    if command == "download":
        return f"download: {download_production(params, args.out)}"
    if command == "deploy":
        return f"deploy: {deploy(params, args.version, args.reason, args.force)}"
    if command == "mirror":  # until stopped
        mirror(params, args.every, lambda line: print(f"mirror: {line}", flush=True), Event())
        return "mirror: stopped"
    if command == "promote":
        return f"promote: {act(params)}"
    if command == "rollback":
        return f"rollback: {rollback(params)}"
    return f"export: {export_production(params)}"


def run(args: argparse.Namespace) -> None:
    """Run ``args.command`` with the gate's params; registry failures end as one line."""
    command, params = args.command, load_params("gate")
    try:
        print(run_command(command, params, args))
    except StepFailed as err:
        fail(step_error(command, err))
    except MlflowException as err:  # before any step: nothing was changed
        fail(f"{registry_error(command, err)}; nothing changed")
    except (UntrustedModelError, FileNotFoundError, ValueError) as err:
        fail(f"{command}: {err}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Registry commands: act, undo, hand out.")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--out", type=Path, default=paths.PRODUCTION_DIR, help="download")
    parser.add_argument("--version", type=int, help="deploy: the registry version")
    parser.add_argument("--reason", help="deploy: why (recorded on the version)")
    parser.add_argument("--force", action="store_true", help="deploy past failing rules")
    parser.add_argument("--every", type=float, default=30.0, help="mirror: seconds between looks")
    args = parser.parse_args()
    if args.command == "mirror":  # a registry not answering costs one look, not minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if args.command == "deploy" and (args.version is None or not args.reason):
        parser.error("deploy needs --version N and --reason TEXT")
    run(args)


if __name__ == "__main__":
    entry_point(main)
