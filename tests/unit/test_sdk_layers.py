"""The worker SDK's module structure: every import at module top (none inside a
function or class), and the modules of worker_sdk import each other without a
circle, so they form layers. Read with ast, nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import worker_sdk

PACKAGE = "worker_sdk"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE


def module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def sdk_imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """The worker_sdk modules a module imports anywhere in its source
    (TYPE_CHECKING blocks included). `from worker_sdk import x` is an edge to
    worker_sdk.x when x is a module, else to the package itself."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == PACKAGE:
                for alias in node.names:
                    sub = f"{PACKAGE}.{alias.name}"
                    found.add(sub if sub in modules else PACKAGE)
            elif node.module in modules:
                found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"relative import at line {node.lineno}: use absolute worker_sdk imports")
    return found


def nested_imports(tree: ast.Module) -> list[int]:
    """Lines of imports inside a function or class body."""
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    lines.append(inner.lineno)
    return sorted(set(lines))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the directed graph as a list of nodes (first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def sdk_graph() -> dict[str, set[str]]:
    paths = sorted(ROOT.glob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): sdk_imports(ast.parse(p.read_text(), str(p)), modules) for p in paths}


def test_the_sdk_modules_import_each_other_without_a_circle() -> None:
    graph = sdk_graph()
    assert len(graph) > 10, sorted(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_no_sdk_module_but_the_package_imports_the_package() -> None:
    importers = [m for m, deps in sdk_graph().items() if PACKAGE in deps and m != PACKAGE]
    assert importers == [], f"import the defining module instead of worker_sdk: {importers}"


def test_every_import_in_the_sdk_is_at_module_top() -> None:
    nested = {
        path.name: lines
        for path in sorted(ROOT.glob("*.py"))
        if (lines := nested_imports(ast.parse(path.read_text(), str(path))))
    }
    assert nested == {}, f"function- or class-level imports (file: lines): {nested}"


def test_the_checks_catch_what_they_look_for() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    planted = ast.parse("import os\n\ndef f():\n    from worker_sdk import _step\n    return _step\n")
    assert nested_imports(planted) == [4]
    edges = sdk_imports(
        ast.parse("from worker_sdk import _step, Task\nimport worker_sdk._grpc\n"),
        {"worker_sdk", "worker_sdk._step", "worker_sdk._grpc"},
    )
    assert edges == {"worker_sdk._step", "worker_sdk", "worker_sdk._grpc"}


def test_public_names_are_exported_once_and_implementation_modules_are_private() -> None:
    assert len(worker_sdk.__all__) == len(set(worker_sdk.__all__))
    for name in worker_sdk.__all__:
        assert hasattr(worker_sdk, name), name
    public_modules = sorted(p.stem for p in ROOT.glob("*.py") if not p.stem.startswith("_"))
    assert public_modules == ["errors"], public_modules  # recorded error type names name it
