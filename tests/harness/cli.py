"""The `cairn` command line as a child process: ``cli_env`` (the environment
it runs in, without the caller's CAIRN_* settings) and ``cairn_cli`` (run it
against a cluster's frontend)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from . import auth
from .processes import REPO_ROOT


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["CAIRN_API_KEY"] = auth.ADMIN_KEY
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def cairn_cli(cluster: Any, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m cairn_cli ARGS... --address <the cluster's frontend>`."""
    return subprocess.run(
        [sys.executable, "-m", "cairn_cli", *args, "--address", cluster.address],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=str(REPO_ROOT),
        timeout=timeout,
    )
