"""grpcurl as a client: the language-neutral way to call the public API, and
reading its JSON answers."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cairn import keys

from . import auth
from .processes import PYTHON

GRPCURL = shutil.which("grpcurl") or str(Path(PYTHON).parent / "grpcurl")


def grpcurl(
    address: str, *args: str, data: Any = None, timeout: float = 40, key: str | None = auth.ADMIN_KEY
) -> subprocess.CompletedProcess[str]:
    """Runs `grpcurl -plaintext -H 'authorization: Bearer KEY' [-d JSON(data)]
    ADDRESS ARGS...` (a method, or "list"); the session's admin key unless
    `key` says otherwise (None: no key)."""
    argv = [GRPCURL, "-plaintext"]
    if key is not None:
        argv += ["-H", f"{keys.AUTHORIZATION}: {keys.BEARER}{key}"]
    if data is not None:
        argv += ["-d", json.dumps(data)]
    argv += [address, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def grpcurl_call(address: str, method: str, data: Any) -> dict[str, Any]:
    """Calls method with grpcurl and returns its JSON answer; fails on an error."""
    proc = grpcurl(address, method, data=data)
    assert proc.returncode == 0, f"grpcurl {method} failed ({proc.returncode}): {proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def grpcurl_error(address: str, method: str, data: Any, code: str) -> str:
    """Asserts grpcurl's call fails with `code` (e.g. "FailedPrecondition"); returns
    its stderr."""
    proc = grpcurl(address, method, data=data)
    assert proc.returncode != 0, f"grpcurl {method} succeeded: {proc.stdout}"
    assert f"Code: {code}" in proc.stderr, proc.stderr
    return proc.stderr


def json_field(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """A field of grpcurl's JSON by its proto name, printed either in lowerCamelCase
    (the proto3 JSON default) or as the original snake_case name."""
    camel = name.split("_")[0] + "".join(p.title() for p in name.split("_")[1:])
    if camel in obj:
        return obj[camel]
    return obj.get(name, default)


def b64_json(value: Any) -> str:
    """value as JSON, base64-encoded: a bytes field in grpcurl's JSON."""
    return base64.b64encode(json.dumps(value).encode()).decode()
