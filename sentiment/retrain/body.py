"""The retrain pull request's title, commit message and body: the gate's verdict first,
then what the drop added, then the report against the base branch (sentiment.report)."""

from __future__ import annotations

from pathlib import Path

from sentiment import paths
from sentiment.headlines import read_metrics
from sentiment.report import build_report, gate_lines
from sentiment.retrain.drop import Drop


def title(drop: Drop, appended: int) -> str:
    return f"Retrain on drop {drop.name}: {appended} new rated reviews"


def drop_lines(drop: Drop, counts: dict[str, int]) -> list[str]:
    skipped = sum(drop.skipped.values())
    return [
        "| drop | files | rows read | skipped as invalid | ingested before | repeated in drop "
        "| appended |",
        "|---|---|---|---|---|---|---|",
        f"| `{drop.uri}` | {len(drop.files)} | {drop.rows_read} | {skipped} "
        f"| {counts['ingested_before']} | {counts['repeated_in_drop']} | {counts['appended']} |",
    ]


def verdict(root: Path) -> list[str]:
    return gate_lines(read_metrics(paths.GATE_DECISION, root))


def body(drop: Drop, counts: dict[str, int], root: Path, base: str) -> str:
    """The pull request's markdown."""
    return "\n".join(
        [
            "## Gate",
            "",
            *verdict(root),
            "",
            "A person decides: merging to main lets the container workflow act on this "
            "decision (`python -m sentiment.registry promote`) and build the image of the "
            "model then in production.",
            "",
            "## New rated reviews",
            "",
            *drop_lines(drop, counts),
            "",
            build_report(root, base, plots=False),
        ]
    )
