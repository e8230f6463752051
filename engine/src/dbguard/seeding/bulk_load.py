"""pg_restore's order for bulk loads into empty tables: rows first, then indexes, then foreign keys.

Checking a foreign key row by row, and growing an index row by row, cost far more than one
index build and one validating join at the end. Everything happens in the caller's transaction,
so a failure leaves the schema exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from dbguard.guard.connect import Connection


@dataclass
class DeferredSchema:
    """What was dropped, as the statements that rebuild it: each index once its table is loaded, each
    foreign key once both of its tables are."""

    indexes: dict[str, list[sql.SQL | sql.Composed]] = field(default_factory=dict)
    keys: list[tuple[str, str, sql.SQL | sql.Composed]] = field(default_factory=list)
    truncated: bool = False  # the tables were truncated in this transaction: COPY ... FREEZE is allowed

    def ready(self, loaded: set[str]) -> list[tuple[str, sql.SQL | sql.Composed]]:
        """Pop the (table, statement) pairs whose tables are all loaded now."""
        out: list[tuple[str, sql.SQL | sql.Composed]] = []
        for table in sorted(loaded & set(self.indexes)):
            out += [(table, statement) for statement in self.indexes.pop(table)]
        waiting = []
        for table, referenced, statement in self.keys:
            if table in loaded and referenced in loaded:
                out.append((table, statement))
            else:
                waiting.append((table, referenced, statement))
        self.keys = waiting
        return out


def defer_indexes_and_keys(conn: Connection, tables: list[str]) -> DeferredSchema:
    """Drop the tables' foreign keys and plain indexes (primary and unique keys stay)."""
    fks = conn.execute(
        "SELECT conrelid::regclass::text, confrelid::regclass::text, conname, pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY(%s::regclass[]) ORDER BY conrelid, conname",
        (tables,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT indrelid::regclass::text, indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index i "
        "WHERE indrelid = ANY(%s::regclass[]) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1, 2",
        (tables,),
    ).fetchall()
    deferred = DeferredSchema({t: [] for t in tables})
    for table, name, definition in indexes:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        deferred.indexes[table].append(sql.SQL(definition))
    for table, referenced, name, definition in fks:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name)))
        add = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(table), sql.Identifier(name))
        deferred.keys.append((table, referenced, add + sql.SQL(definition)))
    try:
        with conn.transaction():
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, tables))))
        deferred.truncated = True
    except psycopg.errors.FeatureNotSupported:  # another table still references one of these
        deferred.truncated = False
    return deferred
