"""The seed modules as test factories: `create(conn, "users", 3, full_name="Ann Lee")`.

Rows are made by the same seed module db.seed uses (so tests see realistic rows), foreign keys
point at rows already in the database, and `overrides` pin the columns a test cares about.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from dbguard.guard.connect import Connection
from dbguard.project import Project, find_root, load_project
from dbguard.seeding.api import Fakes, Row, SeedTable
from dbguard.seeding.runner import copy_rows, discover_seeds, generate_rows, next_id


class _Overridden(SeedTable):
    def __init__(self, inner: SeedTable, overrides: dict[str, Any]) -> None:
        self.inner, self.overrides = inner, overrides
        self.model = inner.model  # type: ignore[misc]

    def row(self, f: Fakes, id: int) -> Row:
        return {**self.inner.row(f, id), **self.overrides}


def _id_range(conn: Connection, table: str) -> tuple[int, int]:
    row = conn.execute(
        sql.SQL("SELECT coalesce(min(id), 1), count(*) FROM {}").format(sql.Identifier(table))
    ).fetchone()
    assert row is not None
    return int(row[0]), max(int(row[1]), 1)


def create(
    conn: Connection, table: str, n: int = 1, *, seed: int = 1, project: Project | None = None, **overrides: Any
) -> list[dict[str, Any]]:
    """Insert `n` rows of `table` made by its seed module; return them as dicts, in id order.

    `project` defaults to the app found from the current directory (see dbguard.project).
    """
    project = project or load_project(find_root())
    seed_table = discover_seeds(project)[table][0]
    referenced = {fk.column.table.name for fk in project.metadata.tables[table].foreign_keys}
    ranges = {t: _id_range(conn, t) for t in referenced}
    start = next_id(conn, table)
    ranges[table] = (start, n)
    rows = generate_rows(
        _Overridden(seed_table, overrides), Fakes(seed, f"factory:{table}", ranges, pool_size=50), start, n
    )
    copy_rows(conn, table, tuple(str(c) for c in next(rows)), rows, freeze=False, advance=None)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("SELECT * FROM {} WHERE id >= %s ORDER BY id").format(sql.Identifier(table)), (start,))
        return cur.fetchall()
