"""Each table has one owning service, and only its owner's code writes or locks
it. The owners are the table in ARCHITECTURE.md (written once, there); every
statement a service runs lives in its SQL home, services/<service>/sql/, and is
read here with PostgreSQL's own parser (pglast), so a write hidden in a CTE or
a lock taken with FOR UPDATE OF an alias is seen as PostgreSQL would see it."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pglast
import pytest
from pglast import ast as pg
from pglast import visitors

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("history", "matching", "frontend", "common")
OWNER_ROW = re.compile(r"^\|\s*`(\w+)`\s*\|\s*(\w+)\s*\|")
SQL_WORDS = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+(\s+\w+)?\s+SET|DELETE\s+FROM)\b", re.S
)
CREATE_TABLE = re.compile(r"CREATE TABLE(?: IF NOT EXISTS)? (\w+)", re.I)


@dataclass(frozen=True)
class Violation:
    """One place where a service breaks the ownership rules."""

    service: str
    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.service}: {self.where}: {self.problem}"


def owners(architecture: Path) -> dict[str, str]:
    """The table -> owning service map of ARCHITECTURE.md."""
    table: dict[str, str] = {}
    for line in architecture.read_text().splitlines():
        m = OWNER_ROW.match(line)
        if m:
            assert m.group(1) not in table, f"table {m.group(1)} has two rows in {architecture}"
            table[m.group(1)] = m.group(2)
    return table


def schema_tables(root: Path) -> set[str]:
    """Every table the migrations (and the migration runner) create."""
    tables = set()
    for path in [*root.glob("services/common/migrations/*.sql"), *root.glob("services/common/**/*.py")]:
        tables.update(m.group(1) for m in CREATE_TABLE.finditer(path.read_text()))
    return tables


class _Touches(visitors.Visitor):
    """Collects the tables a statement writes and the tables it locks."""

    def __init__(self, tables: set[str]) -> None:
        super().__init__()
        self.tables = tables
        self.writes: set[str] = set()
        self.locks: set[str] = set()

    def _table(self, rel: pg.RangeVar | None) -> str | None:
        return rel.relname if rel is not None and rel.relname in self.tables else None

    def visit_InsertStmt(self, parent: object, node: pg.InsertStmt) -> None:
        self._write(node.relation)

    def visit_UpdateStmt(self, parent: object, node: pg.UpdateStmt) -> None:
        self._write(node.relation)

    def visit_DeleteStmt(self, parent: object, node: pg.DeleteStmt) -> None:
        self._write(node.relation)

    def visit_MergeStmt(self, parent: object, node: pg.MergeStmt) -> None:
        self._write(node.relation)

    def visit_TruncateStmt(self, parent: object, node: pg.TruncateStmt) -> None:
        for rel in node.relations or ():
            self._write(rel)

    def visit_SelectStmt(self, parent: object, node: pg.SelectStmt) -> None:
        if not node.lockingClause:
            return
        rels = dict(self._from_items(node.fromClause or ()))
        for clause in node.lockingClause:
            named = [r.relname for r in clause.lockedRels or ()]
            for alias in named or list(rels):
                table = rels.get(alias)
                if table is not None:
                    self.locks.add(table)

    def _write(self, rel: pg.RangeVar | None) -> None:
        table = self._table(rel)
        if table is not None:
            self.writes.add(table)

    def _from_items(self, items: object) -> Iterator[tuple[str, str]]:
        """(name or alias, table) of the tables of one FROM list, joins included."""
        for item in items:  # type: ignore[attr-defined]
            if isinstance(item, pg.RangeVar):
                table = self._table(item)
                if table is not None:
                    yield (item.alias.aliasname if item.alias else item.relname), table
            elif isinstance(item, pg.JoinExpr):
                yield from self._from_items((item.larg, item.rarg))


def _home_files(service_dir: Path) -> list[Path]:
    """The modules of a service's SQL home: the package sql/ or the module sql.py."""
    if (service_dir / "sql").is_dir():
        return sorted((service_dir / "sql").rglob("*.py"))
    return [service_dir / "sql.py"] if (service_dir / "sql.py").is_file() else []


def _sql_home_strings(service_dir: Path) -> Iterator[tuple[str, str]]:
    """(module.NAME, text) of every string constant in the service's SQL home,
    as the module defines it (imports resolve composed statements)."""
    for path in _home_files(service_dir):
        name = f"_ownership_probe_{service_dir.name}_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[name]
        for attr, value in vars(module).items():
            if isinstance(value, str) and not attr.startswith("__"):
                yield f"{path.relative_to(service_dir.parent.parent)}:{attr}", value


def _literals_outside_home(service_dir: Path) -> Iterator[tuple[str, str]]:
    """(file:line, text) of the string literals in the service's other modules."""
    home = set(_home_files(service_dir))
    for path in sorted(service_dir.rglob("*.py")):
        if path in home:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield f"{path.relative_to(service_dir.parent.parent)}:{node.lineno}", node.value


def _formatting_in_home(service_dir: Path) -> Iterator[str]:
    """Places in the SQL home that build SQL with str.format or %."""
    for path in _home_files(service_dir):
        for node in ast.walk(ast.parse(path.read_text())):
            fmt = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
            )
            pct = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod)
            if fmt or pct:
                yield f"{path.relative_to(service_dir.parent.parent)}:{node.lineno}"  # type: ignore[attr-defined]


def check(root: Path) -> tuple[list[Violation], dict[str, tuple[set[str], set[str]]]]:
    """The violations of the ownership rules in the tree at root, and per
    service the tables it writes and locks."""
    owner_of = owners(root / "ARCHITECTURE.md")
    tables = set(owner_of) | schema_tables(root)
    found: list[Violation] = []
    touched: dict[str, tuple[set[str], set[str]]] = {}
    for service in SERVICES:
        service_dir = root / "services" / service
        writes: set[str] = set()
        locks: set[str] = set()
        for where, text in _sql_home_strings(service_dir):
            try:
                stmts = pglast.parse_sql(text)
            except pglast.parser.ParseError:
                continue  # a fragment that other constants compose into statements
            probe = _Touches(tables)
            probe(stmts)
            writes |= probe.writes
            locks |= probe.locks
            for kind, names in (("writes", probe.writes), ("locks", probe.locks)):
                for table in sorted(names):
                    if owner_of.get(table) != service:
                        found.append(
                            Violation(service, where, f"{kind} {table}, owned by {owner_of.get(table)}")
                        )
        for where, text in _literals_outside_home(service_dir):
            if SQL_WORDS.search(text):
                found.append(Violation(service, where, f"SQL outside services/{service}/sql/: {text[:60]!r}"))
        for where in _formatting_in_home(service_dir):
            found.append(Violation(service, where, "SQL built with str.format or %"))
        touched[service] = (writes, locks)
    return found, touched


def test_every_table_has_exactly_one_owner() -> None:
    owner_of = owners(ROOT / "ARCHITECTURE.md")
    assert set(owner_of) == schema_tables(ROOT), "ARCHITECTURE.md's owners table and the schema disagree"
    assert set(owner_of.values()) <= set(SERVICES)


def test_services_write_and_lock_only_their_own_tables() -> None:
    violations, touched = check(ROOT)
    assert not violations, "\n".join(map(str, violations))
    # The check saw the statements: each owner writes its tables.
    assert {"runs", "steps", "queue_entries"} <= touched["history"][0]
    assert {"tasks", "workers", "queues"} <= touched["matching"][0]
    assert "runs" in touched["history"][1]


def _copy_tree(tmp_path: Path) -> Path:
    """The parts of the project the check reads, copied to tmp_path."""
    (tmp_path / "ARCHITECTURE.md").write_text((ROOT / "ARCHITECTURE.md").read_text())
    for path in (ROOT / "services").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".sql"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    return tmp_path


@pytest.mark.parametrize(
    ("service", "statement", "expected"),
    [
        ("history", "UPDATE tasks SET queue = $2 WHERE task_id = $1", "writes tasks, owned by matching"),
        (
            "history",
            "WITH q AS (SELECT q.* FROM queues q JOIN runs r ON r.queue = q.name FOR UPDATE OF q) SELECT 1",
            "locks queues, owned by matching",
        ),
        (
            "matching",
            "WITH c AS (DELETE FROM queue_entries WHERE run_id = $1 RETURNING run_id) SELECT * FROM c",
            "writes queue_entries, owned by history",
        ),
        ("matching", "SELECT * FROM runs WHERE id = $1 FOR SHARE", "locks runs, owned by history"),
    ],
)
def test_a_planted_foreign_write_or_lock_is_caught(
    tmp_path: Path, service: str, statement: str, expected: str
) -> None:
    tree = _copy_tree(tmp_path)
    before, _ = check(tree)
    planted = tree / "services" / service / "sql" / "planted.py"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(f'"""A foreign statement."""\n\nPLANTED = {statement!r}\n')
    after, _ = check(tree)
    assert [str(v) for v in after if v not in before] == [
        f"{service}: services/{service}/sql/planted.py:PLANTED: {expected}"
    ]


def test_sql_outside_the_sql_home_is_caught(tmp_path: Path) -> None:
    tree = _copy_tree(tmp_path)
    before, _ = check(tree)
    stray = tree / "services" / "history" / "stray.py"
    stray.write_text('async def f(conn):\n    await conn.execute("DELETE FROM runs WHERE id = $1", 1)\n')
    after, _ = check(tree)
    new = [v for v in after if v not in before]
    assert [(v.where, v.problem.split(":")[0]) for v in new] == [
        ("services/history/stray.py:2", "SQL outside services/history/sql/")
    ]
