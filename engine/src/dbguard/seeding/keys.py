"""Keys of any type: row n of a seeded table has one key, known before the row is made.

A seed module numbers its rows (1, 2, 3, ... or, appending, from past the rows already there); the
key of row n is a function of the table, the run's --seed and n: n itself for an integer key, a
uuid made from (seed, table, n) for a uuid key, `<table>-<n>` for a text key. So `f.ref("users")`
can name a row of any table, in this process or in the one making a big table beside it, without
reading a single key back, and the same seed gives the same keys. Rows already in the database (a
factory adding to them) are referenced by their keys as read from the table.

Nothing here assumes an `id` column or an integer: a table's key is its primary key, whatever its
name and type; a table with no one-column primary key has no key to reference (`f.ref` says so).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from psycopg import sql
from sqlalchemy import Column, Table

from dbguard.guard.connect import Connection
from dbguard.seeding.api import derive_seed

LOW_48 = (1 << 48) - 1
MADE_AHEAD = 2_000_000  # up to this many rows, a table's keys are made once and picked from a list
VERSION_4 = 0x4 << 76
VARIANT_RFC = 0x2 << 62
MakeKey = Callable[[int], Any]


def qualified(name: str) -> sql.Identifier:
    """A table's name as the seed runner carries it (`users`, `kitchen.meal_plans`), quoted for SQL."""
    return sql.Identifier(*name.split(".", 1))


def split(name: str) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    return schema or "public", table


def key_column(table: Table) -> Column[Any] | None:
    """The table's one-column primary key, or None (no primary key, or a composite one)."""
    columns = list(table.primary_key.columns)
    return columns[0] if len(columns) == 1 else None


def _python_type(column: Column[Any]) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def uuid_keys(seed: int, table: str) -> MakeKey:
    """Row n's uuid: version-4 shaped, random-looking, the same for the same seed, table and n, distinct for every
    n < 2**48 (its last 48 bits are a bijection of n)."""
    base = derive_seed(seed, "uuid-key", table) << 64 | derive_seed(seed, "uuid-key-low", table)
    base = (base & ~LOW_48 & ~(0xF << 76) & ~(0x3 << 62)) | VERSION_4 | VARIANT_RFC
    salt = derive_seed(seed, "uuid-key-mix", table) & LOW_48
    return lambda n: uuid.UUID(int=base | (((n * 0x9E3779B97F4B) ^ salt) & LOW_48))  # a bijection of n: no repeats


def key_maker(table: Table, seed: int) -> tuple[str | None, MakeKey | None]:
    """(key column, row number -> key); (column, None) where the number is the key; (None, None): no key."""
    column = key_column(table)
    if column is None:
        return None, None
    kind = _python_type(column)
    if kind is int:
        return column.name, None
    if kind is uuid.UUID:
        return column.name, uuid_keys(seed, table.fullname)
    if kind is str:
        prefix = table.name
        return column.name, lambda n: f"{prefix}-{n}"
    return None, None


@dataclass(frozen=True)
class KeySpace:
    """The rows of one table a seed may reference: numbers start .. start+count-1, or the keys themselves."""

    table: str
    start: int
    count: int
    column: str | None = None  # the one-column primary key
    make: MakeKey | None = None  # row number -> key; None with a column: the number is the key
    values: Sequence[Any] | None = None  # keys read from the database (rows this run did not make)

    @property
    def size(self) -> int:
        return len(self.values) if self.values is not None else self.count

    def key(self, n: int) -> Any:
        if self.column is None:
            raise ValueError(f"table {self.table} has no one-column primary key: its rows have no key to reference")
        return n if self.make is None else self.make(n)

    @cached_property
    def keys(self) -> Sequence[Any] | None:
        """Every key in row order, where they are read or cheap to keep (a uuid is made once, not per reference)."""
        if self.values is not None:
            return self.values
        if self.make is None or self.column is None or self.count > MADE_AHEAD:
            return None
        make = self.make
        return [make(n) for n in range(self.start, self.start + self.count)]

    def nth(self, i: int) -> Any:
        """The key of the i-th row (from 0, wrapping around)."""
        keys = self.keys
        if keys is not None:
            if not keys:
                raise ValueError(f"table {self.table} has no rows to reference")
            return keys[i % len(keys)]
        return self.key(self.start + i % max(self.count, 1))

    def picker(self, rand: Callable[[], float]) -> Callable[[], Any]:
        """A function returning the key of a random row."""
        keys = self.keys
        if keys is not None:
            n = len(keys)
            if not n:
                raise ValueError(f"table {self.table} has no rows to reference")
            return lambda: keys[int(rand() * n)]
        if self.column is None:
            raise ValueError(f"table {self.table} has no one-column primary key: its rows have no key to reference")
        start, count, make = self.start, self.count, self.make
        if make is None:
            return lambda: start + int(rand() * count)
        return lambda: make(start + int(rand() * count))


def int_columns(table: Table) -> list[str]:
    """The integer columns of the primary key (an identity `id` beside a partition key, say)."""
    return [c.name for c in table.primary_key.columns if _python_type(c) is int]


def next_number(conn: Connection, table: Table) -> int:
    """The first row number past the rows already in `table`: past its count and its integer key columns' maximum."""
    measures = [sql.SQL("count(*)")] + [sql.SQL("max({})").format(sql.Identifier(c)) for c in int_columns(table)]
    row = conn.execute(
        sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(measures), qualified(table.fullname))
    ).fetchone()
    assert row is not None
    return 1 + max(int(v or 0) for v in row)


def space_for(table: Table, seed: int, start: int, count: int) -> KeySpace:
    column, make = key_maker(table, seed)
    return KeySpace(table.fullname, start, count, column, make)


def existing_space(conn: Connection, table: Table) -> KeySpace:
    """The keys of the rows already in `table`, in key order (the first MADE_AHEAD of them): what a seed or a
    factory references in a table it does not fill."""
    column = key_column(table)
    if column is None:
        return KeySpace(table.fullname, 1, 0)
    rows = conn.execute(
        sql.SQL("SELECT {0} FROM {1} ORDER BY {0} LIMIT {2}").format(
            sql.Identifier(column.name), qualified(table.fullname), sql.Literal(MADE_AHEAD)
        )
    ).fetchall()
    return KeySpace(table.fullname, 1, len(rows), column.name, None, tuple(r[0] for r in rows))
