"""Every test module's name is unique across tests/: pytest imports them
without packages (rootdir-relative basenames), so two of one name fail the
whole collection in a clean checkout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_no_two_test_modules_share_a_name() -> None:
    names = Counter(
        p.name for p in TESTS.rglob("test_*.py") if "node_modules" not in p.parts and ".venv" not in p.parts
    )
    assert not [n for n, count in names.items() if count > 1]
