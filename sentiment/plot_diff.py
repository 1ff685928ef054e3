"""Plots against the base: every plot ``dvc.yaml`` declares, drawn with the base revision's data
and this branch's on the same axes, as PNGs a pull-request comment can carry (what
``dvc plots diff`` shows in a browser).

The base is read through DVC (``DVCFileSystem``: git-tracked files, and DVC-cached ones from
the cache or the remote), so its plots need no checkout; this branch's are the workspace's
files. A curve plot (x against y)
draws each file of the plot (one per candidate) and each y field, the base dashed and this
branch solid; a confusion plot draws the two matrices of the champion side by side. A side
whose data cannot be read (not pulled, or absent at that revision) is named as missing.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from dvc.api import DVCFileSystem
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from sentiment.fileio import atomic_path

SIDES = ("base", "this branch")
STYLE = {"base": "--", "this branch": "-"}


@dataclass
class PlotDiff:
    """One declared plot on both sides: its rows per file stem, and what could not be read."""

    path: str
    spec: dict[str, Any]
    data: dict[str, dict[str, list[dict]]] = field(default_factory=dict)  # side -> stem -> rows
    missing: dict[str, str] = field(default_factory=dict)  # side -> why

    @property
    def title(self) -> str:
        return self.spec.get("title") or self.path


def declared_plots(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """The top-level ``plots:`` of ``dvc.yaml``: (path, its spec), in the file's order."""
    plots = yaml.safe_load((root / "dvc.yaml").read_text()).get("plots", [])
    found = []
    for entry in plots:
        (path, spec), *_ = entry.items() if isinstance(entry, dict) else [(entry, None)]
        found.append((path, spec or {}))
    return found


def read_side(fs: Any, path: str) -> dict[str, list[dict]]:
    """A plot's rows per file stem: a JSON file, or every JSON file of a folder."""
    if not fs.exists(path):
        raise FileNotFoundError(path)
    files = sorted(fs.find(path)) if fs.isdir(path) else [path]
    return {
        PurePosixPath(name).stem: json.loads(fs.read_text(name))
        for name in files
        if name.endswith(".json")
    }


def collect(root: Path, base: str) -> list[PlotDiff]:
    """Every declared plot, read at ``base`` and in the workspace."""
    # The workspace as it is on disk (what the stages just wrote), the base as DVC recorded it.
    systems = {
        "base": DVCFileSystem(str(root), rev=base),
        "this branch": DirFileSystem(str(root.resolve()), LocalFileSystem()),
    }
    diffs = []
    for path, spec in declared_plots(root):
        diff = PlotDiff(path, spec)
        for side, fs in systems.items():
            try:
                rows = read_side(fs, path)
            except FileNotFoundError:
                diff.missing[side] = "absent"
                continue
            except Exception:  # DVC-tracked, but neither in the cache nor in the remote
                diff.missing[side] = "not pulled"
                continue
            if rows:
                diff.data[side] = rows
            else:
                diff.missing[side] = "no data"
        diffs.append(diff)
    return diffs


def draw_curves(diff: PlotDiff, ax: Any) -> None:
    """Each file's y fields against x, the base dashed and this branch solid, one colour a
    line of both sides."""
    x, ys = diff.spec["x"], diff.spec["y"]
    ys = ys if isinstance(ys, list) else [ys]
    colours: dict[tuple[str, str], Any] = {}
    for side in SIDES:
        files = diff.data.get(side, {})
        for stem, rows in files.items():
            for y in ys:
                key = (stem, y)
                colour = colours.setdefault(key, f"C{len(colours) % 10}")
                named = [stem] * (len(files) > 1) + [y] * (len(ys) > 1)
                label = " ".join([f"{side}:", *named]) if named else side
                ax.plot(
                    [r[x] for r in rows],
                    [r[y] for r in rows],
                    STYLE[side],
                    color=colour,
                    label=label,
                )
    ax.set_xlabel(x)
    ax.set_ylabel(", ".join(ys))
    ax.legend(fontsize=7)


def confusion_counts(rows: list[dict], x: str, y: str) -> tuple[list[str], list[list[int]]]:
    """The classes (in order of appearance) and the count of each (actual, predicted) cell."""
    counts = Counter((r[x], r[y]) for r in rows)
    classes = list(dict.fromkeys([r[x] for r in rows] + [r[y] for r in rows]))
    return classes, [[counts[(a, p)] for p in classes] for a in classes]


def draw_confusions(diff: PlotDiff, axes: Any, champion: str | None) -> None:
    """The champion's confusion matrix on each side (a side's only file when it has one)."""
    for ax, side in zip(axes, SIDES, strict=True):
        files = diff.data.get(side, {})
        stem = champion if champion in files else next(iter(files), None)
        if stem is None:
            ax.set_title(f"{side}: {diff.missing.get(side, 'no data')}")
            ax.axis("off")
            continue
        classes, matrix = confusion_counts(files[stem], diff.spec["x"], diff.spec["y"])
        ax.imshow(matrix, cmap="Blues")
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(classes)), classes, rotation=45, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        ax.set_xlabel(diff.spec["y"])
        ax.set_ylabel(diff.spec["x"])
        ax.set_title(f"{side}: {stem}", fontsize=9)


def render(diff: PlotDiff, out: Path, champion: str | None) -> Path:
    """One PNG for one plot, written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # no display in CI
    import matplotlib.pyplot as plt

    confusion = diff.spec.get("template") == "confusion"
    fig, axes = plt.subplots(1, 2 if confusion else 1, figsize=(9 if confusion else 6, 4))
    if confusion:
        draw_confusions(diff, axes, champion)
    else:
        draw_curves(diff, axes)
    missing = "; ".join(f"{side}: {why}" for side, why in diff.missing.items())
    fig.suptitle(diff.title + (f" ({missing})" if missing else ""), fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return out


def write_plot_diffs(root: Path, base: str, out_dir: Path, champion: str | None) -> list[Path]:
    """Render every declared plot, base against this branch, into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for diff in collect(root, base):
        if not diff.data:
            continue
        name = PurePosixPath(diff.path).with_suffix("").as_posix().replace("/", "_")
        written.append(render(diff, out_dir / f"{name}.png", champion))
    return written
