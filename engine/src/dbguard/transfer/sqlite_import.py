"""db.import-sqlite: an app's SQLite data copied into the tier's PostgreSQL schema at head, in one transaction.

What always holds: the tier's tables receive every row of the file or none of them (with --skip-bad: every
row that fits, and the report lists each one left out, with its row id, column and reason). Nothing is
written before the guard, the head check, the empty-table check and (STG, PROD) the backup have passed.

How: tables are matched by name, columns by name (both case-insensitive); each value goes through
`sqlite_types` (the column's PostgreSQL type decides), primary and unique keys and foreign keys to tables
already loaded (or not imported) are checked here, row by row, and the rows stream into PostgreSQL through
COPY, one table after another in foreign-key order. Whatever PostgreSQL itself refuses (a CHECK, a domain)
is found by the line its error names: that row is reported, the table's COPY is rolled back to its
savepoint and run again without it. Foreign keys in a cycle of tables are dropped for the load and added
back (and so checked by the server) before the commit. Identity and serial sequences end past the imported
ids.
"""

from __future__ import annotations

import re
import sqlite3
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from dbguard.cli.console import Output, add_row, new_table
from dbguard.cli.runner import TaskContext
from dbguard.errors import Failed, Refused
from dbguard.failpoints import failpoint
from dbguard.guard.connect import Connection
from dbguard.guard.locks import exclusive
from dbguard.guard.tiers import Tier
from dbguard.migrations.history import current_revision, pending_revisions
from dbguard.migrations.schema import APP_SCHEMAS, other_schemas
from dbguard.seeding.copy_types import binary_capable
from dbguard.transfer import locking
from dbguard.transfer.sqlite_types import INTEGER_NAMES, Misfit, NotUtf8, PgColumn, converter_for

SKIPPED_TABLES = frozenset({"alembic_version"})  # each database's own migration bookkeeping
SERVER_RETRIES = 20  # rows PostgreSQL itself may refuse in one table before the import stops looking
SHOWN_MISFITS = 50
COPY_LINE = re.compile(r"COPY [^,]+, line (\d+)")


def _text_factory(data: bytes) -> str | bytes:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return NotUtf8(data)


# -- the two sides ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str  # qualified child, as `PgTable.qualified`
    columns: tuple[str, ...]
    parent: str  # qualified parent
    parent_columns: tuple[str, ...]
    deferrable: bool
    definition: str  # pg_get_constraintdef: what adds it back


@dataclass
class PgTable:
    schema: str
    name: str
    columns: list[PgColumn] = field(default_factory=list)
    generated: set[str] = field(default_factory=set)  # columns PostgreSQL computes: never written
    defaults: set[str] = field(default_factory=set)  # columns with a default or an identity
    keys: list[tuple[str, ...]] = field(default_factory=list)  # primary and unique keys
    foreign_keys: list[ForeignKey] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return self.name if self.schema == "public" else f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


def read_pg_tables(conn: Connection, schemas: list[str]) -> dict[str, PgTable]:
    """The app schemas' tables (a partitioned table as one, never its partitions), by qualified name."""
    tables: dict[int, PgTable] = {}
    for oid, schema, name in conn.execute(
        "SELECT c.oid::int, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)",
        (schemas,),
    ):
        if name not in SKIPPED_TABLES:
            tables[oid] = PgTable(schema, name)
    names: dict[tuple[int, int], str] = {}
    for row in conn.execute(
        "SELECT a.attrelid::int, a.attnum, a.attname, a.atttypid::int, "
        "CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END, a.attnotnull OR t.typnotnull, "
        "a.atthasdef OR a.attidentity <> '', a.attgenerated <> '', "
        "CASE WHEN b.typtype = 'e' THEN 'enum' WHEN b.typcategory = 'A' THEN 'array' ELSE b.typname END, "
        "format_type(a.atttypid, a.atttypmod), "
        "ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = b.oid ORDER BY e.enumsortorder) "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END "
        "WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum",
        (list(tables),),
    ):
        relid, attnum, name, oid, typmod, not_null, has_default, generated, base, formatted, labels = row
        table = tables[relid]
        names[relid, attnum] = name
        if generated:
            table.generated.add(name)
            continue
        if has_default:
            table.defaults.add(name)
        label = f"enum {formatted}" if base == "enum" else INTEGER_NAMES.get(str(base), str(formatted))
        table.columns.append(PgColumn(name, oid, base, label, typmod, not_null, tuple(labels or ())))
    for relid, conname, kind, keys, frelid, fkeys, deferrable, definition in conn.execute(
        "SELECT conrelid::int, conname, contype, conkey::int[], confrelid::int, confkey::int[], condeferrable, "
        "pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = ANY(%s) AND contype IN ('p', 'u', 'f')",
        (list(tables),),
    ):
        table = tables[relid]
        columns = tuple(names[relid, k] for k in keys)
        if kind in ("p", "u"):
            table.keys.append(columns)
        elif frelid in tables:
            parent = tables[frelid]
            table.foreign_keys.append(
                ForeignKey(
                    conname,
                    table.qualified,
                    columns,
                    parent.qualified,
                    tuple(names[frelid, k] for k in fkeys),
                    deferrable,
                    definition,
                )
            )
    return {t.qualified: t for t in tables.values()}


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class SqliteTable:
    name: str
    columns: tuple[str, ...]
    rows: int
    has_rowid: bool


def open_sqlite(path: Path) -> sqlite3.Connection:
    """The file, opened read-only; Refused when it is missing or not a SQLite database."""
    if not path.is_file():
        raise Refused(f"no SQLite file at {path}", "pass --from the app's .db file (a path that exists)")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise Refused(f"{path} is not a SQLite database ({exc})", "pass --from the app's .db file") from None
    return conn


def read_sqlite_tables(conn: sqlite3.Connection) -> list[SqliteTable]:
    tables = []
    names = [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name"
        )
    ]
    for name in names:
        columns = tuple(str(r[1]) for r in conn.execute(f"PRAGMA table_info({quoted(name)})"))
        rows = int(conn.execute(f"SELECT count(*) FROM {quoted(name)}").fetchone()[0])
        try:
            conn.execute(f"SELECT rowid FROM {quoted(name)} LIMIT 0")
            has_rowid = True
        except sqlite3.OperationalError:  # a WITHOUT ROWID table
            has_rowid = False
        tables.append(SqliteTable(name, columns, rows, has_rowid))
    return tables


# -- the plan -------------------------------------------------------------------------------------------
@dataclass
class TableJob:
    source: SqliteTable
    target: PgTable
    pairs: list[tuple[str, PgColumn]]  # SQLite column -> PostgreSQL column, in SQLite's order
    left_out: list[str]  # SQLite columns that are not imported, with why
    checked_keys: list[ForeignKey] = field(default_factory=list)  # parents loaded before, or not imported
    imported: int = 0
    refused: int = 0
    seconds: float = 0.0
    sequences: list[str] = field(default_factory=list)


@dataclass
class Plan:
    jobs: list[TableJob]  # in load order
    unmatched: list[str]  # SQLite tables with no PostgreSQL table
    untouched: list[str]  # PostgreSQL tables with no SQLite table
    dropped: list[ForeignKey]  # foreign keys in a cycle: dropped for the load, added back before the commit
    wanted: dict[str, set[tuple[str, ...]]]  # parent -> the column tuples its children's keys need


def _by_lower_name(names: list[str], side: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        if name.lower() in found:
            raise Refused(
                f"the {side} has two tables whose names differ only by case ({found[name.lower()]}, {name})",
                "rename one of them, then run the import again",
            )
        found[name.lower()] = name
    return found


def make_plan(sqlite_tables: list[SqliteTable], pg_tables: dict[str, PgTable]) -> Plan:
    pg_by_name = _by_lower_name(list(pg_tables), "PostgreSQL schema")
    bare: dict[str, list[str]] = {}
    for qualified in pg_tables:  # kitchen.meal_plans is also found as meal_plans (SQLite has no schemas)
        bare.setdefault(qualified.rpartition(".")[2].lower(), []).append(qualified)
    pg_by_name |= {name: found[0] for name, found in bare.items() if len(found) == 1 and name not in pg_by_name}
    sqlite_by_name = _by_lower_name([t.name for t in sqlite_tables], "SQLite file")
    jobs: dict[str, TableJob] = {}
    unmatched = []
    for source in sqlite_tables:
        if source.name.lower() in SKIPPED_TABLES:
            continue
        match = pg_by_name.get(source.name.lower())
        if match is None:
            unmatched.append(source.name)
            continue
        target = pg_tables[match]
        by_name = {c.name.lower(): c for c in target.columns}
        generated = {g.lower() for g in target.generated}
        pairs, left_out = [], []
        for column in source.columns:
            if column.lower() in by_name:
                pairs.append((column, by_name[column.lower()]))
            else:
                why = "computed by PostgreSQL" if column.lower() in generated else "no such PostgreSQL column"
                left_out.append(f"{column} ({why})")
        given = {pg.name for _, pg in pairs}
        lacking = [c.name for c in target.columns if c.not_null and c.name not in given | target.defaults]
        if lacking and source.rows:
            raise Refused(
                f"SQLite table {source.name} has no column {', '.join(lacking)}, which {target.qualified} needs "
                "(NOT NULL, no default)",
                "add the column to the SQLite file, or give it a default in a migration",
            )
        jobs[match] = TableJob(source, target, pairs, left_out)
    untouched = sorted(q for q in pg_tables if q not in jobs and q.lower() not in sqlite_by_name)
    order, dropped = _load_order(jobs)
    dropped_names = {(fk.table, fk.name) for fk in dropped}
    wanted: dict[str, set[tuple[str, ...]]] = {}
    loaded: set[str] = set()
    for qualified in order:
        job = jobs[qualified]
        for fk in job.target.foreign_keys:
            parent_first = fk.parent in loaded or fk.parent not in jobs
            if parent_first and (fk.table, fk.name) not in dropped_names and fk.parent != fk.table:
                job.checked_keys.append(fk)
                wanted.setdefault(fk.parent, set()).add(fk.parent_columns)
        loaded.add(qualified)
    return Plan([jobs[q] for q in order], unmatched, untouched, dropped, wanted)


def _load_order(jobs: dict[str, TableJob]) -> tuple[list[str], list[ForeignKey]]:
    """Parents before children; where tables form a cycle, its foreign keys that cannot be deferred are dropped
    for the load (and added back, so checked, before the commit)."""
    needs = {
        q: {fk.parent for fk in job.target.foreign_keys if fk.parent in jobs and fk.parent != q}
        for q, job in jobs.items()
    }
    order: list[str] = []
    dropped: list[ForeignKey] = []
    remaining = set(jobs)
    while remaining:
        ready = sorted(q for q in remaining if not needs[q] & remaining)
        if not ready:  # a cycle: break the foreign keys between tables that reach each other, and only those
            reach = {q: _reachable(q, needs, remaining) for q in remaining}
            for q in sorted(remaining):
                cycle = {p for p in reach[q] if q in reach[p]}
                for fk in jobs[q].target.foreign_keys:
                    if fk.parent in cycle and fk.parent != q and not fk.deferrable:
                        dropped.append(fk)
                needs[q] -= cycle
            continue
        order += ready
        remaining -= set(ready)
    return order, dropped


def _reachable(start: str, needs: dict[str, set[str]], among: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for parent in needs[todo.pop()] & among:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


# -- the load -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    table: str
    row: str
    column: str
    reason: str


@dataclass
class Load:
    """One run's state: the rows refused so far and the keys tables published for their children."""

    sqlite: sqlite3.Connection
    pg: Connection
    write: bool  # False for --dry-run: values and keys are checked, nothing is sent
    refusals: list[Refusal] = field(default_factory=list)
    key_sets: dict[tuple[str, tuple[str, ...]], set[Any]] = field(default_factory=dict)  # one column: the value
    not_utf8: set[str] = field(default_factory=set)  # SQLite tables holding text that is not UTF-8


def _hashable(value: Any) -> Any:
    return repr(value.obj) if isinstance(value, Json | Jsonb) else value


def load_existing_keys(load: Load, plan: Plan, jobs: set[str]) -> None:
    """The keys children may reference in parent tables the file does not fill: read from PostgreSQL."""
    for parent, column_sets in plan.wanted.items():
        if parent in jobs:
            continue
        schema, _, name = parent.rpartition(".")
        for columns in column_sets:
            query = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schema or "public", name)
            )
            rows = load.pg.execute(query)
            load.key_sets[parent, columns] = {r[0] for r in rows} if len(columns) == 1 else {tuple(r) for r in rows}


def _rows(load: Load, job: TableJob) -> Iterator[tuple[Any, ...]]:
    """The table's rows (its row number first). Text is read by SQLite's own decoder; a table holding text
    that is not UTF-8 is read again (`_Reread`) with one that hands such text on as `NotUtf8`."""
    source = job.source
    columns = ", ".join(quoted(c) for c, _ in job.pairs) or "NULL"
    key = "rowid" if source.has_rowid else "NULL"
    order = " ORDER BY rowid" if source.has_rowid else ""
    load.sqlite.text_factory = _text_factory if source.name in load.not_utf8 else str
    with closing(load.sqlite.execute(f"SELECT {key}, {columns} FROM {quoted(source.name)}{order}")) as cursor:
        try:
            yield from cursor
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc) or source.name in load.not_utf8:
                raise
            load.not_utf8.add(source.name)
            raise _Reread from None


class _Reread(Exception):
    """The table holds text that is not UTF-8: its attempt starts again, reading text value by value."""


def load_table(load: Load, job: TableJob, plan: Plan, advance: Any) -> None:
    """One table: converted, checked, streamed through COPY (under a savepoint, again without any row the
    server names as refusing); its keys published for the tables after it."""
    excluded: set[int] = set()
    began = time.perf_counter()
    while True:
        try:
            outcome = _attempt(load, job, plan, excluded, advance)
        except _Reread:
            continue
        except _ServerRefused as exc:
            load.refusals.append(exc.refusal)
            job.refused += 1
            if exc.row_number is None or len(excluded) >= SERVER_RETRIES:
                if exc.row_number is not None:
                    load.refusals.append(
                        Refusal(job.source.name, "-", "", f"stopped after {SERVER_RETRIES} rows PostgreSQL refused")
                    )
                raise _Stop from None
            excluded.add(exc.row_number)
            continue
        break
    imported, refused, keys = outcome
    job.imported, job.refused = imported, job.refused + refused
    load.key_sets.update(keys)
    job.seconds = time.perf_counter() - began


class _Stop(Exception):
    """A table PostgreSQL refused as a whole (no row to leave out): the import cannot go on."""


class _ServerRefused(Exception):
    def __init__(self, refusal: Refusal, row_number: int | None) -> None:
        super().__init__(refusal.reason)
        self.refusal, self.row_number = refusal, row_number


def _key_getter(at: list[int], columns: list[PgColumn]) -> Callable[[list[Any]], Any]:
    """A row's key: the value itself for one column, a tuple for several (as `load_existing_keys` reads them)."""
    get = itemgetter(*at)
    if any(columns[i].base in ("json", "jsonb") for i in at):
        return lambda row: _hashable(get(row)) if len(at) == 1 else tuple(map(_hashable, get(row)))
    return get


def _null_in(at: list[int]) -> Callable[[Any], bool]:
    """Whether a key (as `_key_getter` returns it) has a NULL: such a key is not checked, as in PostgreSQL."""
    if len(at) == 1:
        return lambda key: key is None
    return lambda key: None in key


def _attempt(
    load: Load, job: TableJob, plan: Plan, excluded: set[int], advance: Any
) -> tuple[int, int, dict[tuple[str, tuple[str, ...]], set[Any]]]:
    table = job.source.name
    pg_columns = [pg for _, pg in job.pairs]
    checked = [converter_for(pg) for pg in pg_columns]
    bare = [converter_for(pg, nullable=True) for pg in pg_columns]  # NULL handled inline on the fast path
    not_null = [i for i, pg in enumerate(pg_columns) if pg.not_null]
    null_in_required = _null_in(not_null) if not_null else (lambda _: False)
    required = itemgetter(*not_null) if not_null else (lambda _: ())
    position = {pg.name: i for i, pg in enumerate(pg_columns)}
    sqlite_name = {pg.name: name for name, pg in job.pairs}

    def getter(columns: tuple[str, ...]) -> tuple[Callable[[list[Any]], Any], Callable[[Any], bool]]:
        at = [position[c] for c in columns]
        return _key_getter(at, pg_columns), _null_in(at)

    unique = [(k, *getter(k), set[Any]()) for k in job.target.keys if all(c in position for c in k)]
    parents = [
        (fk, *getter(fk.columns), load.key_sets.get((fk.parent, fk.parent_columns), set()))
        for fk in job.checked_keys
        if all(c in position for c in fk.columns)
    ]
    for fk in job.target.foreign_keys:  # a table referencing itself: the keys its own rows carry
        if fk.parent == fk.table and all(c in position for c in (*fk.columns, *fk.parent_columns)):
            parents.append((fk, *getter(fk.columns), _own_keys(load, job, fk, position, excluded)))
    keys: dict[tuple[str, tuple[str, ...]], set[Any]] = {}
    published = []
    for cols in plan.wanted.get(job.target.qualified, set()):
        if all(c in position for c in cols):
            found: set[Any] = set()
            keys[job.target.qualified, cols] = found
            published.append((getter(cols)[0], found))
    refusals: list[Refusal] = []
    lines = array("q")  # COPY's line number -> the row's number in the file (rowid, or its place in the scan)
    imported = 0
    names = [pg.name for pg in pg_columns]

    def misfits(number: int, values: tuple[Any, ...]) -> None:
        for i, value in enumerate(values):
            try:
                checked[i](value)
            except Misfit as misfit:
                refusals.append(Refusal(table, str(number), job.pairs[i][0], misfit.reason))

    def check(number: int, values: tuple[Any, ...]) -> list[Any] | None:
        try:
            row = [None if v is None else c(v) for c, v in zip(bare, values, strict=True)]
        except Misfit:
            misfits(number, values)
            return None
        if null_in_required(required(row)):
            misfits(number, values)
            return None
        for columns, get, null_in, found in unique:
            key = get(row)
            if not null_in(key) and key in found:
                reason = f"a second row with key {key_text(key)}"
                refusals.append(Refusal(table, str(number), ", ".join(columns), reason))
                return None
        bad = False
        for fk, get, null_in, present in parents:
            key = get(row)
            if not null_in(key) and key not in present:
                reason = f"{key_text(key)} is not a key of {fk.parent} ({', '.join(fk.parent_columns)})"
                refusals.append(Refusal(table, str(number), ", ".join(sqlite_name[c] for c in fk.columns), reason))
                bad = True
        if bad:
            return None
        for _, get, null_in, found in unique:
            key = get(row)
            if not null_in(key):
                found.add(key)
        for get, found in published:
            found.add(get(row))
        return row

    def accepted() -> Iterator[list[Any]]:
        nonlocal imported
        for count, (rowid, *values) in enumerate(_rows(load, job), 1):
            number = rowid if rowid is not None else count
            if number in excluded:
                continue
            row = check(number, tuple(values))
            if count % 10_000 == 0:
                advance(10_000)
            if row is not None:
                lines.append(number)
                imported += 1
                yield row

    if not load.write:
        for _ in accepted():
            pass
    else:
        oids = [pg.oid for pg in pg_columns]
        binary = binary_capable(oids)
        statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            job.target.ident,
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL(" (FORMAT BINARY)" if binary else ""),
        )
        try:
            with load.pg.transaction(), load.pg.cursor() as cur, cur.copy(statement) as copy:
                if binary:
                    copy.set_types(oids)
                for row in accepted():
                    copy.write_row(row)
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
            raise  # the import's time limits (transfer/locking.py), not a row that does not fit
        except psycopg.Error as exc:
            raise _server_refusal(exc, table, lines) from None
    load.refusals.extend(refusals)
    return imported, len({r.row for r in refusals}), keys


def _own_keys(load: Load, job: TableJob, fk: ForeignKey, position: dict[str, int], excluded: set[int]) -> set[Any]:
    """The values of `fk`'s referenced columns in the table's own rows (those whose values fit)."""
    at = [position[c] for c in fk.parent_columns]
    convert = [converter_for(job.pairs[i][1]) for i in at]
    found = set()
    for count, (rowid, *values) in enumerate(_rows(load, job), 1):
        if (rowid if rowid is not None else count) in excluded:
            continue
        try:
            key = tuple(c(values[i]) for c, i in zip(convert, at, strict=True))
        except Misfit:
            continue
        found.add(key[0] if len(key) == 1 else key)
    return found


def key_text(key: Any) -> str:
    return ", ".join(str(getattr(v, "obj", v)) for v in (key if isinstance(key, tuple) else (key,)))


def _server_refusal(exc: psycopg.Error, table: str, lines: array[int]) -> _ServerRefused:
    diag = exc.diag
    reason = diag.message_primary or str(exc).splitlines()[0]
    if diag.message_detail and not diag.message_detail.startswith("Failing row contains"):  # the row id says which
        reason += f" ({diag.message_detail})"
    found = COPY_LINE.search(diag.context or "")
    line = int(found.group(1)) if found else 0
    if 0 < line <= len(lines):
        number = lines[line - 1]
        return _ServerRefused(Refusal(table, str(number), diag.column_name or "", reason), number)
    return _ServerRefused(Refusal(table, "-", diag.column_name or "", reason), None)


def advance_sequences(conn: Connection, job: TableJob) -> None:
    """Every identity or serial column of the table: its sequence's next value past the largest imported id."""
    for _, column in job.pairs:
        if column.name not in job.target.defaults:
            continue
        row = conn.execute(
            "SELECT pg_get_serial_sequence(%s, %s)", (job.target.ident.as_string(conn), column.name)
        ).fetchone()
        if not row or not row[0]:
            continue
        query = sql.SQL("SELECT setval({}, m) FROM (SELECT max({}) AS m FROM {}) s WHERE m IS NOT NULL").format(
            sql.Literal(row[0]), sql.Identifier(column.name), job.target.ident
        )
        value = conn.execute(query).fetchone()
        if value:
            job.sequences.append(f"{row[0]} -> {int(value[0]) + 1}")


# -- the task -------------------------------------------------------------------------------------------
def _at_head(conn: Connection, ctx: TaskContext) -> None:
    pending = pending_revisions(ctx.settings, current_revision(conn))
    if pending:
        raise Refused(
            f"the schema is not at head: pending revision(s) {', '.join(pending)}",
            f"invoke db.migrate --env {ctx.tier.value}",
        )


def _empty(conn: Connection, ctx: TaskContext, plan: Plan) -> None:
    """Refused unless every table the file fills is empty: the file's ids are kept as they are."""
    filled = [
        job.target.qualified
        for job in plan.jobs
        if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(job.target.ident)).fetchone() == (True,)
    ]
    if filled:
        fix = (
            f"start from an empty schema: invoke db.reset --env {ctx.tier.value} --no-seed"
            if ctx.tier is not Tier.PROD
            else "import into an empty PROD only (a new database, migrated to head)"
        )
        raise Refused(f"'{ctx.target.dbname}' already holds rows (in {', '.join(filled)})", fix)


def show_plan(out: Output, path: Path, plan: Plan) -> None:
    if plan.unmatched:
        out.warn(f"SQLite table(s) with no PostgreSQL table, not imported: {', '.join(plan.unmatched)}")
    for job in plan.jobs:
        if job.left_out:
            out.warn(f"{job.source.name}: column(s) not imported: {', '.join(job.left_out)}")
    if plan.untouched:
        out.info(f"PostgreSQL table(s) the file has no table for, left as they are: {', '.join(plan.untouched)}")
    for fk in plan.dropped:
        out.info(f"foreign key {fk.name} ({fk.table} -> {fk.parent}) is in a cycle: dropped for the load, added back")


def show_summary(out: Output, path: Path, plan: Plan, *, dry_run: bool) -> None:
    title = f"{'would import' if dry_run else 'imported'} from {path.name}"
    table = new_table(title, "SQLite table", "into", "rows", "fit", "refused", "seconds", "sequences")
    for job in plan.jobs:
        add_row(
            table,
            job.source.name,
            job.target.qualified,
            f"{job.source.rows:,}",
            f"{job.imported:,}",
            f"{job.refused:,}",
            f"{job.seconds:.2f}",
            ", ".join(job.sequences),
        )
    out.table(table)


def show_refusals(out: Output, refusals: list[Refusal]) -> None:
    table = new_table("rows that do not fit", "table", "row", "column", "reason")
    for r in refusals[:SHOWN_MISFITS]:
        add_row(table, r.table, r.row, r.column, r.reason)
    out.table(table)
    if len(refusals) > SHOWN_MISFITS:
        out.info(f"... and {len(refusals) - SHOWN_MISFITS} more")


def import_sqlite_task(ctx: TaskContext, *, from_: str | None, skip_bad: bool) -> int:
    if not from_:
        raise Refused("which SQLite file? --from is missing", "pass --from FILE.db")
    path = Path(from_).expanduser()
    out = ctx.out
    with closing(open_sqlite(path)) as source:
        sqlite_tables = read_sqlite_tables(source)
        schemas = [*APP_SCHEMAS, *other_schemas(ctx.settings.project.metadata)]
        with ctx.target.connect(read_only=True) as reading:
            _at_head(reading, ctx)
            plan = make_plan(sqlite_tables, read_pg_tables(reading, schemas))
            if not plan.jobs:
                raise Refused(
                    f"no table of {path.name} has a table of the same name in '{ctx.target.dbname}'",
                    "check the file is the app's own (its tables are named like the models' tables)",
                )
            _empty(reading, ctx, plan)
        ctx.facts.update({"file": path.name, "tables": len(plan.jobs), "skip_bad": skip_bad})
        show_plan(out, path, plan)
        if ctx.dry_run:
            if ctx.clearance.rule.backup_first:
                out.plan(f"back up {ctx.target.dbname} first")
            out.plan("load every table in one transaction through COPY, in this order: " + _order_text(plan))
            with ctx.target.connect(read_only=True) as reading:
                return _run(ctx, Load(source, reading, write=False), plan, path, skip_bad)
        with exclusive(ctx.target, "import-sqlite"):
            if ctx.clearance.rule.backup_first:
                from dbguard.backup.dump import take_backup  # noqa: PLC0415

                made = take_backup(ctx.settings, ctx.target, out, reason=f"before import-sqlite {path.name}")
                ctx.facts["backup"] = made.path.name
            with ctx.target.connect() as conn, locking.bounded(ctx.settings, ctx.tier.value, "db.import-sqlite"):
                return _run(ctx, Load(source, conn, write=True), plan, path, skip_bad)


def _order_text(plan: Plan) -> str:
    return ", ".join(job.target.qualified for job in plan.jobs)


def _run(ctx: TaskContext, load: Load, plan: Plan, path: Path, skip_bad: bool) -> int:
    out, conn = ctx.out, load.pg
    stopped = False
    with conn.transaction():
        load_existing_keys(load, plan, {job.target.qualified for job in plan.jobs})
        if load.write:  # again under the lock, in the transaction that writes: nothing changed since the plan
            # bounded waits; the tables it fills held against inserts until the commit (they must stay empty)
            locking.limit(conn, ctx.settings)
            filled = [job.target.qualified for job in plan.jobs]
            locking.lock_tables(conn, filled, "SHARE ROW EXCLUSIVE", ctx.settings, ctx.tier.value, "db.import-sqlite")
            _at_head(conn, ctx)
            _empty(conn, ctx, plan)
            conn.execute("SET CONSTRAINTS ALL DEFERRED")
            for fk in plan.dropped:  # ACCESS EXCLUSIVE on the table and the one it references, each named if busy
                locking.lock_tables(
                    conn, [fk.table, fk.parent], "ACCESS EXCLUSIVE", ctx.settings, ctx.tier.value, "db.import-sqlite"
                )
                conn.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(_ident(fk.table), sql.Identifier(fk.name))
                )
        with out.progress() as progress:
            for job in plan.jobs:
                task = progress.add_task(job.target.qualified, total=job.source.rows)
                try:
                    load_table(load, job, plan, lambda n, task=task: progress.advance(task, n))
                except _Stop:
                    stopped = True
                    break
                progress.update(task, completed=job.source.rows)
        if load.write and not stopped:
            stopped = _add_back(load, plan)
            if not stopped and (skip_bad or not load.refusals):  # this transaction will commit
                for job in plan.jobs:  # (a sequence is never rolled back: set only when the rows stay)
                    advance_sequences(conn, job)
                failpoint("import-sqlite:loaded")  # everything written, nothing committed
        refused = len({(r.table, r.row) for r in load.refusals})
        ctx.facts.update({"rows": sum(j.imported for j in plan.jobs), "refused": refused})
        show_summary(out, path, plan, dry_run=not load.write)
        if load.refusals:
            show_refusals(out, load.refusals)
        if stopped or (load.refusals and not skip_bad):
            if load.write:
                raise Failed(
                    f"{refused} row(s) of {path.name} do not fit (listed above); nothing was imported",
                    "fix them in the file" + ("" if stopped else ", or pass --skip-bad to import the rest"),
                )
            raise Failed(
                f"{refused} row(s) of {path.name} do not fit (listed above); a real run would import nothing",
                "fix them in the file" + ("" if stopped else ", or pass --skip-bad to import the rest"),
            )
    total = sum(j.imported for j in plan.jobs)
    if not load.write:
        out.ok(f"dry run: {total:,} row(s) would be imported; nothing was written")
    else:
        left = f"; {refused} row(s) left out with --skip-bad (listed above)" if refused else ""
        out.ok(f"imported {total:,} row(s) from {path.name} into {ctx.target.dbname} in one transaction{left}")
    return 0


def _ident(qualified: str) -> sql.Identifier:
    schema, _, name = qualified.rpartition(".")
    return sql.Identifier(schema or "public", name)


def _add_back(load: Load, plan: Plan) -> bool:
    """The cycle's foreign keys added back and the deferred ones checked, which checks every imported row
    against them; True if one fails."""
    for fk in plan.dropped:
        try:
            with load.pg.transaction():
                load.pg.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(_ident(fk.table), sql.Identifier(fk.name))
                    + sql.SQL(fk.definition)  # the server's own text
                )
        except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
            raise  # the import's time limits (transfer/locking.py), not a row that does not fit
        except psycopg.Error as exc:
            detail = exc.diag.message_detail or ""
            load.refusals.append(Refusal(fk.table, "-", ", ".join(fk.columns), f"foreign key {fk.name}: {detail}"))
            return True
    try:  # deferrable foreign keys were deferred for the load: checked here, before the commit
        with load.pg.transaction():
            load.pg.execute("SET CONSTRAINTS ALL IMMEDIATE")
    except psycopg.Error as exc:
        reason = exc.diag.message_primary or str(exc)
        if exc.diag.message_detail:
            reason += f" ({exc.diag.message_detail})"
        load.refusals.append(Refusal(exc.diag.table_name or "-", "-", "", reason))
        return True
    return False
