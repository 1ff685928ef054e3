"""Pull-request report: base revision vs workspace, as markdown (used by CML on PRs).

    python -m sentiment.report [--base main] [--out report.md]

Reads metrics at the base revision through DVC (``dvc.api.read``), params changes through
``Repo.params.diff`` and data md5s from each side's ``dvc.lock``; works offline. The plots
dvc.yaml declares are drawn base against this branch into ``report-plots/`` beside ``--out``
(``sentiment/plot_diff.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import dvc.api
import yaml
from dvc.repo import Repo

from sentiment import paths
from sentiment.cli import entry_point
from sentiment.fileio import atomic_path
from sentiment.headlines import CANDIDATES, compared_with, drift_statuses, failing_rules
from sentiment.plot_diff import write_plot_diffs

PLOTS = (
    *(
        (paths.EVAL_PLOTS["png"] / name).as_posix()
        for name in ("confusion_{champion}.png", "roc.png", "pr.png", "pr_negative.png")
    ),
    paths.TRAIN_CURVE_PNG.as_posix(),
)


def read_at(path: str, rev: str | None, root: Path) -> str | None:
    """A file's text at ``rev`` (None: the workspace), or None when it does not exist."""
    try:
        if rev is None:
            return (root / path).read_text()
        return dvc.api.read(path, repo=str(root), rev=rev)
    except Exception:  # missing at that revision: the report says "n/a"
        return None


def read_json(path: str, rev: str | None, root: Path) -> dict[str, Any]:
    text = read_at(path, rev, root)
    return json.loads(text) if text else {}


def data_md5s(rev: str | None, root: Path) -> dict[str, str]:
    """md5 of every raw data file the pipeline depends on, from that side's dvc.lock."""
    text = read_at("dvc.lock", rev, root)
    if not text:
        return {}
    deps = yaml.safe_load(text)["stages"].get("prepare", {}).get("deps", [])
    return {d["path"]: d["md5"] for d in deps if d["path"].startswith(f"{paths.RAW.as_posix()}/")}


def dig(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None where a level is missing or not a mapping: a base
    revision's files may have had other keys (or none)."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def f1_cell(metrics: dict, name: str) -> tuple[str, float | None]:
    f1, ci = dig(metrics, name, "test", "macro_f1"), dig(metrics, name, "test", "macro_f1_ci")
    if not isinstance(f1, int | float):
        return "n/a", None
    has_ci = isinstance(ci, list) and len(ci) == 2
    return f"{f1:.4f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if has_ci else ""), f1


def delta_cell(old: float | None, new: float | None) -> str:
    if old is None or new is None:
        return "new" if new is not None else "n/a"
    delta = new - old
    marker = "▲" if delta > 0 else "▼" if delta < 0 else "="
    return f"{marker} {delta:+.4f}"


def metrics_table(base: dict, head: dict) -> list[str]:
    lines = ["| model | base | head | Δ |", "|---|---|---|---|"]
    rows = [("champion", dig(head, "champion", "name"), dig(base, "champion", "name"))]
    rows += [(name, name, name) for name in CANDIDATES]
    for label, head_name, base_name in rows:
        old_text, old = f1_cell(base, base_name) if base_name else ("n/a", None)
        new_text, new = f1_cell(head, head_name) if head_name else ("n/a", None)
        if label == "champion":
            label = f"champion ({base_name or 'n/a'} → {head_name or 'n/a'})"
        lines.append(f"| {label} | {old_text} | {new_text} | {delta_cell(old, new)} |")
    return lines


def gate_lines(decision: dict) -> list[str]:
    """The gate's verdict on this branch: a pull request never promotes, so "would"."""
    if not decision:
        return ["No gate decision in the workspace."]
    versus = compared_with(decision)
    comparison = decision.get("comparison") or {}
    paired = (
        f" Paired macro-F1 gain {comparison['delta']:+.4f}, one-sided "
        f"{comparison['confidence']:.0%} lower bound {comparison['ci_low']:+.4f}."
        if comparison
        else ""
    )
    if decision.get("promote"):
        return [f"**Would promote** the champion (compared with {versus}).{paired}"]
    rules = decision.get("rules", {})
    failing = [
        f"`{name}` ({rules[name].get('candidate')} vs threshold {rules[name].get('threshold')})"
        for name in failing_rules(decision)
    ]
    return [
        f"**Would keep production** ({versus}). Failing rules: "
        + (", ".join(failing) or "none")
        + f".{paired}"
    ]


def card_lines(root: Path) -> list[str]:
    """A link to the champion's model card, where the gate wrote one."""
    card = paths.MODEL_CARD.as_posix()
    if not (root / card).is_file():
        return []
    return ["", f"Model card of the champion: [`{card}`]({card})"]


def drift_lines(report: dict) -> list[str]:
    if not report:
        return ["No drift report in the workspace."]
    lines = ["| current set | verdict | tests below alpha |", "|---|---|---|"]
    for name, status in drift_statuses(report).items():
        flagged = [t for t, r in report[name].get("tests", {}).items() if r.get("drift")]
        lines.append(f"| {name} | {status} | {', '.join(flagged) or '-'} |")
    return lines


def params_lines(root: Path, base: str) -> list[str]:
    with Repo(str(root)) as repo:
        diff = repo.params.diff(a_rev=base).get("diff", {})  # {} when nothing changed
    changed = [
        (f"{path}: {key}" if path != "params.yaml" else key, v.get("old"), v.get("new"))
        for path, keys in diff.items()
        for key, v in sorted(keys.items())
    ]
    if not changed:
        return ["No params changed."]
    return ["| param | base | head |", "|---|---|---|"] + [
        f"| `{key}` | {'—' if old is None else old} | {'—' if new is None else new} |"
        for key, old, new in changed
    ]


def build_report(root: Path, base: str, plots: bool = True, plot_dir: Path | None = None) -> str:
    """The whole markdown report; ``plots=False`` leaves out the plots, whose paths only
    render where CML publishes them (a pull request's body cannot). With ``plot_dir``, every
    plot dvc.yaml declares is drawn there with the base's data and this branch's on the same
    axes; without it, the report links this branch's own PNGs."""
    head_metrics = read_json(paths.EVAL_METRICS.as_posix(), None, root)
    base_metrics = read_json(paths.EVAL_METRICS.as_posix(), base, root)
    champion = dig(head_metrics, "champion", "name") or "ensemble"
    base_md5, head_md5 = data_md5s(base, root), data_md5s(None, root)
    lines = [
        f"## Model report: `{base}` → this branch",
        "",
        "### Test macro-F1 (95 % CI)",
        "",
        *metrics_table(base_metrics, head_metrics),
        "",
        "### Gate",
        "",
        *gate_lines(read_json(paths.GATE_DECISION.as_posix(), None, root)),
        *card_lines(root),
        "",
        "### Drift",
        "",
        *drift_lines(read_json(paths.DRIFT_REPORT.as_posix(), None, root)),
        "",
        "### Params changed",
        "",
        *params_lines(root, base),
        "",
        "### Data",
        "",
        "| file | base md5 | head md5 |",
        "|---|---|---|",
    ]
    for path in sorted(set(base_md5) | set(head_md5)):
        old, new = base_md5.get(path, "n/a"), head_md5.get(path, "n/a")
        lines.append(f"| {path} | `{old}` | `{new}`{' (changed)' if old != new else ''} |")
    if not plots:
        return "\n".join(lines) + "\n"
    if plot_dir is not None:
        lines += ["", f"### Plots: `{base}` dashed, this branch solid", ""]
        for png in write_plot_diffs(root, base, plot_dir, champion):
            lines.append(f"![{png.stem}]({png.relative_to(root).as_posix()})")
        return "\n".join(lines) + "\n"
    lines += ["", "### Plots", ""]
    for pattern in PLOTS:
        path = pattern.format(champion=champion)
        if (root / path).exists():
            lines.append(f"![{Path(path).stem}]({path})")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="git revision to compare with")
    parser.add_argument("--out", type=Path, default=Path("report.md"))
    args = parser.parse_args()
    root = Path.cwd()  # CML runs it at the repository's root
    report = build_report(root, args.base, plot_dir=(root / args.out).parent / "report-plots")
    with atomic_path(args.out) as tmp:
        tmp.write_text(report)
    print(report)


if __name__ == "__main__":
    entry_point(main)
