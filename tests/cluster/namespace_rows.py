"""Row counts of namespaces, for the fuzz tests (test_fuzz_generated.py,
test_http_schemathesis.py) to show that a rejected request wrote nothing:
``NamespaceRows(cluster)`` keeps one connection of its own (cheap to ask per
request), counts every table's rows of given namespaces (by their namespace
column, or a uuid column naming one of their runs: every table the schema
has, so a new one is counted too), and says whether history is about to do
work of its own in a namespace (a timer or a schedule due within
QUIET_SECONDS), when its counts may change without any request."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from typing import Any

import asyncpg
from harness import Cluster

QUIET_SECONDS = 3
# Tables that hold no namespace's rows: the services' own bookkeeping, which
# they write on their own (history's liveness beat every second).
SERVICE_TABLES = frozenset({"schema_migrations", "history_liveness"})


class NamespaceRows:
    def __init__(self, cluster: Cluster) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(asyncpg.connect(cluster.database_url))
        columns: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
        for row in self.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ):
            columns[row["table_name"]].append((row["column_name"], row["data_type"]))
        runs = "(SELECT id FROM runs WHERE namespace = ANY($1::text[]))"
        counts = []
        for table, cols in sorted(columns.items()):
            where = [f"{c} = ANY($1::text[])" for c, _ in cols if c == "namespace"]
            where += [f"{c} IN {runs}" for c, kind in cols if kind == "uuid"]
            if where:
                counts.append(f"(SELECT count(*) FROM {table} WHERE {' OR '.join(where)}) AS {table}")
        self.counts_query = "SELECT " + ", ".join(counts)
        soon = f"now() + interval '{QUIET_SECONDS} seconds'"
        self.busy_query = (
            f"SELECT EXISTS (SELECT 1 FROM timers WHERE due_at < {soon} AND run_id IN {runs}) "
            f"OR EXISTS (SELECT 1 FROM schedules WHERE NOT paused AND next_fire_at < {soon} "
            "AND namespace = ANY($1::text[]))"
        )

    def fetch(self, query: str, *args: Any) -> list[Any]:
        return list(self.loop.run_until_complete(self.conn.fetch(query, *args)))

    @staticmethod
    def _names(namespaces: Iterable[str]) -> list[str]:
        return sorted({n for n in namespaces if "\x00" not in n})  # PostgreSQL text holds no NUL

    def counts(self, namespaces: Iterable[str]) -> dict[str, int]:
        """Each table's rows of these namespaces, by table."""
        return dict(self.fetch(self.counts_query, self._names(namespaces))[0])

    def busy(self, namespaces: Iterable[str]) -> bool:
        """Whether history has a timer or a schedule of these namespaces due soon."""
        return bool(self.fetch(self.busy_query, self._names(namespaces))[0][0])

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()
