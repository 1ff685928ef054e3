"""The pull-request report, in a temporary git + DVC repository with two commits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sentiment.report import build_report
from tests.conftest import REPO, project_env, sh

DVC_YAML = {
    "stages": {
        "evaluate": {
            "cmd": "true",
            "params": ["evaluate"],
            "metrics": [{"reports/evaluate/metrics.json": {"cache": False}}],
        }
    }
}


def metrics(classical: float, champion: str) -> dict:
    score = {"macro_f1": classical, "macro_f1_ci": [classical - 0.02, classical + 0.02]}
    return {
        "classical": {"test": score},
        "transformer": {"test": {"macro_f1": 0.87, "macro_f1_ci": [0.85, 0.89]}},
        "ensemble": {"test": {"macro_f1": 0.86, "macro_f1_ci": [0.84, 0.88]}},
        "champion": {"name": champion, "test": {"macro_f1": 0.87}},
    }


def write(root: Path, path: str, data: dict) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(json.dumps(data) if path.endswith(".json") else yaml.safe_dump(data))


def test_report_shows_param_change_metric_delta_gate_and_plots(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "dvc", "init", "-q")
    write(root, "dvc.yaml", DVC_YAML)
    write(root, "params.yaml", {"evaluate": {"seed": 1, "bootstrap_resamples": 1000}})
    write(root, "reports/evaluate/metrics.json", metrics(0.84, "transformer"))
    write(
        root,
        "dvc.lock",
        {
            "schema": "2.0",
            "stages": {
                "prepare": {"cmd": "x", "deps": [{"path": "data/raw/reviews.csv", "md5": "aaa"}]}
            },
        },
    )
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")

    write(root, "params.yaml", {"evaluate": {"seed": 2, "bootstrap_resamples": 1000}})
    write(root, "reports/evaluate/metrics.json", metrics(0.80, "transformer"))
    write(
        root,
        "reports/gate/decision.json",
        {
            "promote": False,
            "rules": {
                "min_delta": {"candidate": -0.07, "threshold": 0.005, "passed": False},
                "min_f1": {"candidate": 0.80, "threshold": 0.8, "passed": True},
            },
            "production": {"version": "3"},
            "comparison": {"delta": -0.07, "ci_low": -0.09, "confidence": 0.95},
        },
    )
    write(
        root,
        "reports/drift/report.json",
        {
            "test": {"status": "no drift", "tests": {}},
            "ood_imdb": {"status": "drift", "tests": {"mmd": {"drift": True}}},
        },
    )
    (root / "reports/evaluate/plots/png").mkdir(parents=True)
    (root / "reports/evaluate/plots/png/confusion_transformer.png").write_bytes(b"\x89PNG")
    (root / "reports/evaluate/plots/png/roc.png").write_bytes(b"\x89PNG")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "head")

    report = build_report(root, "HEAD~1")
    assert "| `evaluate.seed` | 1 | 2 |" in report
    assert "| classical | 0.8400 [0.820, 0.860] | 0.8000 [0.780, 0.820] | ▼ -0.0400 |" in report
    assert "| transformer | 0.8700 [0.850, 0.890] | 0.8700 [0.850, 0.890] | = +0.0000 |" in report
    assert (
        "**Would keep production** (production version 3). Failing rules: `min_delta` (-0.07 "
        "vs threshold 0.005). Paired macro-F1 gain -0.0700, one-sided 95% lower bound -0.0900."
    ) in report
    assert "| ood_imdb | drift | mmd |" in report
    assert (
        "![confusion_transformer](reports/evaluate/plots/png/confusion_transformer.png)" in report
    )
    assert "![roc](reports/evaluate/plots/png/roc.png)" in report
    assert "| data/raw/reviews.csv | `aaa` | `aaa` |" in report
    assert "Model card" not in report  # the gate wrote none
    (root / "reports/gate/model_card.md").write_text("---\n")
    link = "Model card of the champion: [`reports/gate/model_card.md`](reports/gate/model_card.md)"
    assert link in build_report(root, "HEAD~1")

    unchanged = build_report(root, "HEAD")  # a code-only pull request: no param changed
    assert "No params changed." in unchanged


def commit(root: Path, files: dict[str, dict | str], message: str) -> None:
    """Write ``files`` (a dict as JSON/YAML, a str as text) and commit everything."""
    for path, data in files.items():
        if isinstance(data, str):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(data)
        else:
            write(root, path, data)
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


BASE_FILES = {
    "dvc.yaml": DVC_YAML,
    "params.yaml": {"evaluate": {"seed": 1}},
    "src/code.py": "VERSION = 1\n",
    "reports/evaluate/metrics.json": metrics(0.84, "transformer"),
}


@pytest.mark.parametrize(
    ("case", "base", "head", "expected"),
    [
        (
            "code-only change, metrics unchanged",
            BASE_FILES,
            {"src/code.py": "VERSION = 2\n"},
            ["No params changed.", "| classical | 0.8400 [0.820, 0.860] | 0.8400 [0.820, "],
        ),
        (
            "first run: no metrics at the base",
            {k: v for k, v in BASE_FILES.items() if k != "reports/evaluate/metrics.json"},
            {"reports/evaluate/metrics.json": metrics(0.84, "transformer")},
            ["| champion (n/a → transformer) | n/a | 0.8700 [0.850, 0.890] | new |"],
        ),
        (
            "the base's metrics file had other keys",
            BASE_FILES
            | {"reports/evaluate/metrics.json": {"classical": 0.8, "champion": "ensemble"}},
            {"reports/evaluate/metrics.json": metrics(0.84, "transformer")},
            ["| classical | n/a | 0.8400 [0.820, 0.860] | new |"],
        ),
    ],
)
@pytest.mark.slow
def test_the_cml_command_reports_every_pull_request(
    tmp_path: Path, case: str, base: dict, head: dict, expected: list[str]
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "dvc", "init", "-q")
    commit(root, base, "base")
    commit(root, head, "head")
    # The command the CML workflow runs, at the repository's root.
    command = [sys.executable, "-m", "sentiment.report", "--base", "HEAD~1", "--out", "report.md"]
    env = project_env(root) | {"PYTHONPATH": str(REPO)}
    run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = (root / "report.md").read_text()
    assert report.startswith("## Model report: `HEAD~1` → this branch"), case
    for line in expected:
        assert line in report, f"{case}: {line!r} not in\n{report}"
