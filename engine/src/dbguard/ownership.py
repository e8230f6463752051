"""The ownership matrix: which components write each table and which only read it. Declared beside each table.

Every table of the app's metadata carries one entry, as every column carries a PII class:

    class Job(Base):
        __tablename__ = "jobs"
        __table_args__ = {"info": owned("worker", isolated=True)}

    class Task(Base):
        __tablename__ = "tasks"
        __table_args__ = (Index(...), {"info": owned("app", readers=("worker",), row_owner="owner_id")})

Invariants: a table's writers may SELECT/INSERT/UPDATE/DELETE it, its readers may only SELECT it, no other
component may touch it; an isolated table has exactly one writer and no readers. `db.roles` turns the
matrix into grants, `db.doctor` compares the database's grants with it, and the migration ladder refuses
a schema with a table that has no entry. The components are listed in `[tool.dbguard] components`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import MetaData, Table

INFO_KEY = "dbguard.ownership"
COMPONENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


@dataclass(frozen=True)
class Ownership:
    """One table's row of the matrix."""

    writers: tuple[str, ...]  # components that INSERT/UPDATE/DELETE (and SELECT)
    readers: tuple[str, ...] = ()  # components that only SELECT
    isolated: bool = False  # one component's internal state (exactly one writer, no readers)
    row_owner: str | None = None  # column naming the owning user: switches on row-level security
    rows_via: str | None = None  # a foreign key to a row-owned table: a row is the user's when its parent is

    def __post_init__(self) -> None:
        names = (*self.writers, *self.readers)
        bad = [n for n in names if not COMPONENT_NAME.match(n)]
        if bad:
            raise ValueError(f"component names are lower-case identifiers: {', '.join(map(repr, bad))}")
        if not self.writers:
            raise ValueError("a table needs at least one writer component")
        if len(set(self.writers)) != len(self.writers) or len(set(self.readers)) != len(self.readers):
            raise ValueError("a component is listed twice")
        both = set(self.writers) & set(self.readers)
        if both:
            raise ValueError(f"{', '.join(sorted(both))} both writes and only reads the table")
        if self.isolated and (len(self.writers) != 1 or self.readers):
            raise ValueError("an isolated table has exactly one writer and no readers")
        if self.row_owner and self.rows_via:
            raise ValueError("a table's rows belong to a user by row_owner or by rows_via, not both")

    @property
    def components(self) -> tuple[str, ...]:
        return (*self.writers, *self.readers)

    def privileges(self, component: str) -> frozenset[str]:
        """The table privileges `component` holds: all four for a writer, SELECT for a reader, none else."""
        if component in self.writers:
            return frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
        if component in self.readers:
            return frozenset({"SELECT"})
        return frozenset()

    @property
    def row_scoped(self) -> bool:
        """Whether row-level security keeps each user to their own rows of this table."""
        return bool(self.row_owner or self.rows_via)

    @property
    def kind(self) -> str:
        if self.isolated:
            return "isolated"
        return "shared" if len(self.components) > 1 else "single"


def owned(
    *writers: str,
    readers: Iterable[str] = (),
    isolated: bool = False,
    row_owner: str | None = None,
    rows_via: str | None = None,
) -> dict[str, Any]:
    """`{"dbguard.ownership": Ownership(...)}`: pass as a Table's `info=` (or in `__table_args__`).

    `row_owner="owner_id"`: a row is the user's whose id is in that column. `rows_via="project_id"`: a row
    is the user's when the row that foreign key points at is (a task through its project)."""
    return {INFO_KEY: Ownership(tuple(writers), tuple(readers), isolated, row_owner, rows_via)}


def ownership_of(table: Table) -> Ownership | None:
    value = table.info.get(INFO_KEY)
    return value if isinstance(value, Ownership) else None


def qualified(table: Table) -> str:
    return f"{table.schema or 'public'}.{table.name}"


def matrix(metadata: MetaData) -> list[tuple[str, Ownership]]:
    """Each table with an entry, by schema-qualified name, sorted."""
    rows = [(qualified(t), o) for t in metadata.tables.values() if (o := ownership_of(t)) is not None]
    return sorted(rows, key=lambda row: row[0])


def missing(metadata: MetaData) -> list[str]:
    """Tables without an entry (the migration ladder refuses these)."""
    return sorted(qualified(t) for t in metadata.tables.values() if ownership_of(t) is None)


def undeclared(metadata: MetaData, components: Iterable[str]) -> list[str]:
    """`table: component` for each component the matrix names that `[tool.dbguard] components` does not list."""
    listed = set(components)
    return [f"{name}: {c}" for name, o in matrix(metadata) for c in o.components if c not in listed]


def bad_row_owners(metadata: MetaData) -> list[str]:
    """`table.column` for each row_owner that names no column of its table, and each rows_via that is not a
    one-column foreign key to a row-owned table."""
    bad = [
        f"{qualified(t)}.{o.row_owner}"
        for t in metadata.tables.values()
        if (o := ownership_of(t)) is not None and o.row_owner and o.row_owner not in t.columns
    ]
    vias = parents(metadata)
    bad += [
        f"{qualified(t)}.{o.rows_via} (rows_via: not a foreign key to a table with row_owner or rows_via)"
        for t in metadata.tables.values()
        if (o := ownership_of(t)) is not None and o.rows_via and qualified(t) not in vias
    ]
    return bad


def parents(metadata: MetaData) -> dict[str, tuple[str, str, str]]:
    """For each table with a valid rows_via: (its column, the row-owned parent table, the parent's column)."""
    found: dict[str, tuple[str, str, str]] = {}
    for table in metadata.tables.values():
        owner = ownership_of(table)
        if owner is None or not owner.rows_via or owner.rows_via not in table.columns:
            continue
        keys = list(table.columns[owner.rows_via].foreign_keys)
        if len(keys) != 1 or keys[0].constraint is None or len(keys[0].constraint.columns) != 1:
            continue
        parent = keys[0].column.table
        parent_owner = ownership_of(parent)
        if parent_owner is not None and parent_owner.row_scoped and parent is not table:
            found[qualified(table)] = (owner.rows_via, qualified(parent), keys[0].column.name)
    return found
