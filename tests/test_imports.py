"""The shape of the package, read from its source: no import cycle (at module or function level), and
training never imports the analysis tools or the reproduction code."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "litvision").rglob("*.py"))}


def runtime_imports(name: str) -> set[str]:
    """The litvision modules that ``name`` imports when it runs, at module level or inside a function;
    not those under ``if TYPE_CHECKING:``, which only annotations read."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    annotations_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for child in node.body
        for inner in ast.walk(child)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, or level - 1 packages above it
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]  # a name may be a module
        else:
            continue
        found.update(n for n in names if n in MODULES and n != name)
    return found


GRAPH = {name: runtime_imports(name) for name in MODULES}


def cycle_through(start: str) -> list[str] | None:
    """A chain of imports from ``start`` back to it, if there is one."""
    stack, seen = [(start, [start])], {start}
    while stack:
        node, path = stack.pop()
        for imported in sorted(GRAPH[node]):
            if imported == start:
                return [*path, start]
            if imported not in seen:
                seen.add(imported)
                stack.append((imported, [*path, imported]))
    return None


def test_the_graph_sees_imports_in_functions_and_leaves_out_annotations_only_ones():
    assert "litvision.cli" in GRAPH["litvision.runs"]  # load_run imports the CLI inside the function
    assert "litvision.reproduce.runner" not in GRAPH["litvision.reproduce.launch"]  # TYPE_CHECKING only
    assert "litvision.reproduce.plan" in GRAPH["litvision.reproduce.launch"]


def test_no_import_cycle_at_module_or_function_level():
    cycles = {frozenset(c): c for name in GRAPH if (c := cycle_through(name)) is not None}
    assert not cycles, "; ".join(" -> ".join(chain) for chain in cycles.values())


def test_training_never_imports_the_analysis_tools_or_the_reproduction_code():
    """Everything ``litvision fit`` can import (the CLI's imports, theirs, and the packages they sit in)."""
    reached, todo = set(), ["litvision.cli"]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo += [*GRAPH[name], *(p for p in parents if p in MODULES)]
    assert "litvision.module" in reached and "litvision.data.cifar" in reached
    apart = ("litvision.analysis", "litvision.reproduce", "litvision.search")
    assert not [n for n in reached if n.startswith(apart)]
