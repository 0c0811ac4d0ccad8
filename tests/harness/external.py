"""Servers the harness did not start (CAIRN_DATABASE_URL, CAIRN_NATS_URL): they
offer what the tests need of a server, but a test that would stop or kill one
is skipped instead."""

from __future__ import annotations

from typing import Any

import pytest

from cairn_cli.embedded import create_database


class ExternalPostgres:
    """A PostgreSQL server the harness did not start (CAIRN_DATABASE_URL); it can
    create databases on it but not stop or kill it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def create_database(self, name: str) -> str:
        url: str = create_database(self.url, name)
        return url

    @property
    def running(self) -> bool:
        return True

    def start(self, timeout: float = 30) -> str:
        return self.url

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        pytest.skip(
            "CAIRN_DATABASE_URL names an external PostgreSQL; this test must "
            "stop it (use the private_postgres fixture)"
        )

    stop = kill = _refuse


class ExternalNats:
    """A NATS server the harness did not start (CAIRN_NATS_URL)."""

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def running(self) -> bool:
        return True

    def start(self, timeout: float = 10) -> str:
        return self.url

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        pytest.skip(
            "CAIRN_NATS_URL names an external NATS; this test must stop it (use the private_nats fixture)"
        )

    stop = kill = _refuse
