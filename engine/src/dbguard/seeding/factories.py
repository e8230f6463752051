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
from dbguard.seeding.keys import existing_space, next_number, qualified, space_for
from dbguard.seeding.runner import added_key, copy_rows, discover_seeds, generate_rows


class _Overridden(SeedTable):
    def __init__(self, inner: SeedTable, overrides: dict[str, Any]) -> None:
        self.inner, self.overrides = inner, overrides
        self.table = inner.sa_table  # type: ignore[misc]

    def row(self, f: Fakes, id: int) -> Row:
        return {**self.inner.row(f, id), **self.overrides}


def create(
    conn: Connection, table: str, n: int = 1, *, seed: int = 1, project: Project | None = None, **overrides: Any
) -> list[dict[str, Any]]:
    """Insert `n` rows of `table` made by its seed module; return them as dicts, in the order they were made.

    Foreign keys point at rows already in the database, whatever their key type. `project` defaults to
    the app found from the current directory (see dbguard.project).
    """
    project = project or load_project(find_root())
    seed_table = discover_seeds(project)[table][0]
    sa_table = project.metadata.tables[table]
    referenced = {fk.column.table.fullname for fk in sa_table.foreign_keys} - {table}
    spaces = {t: existing_space(conn, project.metadata.tables[t]) for t in referenced}
    start = next_number(conn, sa_table)
    spaces[table] = space_for(sa_table, seed, start, n)
    fakes = Fakes(seed, table, spaces, pool_size=50, stream=f"factory:{table}")
    key = added_key(sa_table, seed, {table})  # always made here, so the rows can be read back by it
    rows = generate_rows(_Overridden(seed_table, overrides), fakes, start, n, key)
    columns = tuple(str(c) for c in next(rows))
    made = list(rows)
    copy_rows(conn, table, columns, made, freeze=False, advance=None)
    key_columns = [c.name for c in sa_table.primary_key.columns]
    if not key_columns or not set(key_columns) <= set(columns):
        return [dict(zip(columns, values, strict=True)) for values in made]  # no key to find them by: as made
    positions = [columns.index(c) for c in key_columns]
    match = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in key_columns)
    query = sql.SQL("SELECT * FROM {} WHERE {}").format(qualified(table), match)
    out = []
    with conn.cursor(row_factory=dict_row) as cur:
        for values in made:  # as stored: server defaults and generated columns included
            found = cur.execute(query, [values[i] for i in positions]).fetchone()
            assert found is not None
            out.append(found)
    return out
