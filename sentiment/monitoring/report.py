"""What a drift run says: window verdicts, the retrain rule, and the Markdown report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentiment.fileio import atomic_path
from sentiment.monitoring.statistics import TESTS


def windows_verdict(results: list[dict], retrain_after: int) -> dict[str, Any]:
    """Longest run of consecutive drifting windows and the retrain rule."""
    longest = run = 0
    for result in results:
        run = run + 1 if result["drift_detected"] else 0
        longest = max(longest, run)
    return {
        "windows": len(results),
        "drifting": sum(r["drift_detected"] for r in results),
        "longest_drifting_run": longest,
        "retrain": longest >= retrain_after,
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The metrics part of one window's result (no raw distributions)."""
    return {k: v for k, v in result.items() if k not in ("length", "scores")}


def write_report(results: dict[str, dict], report_md: Path, plots: Path) -> None:
    """``report_md``: a tests table per current set, and its PNG plots in ``plots`` (a
    folder beside it, the report's links are relative)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "# Drift report",
        "",
        "| current set | n | verdict | " + " | ".join(TESTS) + " |",
        "|---" * (3 + len(TESTS)) + "|",
    ]
    plots.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    images: list[str] = []
    for name, result in results.items():
        tests = result.get("tests", {})
        cells = [
            f"{tests[t]['p_adjusted']:.3g}{' ⚠' if tests[t]['drift'] else ''}"
            if t in tests
            else "-"
            for t in TESTS
        ]
        rows.append(f"| {name} | {result['n']} | {result['status']} | " + " | ".join(cells) + " |")
        if "length" in result:
            fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
            for key, ax, title in (
                ("length", left, "words per text"),
                ("scores", right, "champion P(positive)"),
            ):
                ax.hist(
                    result[key]["reference"], bins=30, alpha=0.5, density=True, label="reference"
                )
                ax.hist(result[key]["current"], bins=30, alpha=0.5, density=True, label=name)
                ax.set_title(title)
                ax.legend()
            fig.tight_layout()
            fig.savefig(plots / f"{name}.png", dpi=80)
            plt.close(fig)
            images += ["", f"![{name}]({plots.name}/{name}.png)"]
    lines += [*rows, "", "Cells: Holm-adjusted p-values; ⚠ marks a test below the family alpha."]
    lines += images
    with atomic_path(report_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
