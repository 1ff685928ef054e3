"""Imports run one way (docs/development.md): no circle between modules, and no module
imports one of a higher layer. Function-level imports count too."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

# Bottom first; a module may import its own layer or a lower one.
LAYERS = (
    ("sentiment.paths", "sentiment.settings", "sentiment.fileio", "sentiment.cli"),
    ("sentiment.params", "sentiment.tracking", "sentiment.commands", "sentiment.data"),
    ("sentiment.features", "sentiment.evaluation", "sentiment.model_card"),
    ("sentiment.models",),
    ("sentiment.registry", "sentiment.monitoring", "sentiment.scoring", "sentiment.serving"),
    (
        "sentiment.headlines",
        "sentiment.ingest",
        "sentiment.plot_diff",
        "sentiment.report",
        "sentiment.summary",
    ),
    ("sentiment.retrain",),
    ("stages", "service"),
)


def modules() -> dict[str, set[str]]:
    """Every project module and the project modules it imports."""
    files = [*REPO.glob("sentiment/**/*.py"), *REPO.glob("stages/*.py"), REPO / "service.py"]
    names = {}
    for path in files:
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        names[name] = path
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            found |= {t for t in targets if t in names and t not in (name, "sentiment")}
        graph[name] = found
    return graph


def layer(module: str) -> int:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(f"{p}.") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py")


GRAPH = modules()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_runs_back_up(module: str) -> None:
    upward = sorted(t for t in GRAPH[module] if layer(t) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports {upward} from above"


def test_no_circle() -> None:
    def reaches(start: str) -> set[str]:
        seen, pending = set(), list(GRAPH[start])
        while pending:
            current = pending.pop()
            if current not in seen:
                seen.add(current)
                pending.extend(GRAPH[current])
        return seen

    circles = sorted(m for m in GRAPH if m in reaches(m))
    assert not circles, f"in an import circle: {circles}"
