"""The foreign-key graph of a live database, and which of its tables hold one user's data.

What must always hold: the graph is read from the database's own catalog (not from the models), so a
slice is closed under every foreign key the server enforces. A user's slice is
- their row in the user table (`[tool.dbguard] user_table`, matched on `user_key`);
- owned rows: every row that points at an owned row through a foreign key, walked to a fixed point
  (cycles and self-references included); a table whose ownership entry names a `row_owner` column
  owns exactly the rows whose `row_owner` is the user's key; other rows of the user table are never
  owned (they are other people);
- reference rows: every row an owned or reference row points at that is not owned, walked upwards
  only. They are matched in the target by a natural key (a UNIQUE column set other than the primary
  key) rather than copied blindly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from psycopg import sql

from dbguard.errors import Refused
from dbguard.guard.connect import Connection
from dbguard.refresh.rules import LiveColumn, LiveTable, live_schema
from dbguard.settings import Settings

SKIPPED = {"public.alembic_version"}
NOT_APP = ("information_schema", "dbguard")  # besides pg_*: the catalog's and the tools' own schemas
DEFAULT_USER_TABLE = "users"
DEFAULT_USER_KEY = "email"


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str  # the referencing table, schema.table
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    nullable: bool  # every referencing column may be NULL


@dataclass
class TableInfo:
    live: LiveTable
    primary_key: tuple[str, ...] = ()
    uniques: list[tuple[str, ...]] = field(default_factory=list)  # UNIQUE sets other than the primary key
    not_null: set[str] = field(default_factory=set)
    generated: dict[str, str] = field(default_factory=dict)  # column -> its sequence, or "uuid"
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    partitioned: bool = False

    @property
    def source(self) -> sql.Composed:
        """`<table> t` to select from: ONLY the table, except a partitioned one (its rows are in its partitions)."""
        only = sql.SQL("") if self.partitioned else sql.SQL("ONLY ")
        return sql.SQL("{}{}.{} t").format(only, sql.Identifier(self.live.schema), sql.Identifier(self.live.name))

    @property
    def key_maker(self) -> tuple[str, str] | None:
        """The primary key's column that a new key can be made for, and how: its sequence, or "uuid"."""
        for column in self.primary_key:
            if column in self.generated:
                return column, self.generated[column]
        if len(self.primary_key) == 1 and self.column(self.primary_key[0]).base_type == "uuid":
            return self.primary_key[0], "uuid"  # uuids made by the client: any fresh one will do
        return None

    @property
    def name(self) -> str:
        return self.live.qualified

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.live.columns)

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.columns)}

    def column(self, name: str) -> LiveColumn:
        return self.live.columns[self._positions[name]]

    def index(self, name: str) -> int:
        return self._positions[name]

    def at(self, columns: tuple[str, ...]) -> list[int]:
        return [self._positions[c] for c in columns]


@dataclass
class Graph:
    tables: dict[str, TableInfo]

    def table(self, name: str) -> TableInfo:
        return self.tables[name]

    def referencing(self, parent: str) -> list[ForeignKey]:
        return [fk for t in self.tables.values() for fk in t.foreign_keys if fk.parent == parent]

    def referenced_sets(self, parent: str) -> list[tuple[str, ...]]:
        """The column sets of `parent` that foreign keys point at (its primary key first)."""
        sets = [self.tables[parent].primary_key] if self.tables[parent].primary_key else []
        for fk in self.referencing(parent):
            if fk.parent_columns not in sets:
                sets.append(fk.parent_columns)
        return sets


def qualify(name: str) -> str:
    return name if "." in name else f"public.{name}"


def app_schemas(conn: Connection) -> tuple[str, ...]:
    """Every schema but the catalog's and the tools' own."""
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> ALL(%s) ORDER BY 1",
        (list(NOT_APP),),
    ).fetchall()
    return tuple(str(r[0]) for r in rows)


def read_graph(conn: Connection) -> Graph:
    """Tables, keys, unique sets, key generators and foreign keys of the app's schemas, from the catalog."""
    schemas = app_schemas(conn)
    tables = {t.qualified: TableInfo(t) for t in live_schema(conn, schemas) if t.qualified not in SKIPPED}
    for row in conn.execute(
        "SELECT format('%%s.%%s', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'p' AND n.nspname = ANY(%s)",
        (list(schemas),),
    ).fetchall():
        if str(row[0]) in tables:
            tables[str(row[0])].partitioned = True
    rows = conn.execute(
        """
        SELECT format('%%s.%%s', n.nspname, c.relname), a.attname, a.attnotnull, a.attidentity,
               pg_get_serial_sequence(format('%%I.%%I', n.nspname, c.relname), a.attname),
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (list(schemas),),
    ).fetchall()
    for table, column, not_null, _identity, sequence, default in rows:
        info = tables.get(str(table))
        if info is None:
            continue
        if not_null:
            info.not_null.add(str(column))
        if sequence:
            info.generated[str(column)] = str(sequence)
        elif default and ("gen_random_uuid" in str(default) or "uuid_generate" in str(default)):
            info.generated[str(column)] = "uuid"
    constraints = conn.execute(
        """
        SELECT con.conname, con.contype, format('%%s.%%s', n.nspname, c.relname),
               ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
                     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i),
               format('%%s.%%s', fn.nspname, fc.relname),
               ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, i)
                     JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i)
        FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_class fc ON fc.oid = con.confrelid LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
        WHERE con.contype IN ('p', 'u', 'f') AND n.nspname = ANY(%s)
        ORDER BY con.contype DESC, con.conname
        """,
        (list(schemas),),
    ).fetchall()
    for name, kind, table, columns, parent, parent_columns in constraints:
        info = tables.get(str(table))
        if info is None:
            continue
        cols = tuple(str(c) for c in columns)
        if kind == "p":
            info.primary_key = cols
        elif kind == "u":
            info.uniques.append(cols)
        elif str(parent) in tables:
            nullable = all(c not in info.not_null for c in cols)
            info.foreign_keys.append(
                ForeignKey(str(name), str(table), cols, str(parent), tuple(str(c) for c in parent_columns), nullable)
            )
    for info in tables.values():
        info.uniques = [u for u in info.uniques if u != info.primary_key]
    return Graph(tables)


@dataclass(frozen=True)
class UserTable:
    """Where users live and how a user is named on the command line (`[tool.dbguard]` user_table, user_key)."""

    table: str
    key: str

    @classmethod
    def of(cls, settings: Settings) -> UserTable:
        declared = settings.project.declared
        return cls(
            qualify(str(declared.get("user_table") or DEFAULT_USER_TABLE)),
            str(declared.get("user_key") or DEFAULT_USER_KEY),
        )

    def check(self, graph: Graph) -> TableInfo:
        """The user table as the graph has it; refused when it is missing or `key` is not a unique column."""
        fix = "set user_table and user_key in [tool.dbguard] of pyproject.toml (a table and a UNIQUE column)"
        info = graph.tables.get(self.table)
        if info is None:
            raise Refused(f"the user table {self.table} is not in the database", fix)
        if self.key not in info.columns or ((self.key,) not in info.uniques and info.primary_key != (self.key,)):
            raise Refused(f"{self.table}.{self.key} is not a UNIQUE column, so it cannot name one user", fix)
        if len(info.primary_key) != 1:
            raise Refused(f"{self.table} needs a one-column primary key to own rows", fix)
        return info


def row_owners(settings: Settings) -> dict[str, str]:
    """Tables whose ownership entry names a row_owner column (dbguard.ownership), where the app declares them."""
    try:
        from dbguard.ownership import ownership_of  # noqa: PLC0415 -- optional: the matrix, where it exists
    except ImportError:
        return {}
    found = {}
    for table in settings.project.metadata.tables.values():
        entry = ownership_of(table)
        if entry is not None and entry.row_owner:
            found[f"{table.schema or 'public'}.{table.name}"] = entry.row_owner
    return found
