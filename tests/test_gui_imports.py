"""gui/ has no import circle: every import of an ``oomscope.gui`` module by another, wherever it
stands (module top, inside a function, under ``TYPE_CHECKING``), is an edge, and the graph of
them is acyclic. A circle is what let ``MainWindow``, its File menu mixin and the replay window
reach into each other's state."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

GUI = REPO / "gui"
PACKAGE = "oomscope.gui"


def gui_modules() -> dict[str, Path]:
    return {f"{PACKAGE}.{p.stem}": p for p in sorted(GUI.glob("*.py")) if p.stem != "__init__"}


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The oomscope.gui modules an import statement names (``from . import x`` names x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 1:
        base = f"{PACKAGE}.{node.module}" if node.module else PACKAGE
    elif node.level == 0 and node.module:
        base = node.module
    else:
        return []  # beyond the package: core or the top level, never a gui module
    if base == PACKAGE:
        return [f"{PACKAGE}.{alias.name}" for alias in node.names]
    return [base]


def import_graph() -> dict[str, set[str]]:
    modules = gui_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(t for t in _targets(node) if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_graph_sees_relative_absolute_and_nested_imports(tmp_path: Path) -> None:
    tree = ast.parse("from .a import x\nimport oomscope.gui.b\ndef f():\n    from oomscope.gui import c\n"
                     "from oomscope.core import d\n")
    found = sorted(t for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                   for t in _targets(node))
    assert found == ["oomscope.core", "oomscope.gui.a", "oomscope.gui.b", "oomscope.gui.c"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_gui_modules_import_each_other_without_a_circle() -> None:
    graph = import_graph()
    assert len(graph) > 20 and f"{PACKAGE}.window" in graph and f"{PACKAGE}.replay" in graph
    assert f"{PACKAGE}.plot" in graph[f"{PACKAGE}.session_view"]  # the graph has edges to check
    cycle = find_cycle(graph)
    assert cycle is None, "import circle in gui/: " + " -> ".join(m.removeprefix(PACKAGE + ".") for m in cycle)
