"""The modules of `isthmus` import each other as a DAG: no import cycle anywhere.

A cycle is what function-local imports and `if TYPE_CHECKING:` blocks are usually
there to hide, so every import statement counts: module level, inside functions,
under TYPE_CHECKING, relative and absolute.  `from pkg import name` is an edge to
the module `pkg.name` when there is one, to `pkg` otherwise.  Importing `a.b.c`
also runs the `__init__` of `a` and `a.b`, but that is no edge of the importer:
a package that imports its own submodules is no cycle by itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import isthmus

ROOT = Path(isthmus.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The isthmus modules `name` (at `path`) imports, from anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name, not a module
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return edges


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [_cycle_in(graph, set(c)) for c in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    raise AssertionError("a strongly connected component without a cycle")


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "isthmus.dimse.acceptor" in graph
    assert "isthmus.dicom.status" in graph["isthmus.dimse.acceptor"]  # module level
    assert "isthmus.node.router" in graph["isthmus.dimse.scp"]


def test_function_local_type_checking_and_relative_imports_are_edges(tmp_path: Path) -> None:
    source = tmp_path / "isthmus" / "pkg"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text("")
    (source / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from isthmus.pkg.b import B\n"
        "def f():\n    from . import c\n"
    )
    known = {"isthmus", "isthmus.pkg", "isthmus.pkg.a", "isthmus.pkg.b", "isthmus.pkg.c"}
    edges = imports_of("isthmus.pkg.a", source / "a.py", known)
    assert edges == {"isthmus.pkg.b", "isthmus.pkg.c"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" → ".join(c) for c in found)


def test_the_node_package_imports_no_door() -> None:
    """isthmus.node serves every door (docs/architecture.md, "Layers"): doors hand it their
    handlers, it imports none of them."""
    doors = ("isthmus.dimse", "isthmus.web")
    graph = import_graph()
    wrong = {
        name: sorted(t for t in targets if t.startswith(doors))
        for name, targets in graph.items()
        if name.startswith("isthmus.node")
    }
    assert not any(wrong.values()), wrong


def test_the_audit_trail_and_the_metrics_import_no_door() -> None:
    """They subscribe to the archive's events (archive/activity.py); doors publish, and
    neither reaches into a door (docs/operations.md)."""
    doors = ("isthmus.dimse", "isthmus.web", "isthmus.server", "isthmus.cli")
    graph = import_graph()
    wrong = {
        name: sorted(t for t in targets if t.startswith(doors))
        for name, targets in graph.items()
        if name.startswith(("isthmus.audit", "isthmus.metrics"))
    }
    assert any(name.startswith("isthmus.audit") for name in graph)
    assert not any(wrong.values()), wrong
