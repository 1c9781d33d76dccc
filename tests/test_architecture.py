"""The package's layout rules (docs/architecture.md), checked on the import
graph that grimp (import-linter's engine) builds from the source.

``lint-imports`` (run by scripts/test) checks the layer order and sibling
cycles; this test is stricter: no import cycle between any two modules, with
imports made only for type checking and imports inside functions counted too.
"""

from __future__ import annotations

import grimp

ROOT = "flowfabric_worker"


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.find_modules_directly_imported_by(node):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_between_modules() -> None:
    graph = grimp.build_graph(ROOT, cache_dir=None)
    # The package root re-exports the public API: it imports everything and
    # nothing imports it, so it cannot close a cycle; drop it to keep the
    # check about the modules themselves.
    graph.remove_module(ROOT)
    assert _cycles(graph) == []


def test_the_package_root_is_imported_by_no_module() -> None:
    # Importing ``flowfabric_worker`` from inside the package would make every
    # module depend on the whole public API (and so on every layer).
    graph = grimp.build_graph(ROOT, cache_dir=None)
    assert graph.find_modules_that_directly_import(ROOT) == set()


def test_top_level_holds_only_folders_and_the_shared_leaves() -> None:
    graph = grimp.build_graph(ROOT, cache_dir=None)
    top = {m.split(".")[1] for m in graph.modules if m.count(".") >= 1}
    folders = {"protocol", "backend", "tasks", "engine", "client", "context", "worker",
               "authoring", "cli", "dashboard", "observability", "testing"}
    leaves = {"errors", "settings", "__main__"}
    assert top == folders | leaves
