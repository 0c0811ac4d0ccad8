"""ARCHITECTURE.md names only files and folders that exist: every path it
quotes (`like/this.py`, `folder/`) is a file or folder of the project, written
whole from the root or as the tail of one (`api/trigger.py` under
services/history/)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUOTED = re.compile(r"`([A-Za-z0-9_.][A-Za-z0-9_./-]*)`")


def _tracked() -> list[str]:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    paths = set(files.stdout.split())
    folders: set[str] = set()
    for p in paths:
        parts = Path(p).parts
        folders.update("/".join(parts[:i]) + "/" for i in range(1, len(parts)))
    return sorted(paths | folders)


def test_every_quoted_path_exists() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    known = _tracked()
    quoted = {
        q
        for q in QUOTED.findall(text)
        if ("/" in q or q.endswith((".py", ".md", ".sql")))
        and not q.startswith("../")  # ../: beside the repo
    }
    assert quoted, "ARCHITECTURE.md quotes no paths"
    missing = sorted(q for q in quoted if not any(k == q or k.endswith("/" + q) for k in known))
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"
