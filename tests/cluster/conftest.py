"""Fixtures shared by several cluster test files: ``fx_dir``, the directory the
fault-injection tasks (tests/apps/fault_tasks.py) write their side effects,
markers and go-files to (read by fault_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def fx_dir(tmp_path: Path) -> Path:
    """The directory the tasks write their side effects, markers and go-files to."""
    d = tmp_path / "fault-tasks"
    d.mkdir()
    return d
