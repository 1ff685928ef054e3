"""Commands that fail in one line: the entry point every stage and command runs through."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from sentiment.settings import setting


def fail(message: str) -> NoReturn:
    """Exit 1 with ``message`` as one line on stderr.

    Called while handling an error, ``SENTIMENT_DEBUG=1`` re-raises that error instead, with
    its traceback.
    """
    if setting("SENTIMENT_DEBUG") and sys.exc_info()[1] is not None:
        raise  # the error being handled by the caller, with its traceback
    raise SystemExit(" ".join(message.split()))


def entry_point(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` as a command: a failure ends as one line on stderr naming what
    is wrong, and exit status 1. ``--debug`` (or ``SENTIMENT_DEBUG=1``) shows the traceback.
    """
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
        os.environ["SENTIMENT_DEBUG"] = "1"
    quiet_logs()
    script = Path(sys.argv[0])
    command = script.parent.name if script.stem == "__main__" else script.stem
    try:
        main()
    except Exception as err:  # every failure becomes one line (or, asked for, a traceback)
        fail(f"{command}: {describe(err)}")


def no_options(doc: str | None) -> None:
    """Parse a command line that takes no options: ``--help`` shows the first paragraph of
    ``doc``, anything else is refused."""
    argparse.ArgumentParser(description=(doc or "").split("\n\n")[0]).parse_args()


def quiet_logs() -> None:
    """Logs a person can read: progress bars only on a terminal (the stages print one line
    per epoch or step instead), and no INFO lines from MLflow creating its SQLite tables."""
    if not sys.stderr.isatty():
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when first imported
        if "huggingface_hub" in sys.modules:
            sys.modules["huggingface_hub"].utils.disable_progress_bars()
        if "transformers" in sys.modules:  # its loading and saving bars
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


def describe(err: Exception) -> str:
    """An error as one readable phrase: expected kinds by their message, others by type."""
    if isinstance(err, FileNotFoundError) and err.filename:
        return f"{err.filename}: no such file"
    message = getattr(err, "message", None) or str(err)  # MlflowException keeps .message
    if isinstance(err, ValueError | OSError | RuntimeError) or type(err).__module__.startswith(
        ("mlflow", "bentoml")
    ):
        return message
    return f"{type(err).__name__}: {message} (--debug shows the traceback)"
