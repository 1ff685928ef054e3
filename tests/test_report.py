"""The pull-request report, in a temporary git + DVC repository with two commits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sentiment.plot_diff import SIDES, collect
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


# A stage that writes the plots dvc.yaml declares from one param, as evaluate and
# train_transformer do: ROC and confusion folders in DVC's cache, the curve in git.
MAKE_PLOTS = """
import json, pathlib, yaml
shift = yaml.safe_load(open("params.yaml"))["evaluate"]["shift"]
plots = pathlib.Path("reports/evaluate/plots")
for name in ("roc", "confusion"):
    (plots / name).mkdir(parents=True, exist_ok=True)
roc = [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.5, "tpr": (5 + shift) / 10}, {"fpr": 1.0, "tpr": 1.0}]
(plots / "roc" / "classical.json").write_text(json.dumps(roc))
cells = [("negative", "negative")] * (3 + shift) + [("negative", "positive")] * (2 - shift)
cells += [("positive", "positive")] * 5
rows = [{"actual": a, "predicted": p} for a, p in cells]
(plots / "confusion" / "ensemble.json").write_text(json.dumps(rows))
curve = [{"epoch": e, "train_loss": 1 / e, "val_macro_f1": (7 + shift) / 10} for e in (1, 2)]
pathlib.Path("reports/train_transformer").mkdir(parents=True, exist_ok=True)
pathlib.Path("reports/train_transformer/curve.json").write_text(json.dumps(curve))
"""


@pytest.mark.slow
def test_the_report_draws_the_base_and_this_branch_on_the_same_axes(tmp_path: Path) -> None:
    """A branch that changed a param: each declared plot read at the base (DVC-cached folders
    through the cache) and in the workspace, and drawn once for both."""
    root = tmp_path / "repo"
    root.mkdir()
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "dvc", "init", "-q")
    declared = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]  # the project's own
    stage = {
        "cmd": f"{sys.executable} make_plots.py",
        "deps": ["make_plots.py"],
        "params": ["evaluate.shift"],
        "outs": ["reports/evaluate/plots/roc", "reports/evaluate/plots/confusion"],
        "plots": [{"reports/train_transformer/curve.json": {"cache": False}}],
    }
    (root / "make_plots.py").write_text(MAKE_PLOTS)
    write(root, "dvc.yaml", {"stages": {"evaluate": stage}, "plots": declared})
    write(root, "params.yaml", {"evaluate": {"shift": 0}})
    write(root, "reports/evaluate/metrics.json", metrics(0.84, "ensemble"))
    sh(root, "dvc", "repro", "-q")
    commit(root, {}, "base")
    write(root, "params.yaml", {"evaluate": {"shift": 1}})  # the branch's change
    sh(root, "dvc", "repro", "-q")

    diffs = {d.path: d for d in collect(root, "HEAD")}
    roc = diffs["reports/evaluate/plots/roc"].data
    assert roc["base"]["classical"][1]["tpr"] == 0.5
    assert roc["this branch"]["classical"][1]["tpr"] == 0.6
    confusion = diffs["reports/evaluate/plots/confusion"].data
    assert len(confusion["base"]["ensemble"]) == len(confusion["this branch"]["ensemble"]) == 10
    assert confusion["base"] != confusion["this branch"]
    curve = diffs["reports/train_transformer/curve.json"].data
    assert [r["val_macro_f1"] for r in curve["base"]["curve"]] == [0.7, 0.7]
    assert [r["val_macro_f1"] for r in curve["this branch"]["curve"]] == [0.8, 0.8]
    assert diffs["reports/evaluate/plots/pr"].missing == dict.fromkeys(SIDES, "absent")

    report = build_report(root, "HEAD", plot_dir=root / "report-plots")
    assert "### Plots: `HEAD` dashed, this branch solid" in report
    drawn = sorted(p.name for p in (root / "report-plots").iterdir())
    assert drawn == [
        "reports_evaluate_plots_confusion.png",
        "reports_evaluate_plots_roc.png",
        "reports_train_transformer_curve.png",
    ]
    for name in drawn:
        assert (root / "report-plots" / name).read_bytes().startswith(b"\x89PNG")
        assert f"![{name[:-4]}](report-plots/{name})" in report
