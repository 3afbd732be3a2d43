"""The shape of the package, read from its source: no import cycle (at module or function level, or
through imports for annotations only), and training never imports the analysis tools, the reproduction
code, the launchers or the plain loop."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "litvision").rglob("*.py"))}


def imports(source: str, name: str, package: str) -> set[str]:
    """The litvision modules that the module ``name`` (of ``package``) imports: at module level, inside a
    function, and under ``if TYPE_CHECKING:`` (an import that only annotations read still ties the two
    modules together: a cycle through it is a cycle)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
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


GRAPH = {
    name: imports(path.read_text(), name, name if path.name == "__init__.py" else name.rpartition(".")[0])
    for name, path in MODULES.items()
}


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


def test_the_graph_sees_imports_in_functions_and_under_type_checking():
    assert "litvision.cli" in GRAPH["litvision.runs"]  # load_run imports the CLI inside the function
    source = "if TYPE_CHECKING:\n    from litvision.reproduce.runner import Job\n"
    found = imports(source, "litvision.launch.slurm", "litvision.launch")
    assert found == {"litvision.reproduce.runner"}


def test_no_import_cycle_at_module_or_function_level_or_for_annotations():
    cycles = {frozenset(c): c for name in GRAPH if (c := cycle_through(name)) is not None}
    assert not cycles, "; ".join(" -> ".join(chain) for chain in cycles.values())


def test_training_never_imports_the_analysis_tools_the_reproduction_code_or_the_launchers():
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
    apart = (
        "litvision.analysis",
        "litvision.reproduce",
        "litvision.search",
        "litvision.launch",
        "litvision.plain",
    )
    assert not [n for n in reached if n.startswith(apart)]
