"""The protocol contract: the generated code matches proto/, and buf lint passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "tools/gen_proto.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_lint_passes() -> None:
    buf = shutil.which("buf") or str(ROOT / ".venv/buf/node_modules/.bin/buf")
    assert Path(buf).exists(), "buf is not installed: scripts/venv.sh installs it from npm"
    result = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_worker_sdk_needs_no_server_packages() -> None:
    """A worker host installs only grpcio and protobuf: importing the SDK must not
    pull in asyncpg, nats or the services."""
    code = (
        "import sys, worker_sdk; bad = [m for m in ('asyncpg', 'nats', 'services') "
        "if m in sys.modules]; assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


PYTHON_ONLY = (
    "@task",
    "@step",
    "ValueError",
    "TypeError",
    "KeyError",
    "RuntimeError",
    "asyncio",
    "def ",
    "None",
)


def test_the_protos_speak_no_single_language() -> None:
    """Issue 11, finding 10: the protos are read by SDKs in any language, so
    they describe the protocol, not the Python SDK's decorators or exceptions."""
    found = []
    for path in sorted((ROOT / "proto").rglob("*.proto")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            comment = line.partition("//")[2]
            found += [f"{path.name}:{number}: {word!r}" for word in PYTHON_ONLY if word in comment]
    assert not found, "Python-only wording in the protos:\n" + "\n".join(found)
