"""Helpers shared by the stages: repository paths, params, atomic writes, split I/O."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

if TYPE_CHECKING:  # pandas is imported where it is used: the model service has none
    import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = "params.yaml"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry
LABEL_NAMES = {
    "binary": ["negative", "positive"],
    "ternary": ["negative", "neutral", "positive"],
}


class ParamsError(ValueError):
    """params.yaml lacks what a stage needs."""


class Params(dict):
    """One params.yaml section; a missing key is named with its file and section."""

    def __init__(self, values: dict[str, Any], where: str) -> None:
        super().__init__(values)
        self.where = where

    def __missing__(self, key: str) -> Any:
        raise ParamsError(f"{self.where}: no '{key}' (see the README's params.yaml)")


def load_params(section: str, path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Return one section of params.yaml: a stage reads only the keys it declares."""
    with open(path, encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params.get(section), dict):
        raise ParamsError(f"{path}: no '{section}:' section")
    return Params(params[section], f"{path}: {section}")


def fail(message: str) -> NoReturn:
    """Exit 1 with ``message`` as one line on stderr.

    Called while handling an error, ``SENTIMENT_DEBUG=1`` re-raises that error instead, with
    its traceback.
    """
    if os.environ.get("SENTIMENT_DEBUG") and sys.exc_info()[1] is not None:
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
    command = Path(sys.argv[0]).stem
    try:
        main()
    except Exception as err:  # every failure becomes one line (or, asked for, a traceback)
        fail(f"{command}: {describe(err)}")


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


def require_binary(labels: Any, stage: str) -> None:
    """Refuse clearly when a stage that only handles two classes gets more."""
    classes = sorted(set(int(x) for x in labels))
    if not set(classes) <= {0, 1}:
        raise ValueError(
            f"{stage} supports the binary label scheme only; got classes {classes} "
            "(set prepare.label_scheme: binary)"
        )


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it into place only on success.

    Works for files and directories: a failure leaves any previous ``target`` intact
    and no partial output behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staged = tmp / target.name
    try:
        yield staged
        if target.is_dir() and not target.is_symlink():
            old = tmp / "old"
            target.rename(old)
        os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically, pretty-printed with sorted keys (stable diffs)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")


def write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    """Write a DataFrame to Parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def deterministic_zip(
    data: bytes, rename: dict[str, str] | None = None, replace: dict[str, bytes] | None = None
) -> bytes:
    """The same zip archive with fixed timestamps and permissions and sorted entries (names
    mapped through ``rename``, contents swapped for those in ``replace``), so equal contents
    give equal bytes (and equal DVC md5s)."""
    rename, replace = rename or {}, replace or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in sorted(src.infolist(), key=lambda i: rename.get(i.filename, i.filename)):
            fixed = zipfile.ZipInfo(rename.get(info.filename, info.filename), ZIP_EPOCH)
            fixed.compress_type = info.compress_type
            fixed.external_attr = 0o644 << 16
            body = replace[info.filename] if info.filename in replace else src.read(info.filename)
            dst.writestr(fixed, body)
    return out.getvalue()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_split(path: str | Path, target: str = "label") -> tuple[list[str], list[int]]:
    """Read a prepared split as plain Python lists of texts and integers of ``target``
    (the ``label`` column, or another integer column such as ``rating``)."""
    import pandas as pd

    df = pd.read_parquet(path, columns=["text", target])
    return df["text"].tolist(), df[target].astype(int).tolist()
