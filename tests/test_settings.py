"""Every environment variable is declared once (``sentiment.settings``) and read through it;
a bad value is refused in one line naming the variable; the docs' table is the declared one."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from sentiment.settings import BY_NAME, SETTINGS, SettingError, check, markdown_table, setting
from tests.conftest import REPO

CODE = [*REPO.glob("sentiment/**/*.py"), *REPO.glob("stages/*.py"), REPO / "service.py"]
READ = re.compile(r"os\.getenv\(|os\.environ\.get\(|os\.environ\[[^\]]+\](?!\s*=)")
NAMED = re.compile(r"""setting\(\s*["']([A-Z0-9_]+)["']""")


def test_no_module_reads_the_environment_but_settings() -> None:
    readers = [
        path.relative_to(REPO).as_posix()
        for path in CODE
        if path.name != "settings.py" and READ.search(path.read_text())
    ]
    assert not readers, f"read os.environ directly instead of sentiment.settings: {readers}"


def test_every_setting_read_is_declared_and_every_declared_one_is_read() -> None:
    sources = [*CODE, REPO / "tests" / "conftest.py", *REPO.glob("tests/test_*.py")]
    read = {name for path in sources for name in NAMED.findall(path.read_text())}
    assert read - set(BY_NAME) == set()
    assert set(BY_NAME) - read == set(), "declared, never read"


def test_the_docs_carry_the_declared_table() -> None:
    docs = (REPO / "docs" / "configuration.md").read_text()
    assert markdown_table() in docs, "paste `python -m sentiment.settings` into the docs"


@pytest.mark.parametrize(
    ("name", "value", "refusal"),
    [
        ("SENTIMENT_MAX_BATCH", "many", "SENTIMENT_MAX_BATCH: 'many' is not an integer"),
        ("SENTIMENT_MAX_BATCH", "0", "SENTIMENT_MAX_BATCH: '0' is below its least value, 1"),
        ("SENTIMENT_FOLLOW_INTERVAL_S", "soon", "'soon' is not a number"),
        ("SENTIMENT_FOLLOW_PRODUCTION", "maybe", "'maybe' is not 1 or 0"),
        ("SENTIMENT_API_TOKEN_SCOPE", "some", "'some' is not one of predict, all"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(monkeypatch, name, value, refusal) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=re.escape(refusal)):
        setting(name)
    with pytest.raises(SettingError, match=name):
        check(BY_NAME[name].group)


def test_values_are_typed_and_defaults_apply(monkeypatch) -> None:
    for declared in SETTINGS:
        monkeypatch.delenv(declared.name, raising=False)
    assert setting("SENTIMENT_MAX_BATCH") == 256 and setting("SENTIMENT_MODEL_BATCH") == 256
    assert setting("SENTIMENT_FOLLOW_PRODUCTION") is False
    assert setting("SENTIMENT_FOLLOW_INTERVAL_S") == 5.0
    monkeypatch.setenv("SENTIMENT_FOLLOW_PRODUCTION", "1")
    monkeypatch.setenv("SENTIMENT_INFERENCE_BACKEND", "ONNX")
    assert setting("SENTIMENT_FOLLOW_PRODUCTION") is True
    assert setting("SENTIMENT_INFERENCE_BACKEND") == "onnx"


@pytest.mark.slow
def test_the_service_refuses_a_bad_value_at_start_in_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "SENTIMENT_MODEL_BATCH": "-1"}
    done = subprocess.run(
        [sys.executable, "-c", "import service"], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "service: SENTIMENT_MODEL_BATCH: '-1' is below its least value, 1"
    )
