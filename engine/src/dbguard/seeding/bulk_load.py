"""pg_restore's order for bulk loads into empty tables: rows first, then indexes, then foreign keys.

Checking a foreign key row by row, and growing an index row by row, cost far more than one
index build and one validating join at the end. Everything happens in the caller's transaction,
so a failure leaves the schema exactly as it was.

Appending to tables that already hold rows, only the foreign keys that point forward in the load
order wait (a cycle: users.favorite_recipe_id -> recipes, loaded after users): a deferrable one is
deferred and checked once its table is loaded, any other is dropped and added back then.

Tables are named as the runner names them (`users`, `kitchen.meal_plans`): the catalog is asked for
schema and name apart, and every statement quotes both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from dbguard.guard.connect import Connection
from dbguard.seeding.keys import qualified

Statement = sql.SQL | sql.Composed


def table_name(namespace: str = "n", relation: str = "c") -> str:
    """SQL for a table's name as the runner names tables: `users`, or `kitchen.meal_plans` outside public."""
    schema, name = f"{namespace}.nspname", f"{relation}.relname"
    return f"CASE WHEN {schema} = 'public' THEN {name} ELSE {schema} || '.' || {name} END"


TABLE_NAME = table_name()


@dataclass
class DeferredSchema:
    """What was dropped, as the statements that rebuild it: each index once its table is loaded, each
    foreign key once both of its tables are."""

    indexes: dict[str, list[Statement]] = field(default_factory=dict)
    keys: list[tuple[str, str, Statement]] = field(default_factory=list)
    truncated: bool = False  # the tables were truncated in this transaction: COPY ... FREEZE is allowed
    partitioned: set[str] = field(default_factory=set)  # no COPY ... FREEZE into these

    def freeze(self, table: str) -> bool:
        return self.truncated and table not in self.partitioned

    def ready(self, loaded: set[str]) -> list[tuple[str, Statement]]:
        """Pop the (table, statement) pairs whose tables are all loaded now."""
        out: list[tuple[str, Statement]] = []
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


def _foreign_keys(conn: Connection, tables: list[str]) -> list[tuple[str, str, str, str, bool]]:
    """(table, referenced table, constraint, definition, deferrable) of each foreign key of `tables`."""
    rows = conn.execute(
        f"SELECT {TABLE_NAME}, {table_name('rn', 'rc')}, k.conname, "
        "pg_get_constraintdef(k.oid), k.condeferrable FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_class rc ON rc.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace "
        "WHERE k.contype = 'f' AND k.conparentid = 0 ORDER BY 1, 3"
    ).fetchall()
    wanted = set(tables)
    return [(str(t), str(r), str(name), str(d), bool(deferrable)) for t, r, name, d, deferrable in rows if t in wanted]


def _drop_key(
    conn: Connection, deferred: DeferredSchema, table: str, referenced: str, name: str, definition: str
) -> None:
    conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(qualified(table), sql.Identifier(name)))
    add = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(qualified(table), sql.Identifier(name))
    deferred.keys.append((table, referenced, add + sql.SQL(definition)))


def _partitioned(conn: Connection, tables: list[str]) -> set[str]:
    rows = conn.execute(
        f"SELECT {TABLE_NAME} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'"
    ).fetchall()
    return {str(r[0]) for r in rows} & set(tables)


def defer_indexes_and_keys(conn: Connection, tables: list[str]) -> DeferredSchema:
    """Drop the tables' foreign keys and plain indexes (primary and unique keys stay)."""
    indexes = conn.execute(
        f"SELECT {TABLE_NAME}, ni.nspname, ci.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_namespace ni ON ni.oid = ci.relnamespace "
        "WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
        "AND NOT c.relispartition ORDER BY 1, 3"
    ).fetchall()
    deferred = DeferredSchema({t: [] for t in tables}, partitioned=_partitioned(conn, tables))
    for table, schema, name, definition in indexes:
        if table not in deferred.indexes:
            continue
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
        # a partitioned table's index is defined ON ONLY the parent; built again, it covers the partitions too
        deferred.indexes[table].append(sql.SQL(definition.replace(" ON ONLY ", " ON ", 1)))
    for table, referenced, name, definition, _ in _foreign_keys(conn, tables):
        _drop_key(conn, deferred, table, referenced, name, definition)
    try:
        with conn.transaction():
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(qualified, tables))))
        deferred.truncated = True
    except psycopg.errors.FeatureNotSupported:  # another table still references one of these
        deferred.truncated = False
    return deferred


def defer_forward_keys(conn: Connection, order: list[str]) -> DeferredSchema:
    """Appending: let each foreign key that points at a table loaded later (a cycle) wait until that table is
    loaded. A deferrable key is deferred, then made immediate (checked) there; another is dropped and added back."""
    position = {t: i for i, t in enumerate(order)}
    deferred = DeferredSchema(partitioned=_partitioned(conn, order))
    for table, referenced, name, definition, deferrable in _foreign_keys(conn, order):
        if position.get(referenced, -1) <= position[table]:
            continue  # its table is loaded first (or it is the same table: checked at the end of the COPY)
        if deferrable:
            schema = table.rpartition(".")[0] or "public"
            conn.execute(sql.SQL("SET CONSTRAINTS {} DEFERRED").format(sql.Identifier(schema, name)))
            check = sql.SQL("SET CONSTRAINTS {} IMMEDIATE").format(sql.Identifier(schema, name))
            deferred.keys.append((table, referenced, check))
        else:
            _drop_key(conn, deferred, table, referenced, name, definition)
    return deferred
