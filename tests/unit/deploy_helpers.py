"""What the deploy-file tests share: where the files are, the checking tools
(failing with how to install one that is missing, never skipping), and what
the code says the deployments must agree with: the `cairn` commands, the
CAIRN_* variables it reads, the services' default ports."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
SCHEMAS = DEPLOY / "schemas"
INSTALL_HINT = "scripts/test.sh installs it with the dev extra: pip install -e '.[dev]'"
# ${NAME}, ${NAME:-default}, ${NAME:?message}: the names compose interpolates.
INTERPOLATED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def tool(name: str, package: str) -> str:
    """The path of a checking tool installed with the venv's python, else the
    PATH's; the test fails (does not skip) when it is missing."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (PyPI package {package}); {INSTALL_HINT}")
    return found


def module(name: str, package: str) -> Any:
    """An importable checking library, or a failure naming its package."""
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        pytest.fail(f"the Python module {name} is not installed (PyPI package {package}); {INSTALL_HINT}")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


def load_all(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a file (merge keys resolved), empty ones left out."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


@functools.cache
def cairn_commands() -> frozenset[str]:
    """The commands `cairn --help` lists."""
    from cairn_cli.main import _parser

    for action in _parser()._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            return frozenset(choices)
    raise AssertionError("cairn's parser has no commands")


@functools.cache
def config_reference() -> Any:
    """tools/config_reference.py, the configuration reference's generator."""
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "tools" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # its dataclasses look their module up there
    spec.loader.exec_module(loaded)
    return loaded


@functools.cache
def variables_read() -> frozenset[str]:
    """Every CAIRN_* variable the code reads (the generator's view)."""
    return frozenset(config_reference().variables_read())


def default_port(service: str) -> int:
    """The gRPC port a service listens on by default (services/common/config.py)."""
    from services.common import config

    address = {
        "frontend": config.DEFAULT_FRONTEND,
        "history": config.DEFAULT_HISTORY,
        "matching": config.DEFAULT_MATCHING,
    }[service]
    return int(address.rpartition(":")[2])


def default_http_port() -> int:
    from services.frontend.http.server import DEFAULT_HTTP_ADDRESS

    return int(DEFAULT_HTTP_ADDRESS.rpartition(":")[2])


def port_of(address: str) -> int:
    """The port of host:port or dns:///host:port."""
    return int(address.rpartition(":")[2])


def host_of(address: str) -> str:
    """The host of host:port or dns:///host:port."""
    return address.removeprefix("dns:///").rpartition(":")[0]


def no_cairn_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
