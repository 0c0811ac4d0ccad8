"""No hand-written Python module is over 600 lines (small modules with one job
each); generated protobuf code is left out."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 600
SKIP = {".venv", "node_modules", ".venv-peers", "v1", "results", ".git"}


def test_no_module_is_over_600_lines() -> None:
    over = {
        str(p.relative_to(ROOT)): n
        for p in ROOT.rglob("*.py")
        if not SKIP.intersection(p.relative_to(ROOT).parts)
        and (n := len(p.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert not over, over
