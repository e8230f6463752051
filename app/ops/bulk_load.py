"""pg_restore's order for bulk loads into empty tables: rows first, then indexes, then foreign keys.

Checking a foreign key row by row, and growing an index row by row, cost far more than one
index build and one validating join at the end. Everything happens in the caller's transaction,
so a failure leaves the schema exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from app.ops.connect import Connection


@contextmanager
def deferred_indexes_and_keys(conn: Connection, tables: list[str]) -> Iterator[bool]:
    """Drop the tables' foreign keys and plain indexes, yield, then rebuild them (validating every key).

    Yields True when the tables were also truncated in this transaction, which allows COPY ... FREEZE.
    """
    fks = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid = ANY(%s::regclass[]) ORDER BY conrelid, conname",
        (tables,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index i "
        "WHERE indrelid = ANY(%s::regclass[]) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1",
        (tables,),
    ).fetchall()
    for table, name, _ in fks:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name)))
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    truncated = True
    try:
        with conn.transaction():
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
    except psycopg.errors.FeatureNotSupported:  # another table still references one of these
        truncated = False
    yield truncated
    for _, definition in indexes:
        conn.execute(definition)
    for table, name, definition in fks:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(table), sql.Identifier(name))
            + sql.SQL(definition)
        )
