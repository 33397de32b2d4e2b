"""deploy_ops has no import cycles: its modules' imports of one another, module-level or inside a
function (a lazy import hides a circle, it does not remove it), form a graph without loops.

Read from the source with ``ast``, so the check needs no Django setup; imports under
``if TYPE_CHECKING:`` are left out, as they never run.
"""

import ast
from pathlib import Path

import deploy_ops

PACKAGE_DIR = Path(deploy_ops.__file__).parent


def module_name(path: Path) -> str:
    parts = ["deploy_ops", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE_DIR.rglob("*.py") if "migrations" not in path.parts and "demo" not in path.parts}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The deploy_ops modules ``name`` imports: ``from .x import y`` is x, or x.y when y is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for node in ast.walk(branch)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in found if module in known and module != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_modules(name, path, set(known)) for name, path in known.items()}


def test_the_checker_finds_a_lazy_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_graph_sees_relative_lazy_and_submodule_imports():
    graph = import_graph()
    assert "deploy_ops.argv" in graph["deploy_ops.exceptions"]
    assert "deploy_ops.preflight" in graph["deploy_ops.checks"]  # a function-level import
    assert "deploy_ops.children" in graph["deploy_ops.runner"]  # from . import children


def test_deploy_ops_has_no_import_cycles():
    assert cycles(import_graph()) == []
