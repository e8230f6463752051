"""The seed runner: scenarios, foreign-key order, keys, COPY batches, determinism, one transaction.

Seed modules (seeds/<table>.py) only say how to make one row. The runner gives each table its
own seeded random stream, so a table's contents depend only on --seed and the counts: the same
seed gives identical tables, byte for byte (`table_digests` proves it).

Any schema: keys of any type and name (seeding/keys.py), tables in other schemas (named
`kitchen.meal_plans`), plain Tables, foreign-key cycles, partitioned tables, enums, generated
columns. A failure is blamed on the seed module only when its rows caused it (a value, a
constraint); anything else is reported as the engine's fault, never as the module's.
"""

from __future__ import annotations

import gc
import importlib
import math
import pkgutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Table

from dbguard.cli.console import Output
from dbguard.errors import Failed, Refused
from dbguard.failpoints import failpoint
from dbguard.guard.connect import Connection
from dbguard.project import Project
from dbguard.seeding.api import POOL_SIZE, Fakes, SeedTable
from dbguard.seeding.bulk_load import defer_forward_keys, defer_indexes_and_keys
from dbguard.seeding.copy_types import (
    BadColumns,
    binary_capable,
    column_oids,
    converted,
    converters_for,
    copy_types,
    settled,
)
from dbguard.seeding.keys import KeySpace, existing_space, key_maker, next_number, qualified, space_for, split
from dbguard.seeding.offload import OffloadedTable, worth_offloading

PROGRESS_EVERY = 20_000
PREFETCH_ROWS = 200_000  # rows generated ahead while the server rebuilds the previous table's indexes
MODULE_SQLSTATES = ("22", "23")  # data exceptions and constraint violations: the rows' fault


class RowError(ValueError):
    """A seed module's `row` raised, or made a row the runner cannot use: the module's fault."""


@dataclass(frozen=True)
class SeedPlan:
    project: Project
    scenario: str
    seed: int
    scale: float
    counts: dict[str, int]  # in foreign-key order


@dataclass(frozen=True)
class TableResult:
    table: str
    module: str
    rows: int
    seconds: float


def discover_seeds(project: Project) -> dict[str, tuple[SeedTable, str]]:
    """Every module of the app's seeds package that defines SEED, by table name, with its path for messages."""
    package = project.seeds_package
    folder = Path(next(iter(package.__path__)))
    shown = folder.relative_to(project.root) if folder.is_relative_to(project.root) else folder
    found: dict[str, tuple[SeedTable, str]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        seed = getattr(module, "SEED", None)
        if isinstance(seed, SeedTable):
            found[seed.name] = (seed, f"{shown}/{info.name}.py")
    return found


def make_plan(project: Project, scenario: str, *, seed: int = 1, scale: float = 1.0) -> SeedPlan:
    """Validate the scenario and scale; order the tables so every foreign key is seeded before it is used."""
    scenarios = project.scenarios
    if scenario not in scenarios:
        known = ", ".join(sorted(scenarios))
        raise Refused(
            f"unknown scenario '{scenario}': the scenarios are {known}", "pass --scenario " + known.split(", ")[0]
        )
    if not (scale > 0 and math.isfinite(scale)):
        raise Refused(f"scale must be a positive number, not {scale:g}", "pass --scale 1 (or 0.5, 10, ...)")
    wanted = scenarios[scenario]
    order = [t.fullname for t in project.metadata.sorted_tables if t.fullname in wanted]
    missing = set(wanted) - set(order)
    if missing:
        elsewhere = {t.name: t.fullname for t in project.metadata.sorted_tables if t.schema}
        named = [f"{m} (name it {elsewhere[m]})" if m in elsewhere else m for m in sorted(missing)]
        raise Refused(
            f"scenario '{scenario}' names tables the models do not have: {', '.join(named)}",
            f"fix the scenarios ({project.spec('scenarios')})",
        )
    return SeedPlan(project, scenario, seed, scale, {t: max(1, round(wanted[t] * scale)) for t in order})


def app_tables_with_rows(conn: Connection, project: Project) -> list[str]:
    found = []
    for table in project.metadata.sorted_tables:
        name = sql.Identifier(*split(table.fullname)).as_string(conn)
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        if exists and exists[0]:
            q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(qualified(table.fullname))
            row = conn.execute(q).fetchone()
            if row and row[0]:
                found.append(table.fullname)
    return found


def _row(seed: SeedTable, f: Fakes, n: int) -> dict[str, object]:
    try:
        row = seed.row(f, n)
    except Exception as exc:
        raise RowError(f"row {n}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(row, dict):
        raise RowError(f"row {n} is a {type(row).__name__}, not a dict of column values")
    return row


def generate_rows(
    seed: SeedTable,
    f: Fakes,
    start: int,
    count: int,
    key: tuple[str, Callable[[int], object]] | None = None,
    *,
    keyed: bool = False,
) -> Iterator[tuple[object, ...]]:
    """The column names first, then one tuple per row; every row must have the same keys in the same order.

    `key` (column, row number -> key): when the module leaves that column out, the runner adds it, so other
    tables can reference the rows and the same seed gives the same keys (a server default would not). `keyed`:
    other tables reference these rows by `f.ref`, so a key the module makes itself must be `f.key(id)`'s."""
    first = _row(seed, f, start)
    add_key = key is not None and key[0] not in first
    if key is not None and keyed and not add_key and str(first[key[0]]) != str(key[1](start)):
        raise RowError(
            f"row {start}: its key {key[0]} is {first[key[0]]!r}, not f.key({start}) = {key[1](start)!r}; other "
            "tables reference its rows by f.ref, which finds them by f.key(id): make the key with it, or leave it out"
        )
    columns = tuple(first) + ((key[0],) if key is not None and add_key else ())
    make_key = key[1] if key is not None and add_key else None
    yield columns
    yield tuple(first.values()) + ((make_key(start),) if make_key is not None else ())
    make = seed.row
    expected = columns[:-1] if make_key is not None else columns
    for i in range(start + 1, start + count):
        try:
            row = make(f, i)
        except Exception as exc:
            raise RowError(f"row {i}: {type(exc).__name__}: {exc}") from exc
        if tuple(row) != expected:
            raise RowError(f"row {i} has columns {tuple(row)}, the first row had {expected}")
        if make_key is None:
            yield tuple(row.values())
        else:
            yield (*row.values(), make_key(i))


def added_key(table: Table, seed: int, referenced: set[str]) -> tuple[str, Callable[[int], object]] | None:
    """The key the runner adds to rows that leave it out: a uuid or text key always, an integer one only
    where other tables of the run reference it (else the server's identity numbers the rows)."""
    column, make = key_maker(table, seed)
    if column is None:
        return None
    if make is not None:
        return column, make
    return (column, lambda n: n) if table.fullname in referenced else None


def key_spaces(conn: Connection, plan: SeedPlan, *, append: bool) -> dict[str, KeySpace]:
    """Each table's row numbers (from 1, or past the rows already there) and how a number becomes its key; a
    table the plan references but does not seed (reference data a migration put there, rows seeded before)
    by the keys it holds."""
    tables = plan.project.metadata.tables
    spaces = {
        name: space_for(tables[name], plan.seed, next_number(conn, tables[name]) if append else 1, count)
        for name, count in plan.counts.items()
    }
    for name in plan.counts:
        for fk in tables[name].foreign_keys:
            referenced = fk.column.table
            if referenced.fullname not in spaces:
                spaces[referenced.fullname] = existing_space(conn, referenced)
    return spaces


def _blame(exc: BaseException, table: str, module: str) -> Failed:
    """The Failed to raise for `exc` on `table`: the module's fault only when its rows caused it."""
    if isinstance(exc, psycopg.Error) and exc.sqlstate is not None:
        detail = exc.diag.message_primary or str(exc).splitlines()[0]
        if exc.sqlstate.startswith(MODULE_SQLSTATES):
            return Failed(
                f"seed module {module} broke a constraint on table {table}: {detail}",
                f"fix {module}; the database was left as it was before the seed",
            )
        return engine_fault(table, module, f"{type(exc).__name__}: {detail}")
    if isinstance(exc, RowError | BadColumns | psycopg.Error):  # psycopg without a state: a value it cannot send
        return Failed(
            f"seed module {module} made a bad row for table {table}: {str(exc).splitlines()[0]}",
            f"fix {module}; the database was left as it was before the seed",
        )
    return engine_fault(table, module, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def engine_fault(table: str, module: str, detail: str) -> Failed:
    return Failed(
        f"the seed runner failed on table {table}, a fault in dbguard and not in {module}: {detail}",
        "the database was left as it was before the seed; report this line with `pip show guarded-db-engine`",
    )


def seed_database(
    conn: Connection, plan: SeedPlan, out: Output | None = None, *, append: bool = False
) -> list[TableResult]:
    """Seed every table of `plan` inside the caller's transaction. A failure raises Failed; the caller rolls back.

    Into empty tables the load runs like pg_restore: rows by COPY (FREEZE where allowed), then the
    indexes and foreign keys, each key validated once for the whole table. Each table's rebuild runs
    on the server (in a pipeline) while this process already generates the next table's rows.
    Appending, the foreign keys of a cycle wait until the table they point at is loaded.
    """
    if not plan.counts:
        return []  # a scenario with no tables (an app with no models yet) seeds nothing
    modules = discover_seeds(plan.project)
    absent = [t for t in plan.counts if t not in modules]
    if absent:
        package = plan.project.spec("seeds")
        raise Refused(f"no seed module for table(s) {', '.join(absent)}", f"add {package}/<table>.py defining SEED")
    tables = list(plan.counts)
    metadata = plan.project.metadata
    referenced = {fk.column.table.fullname for t in tables for fk in metadata.tables[t].foreign_keys}
    current = tables[0]
    try:
        spaces = key_spaces(conn, plan, append=append)
        deferred = defer_forward_keys(conn, tables) if append else defer_indexes_and_keys(conn, tables)
    except psycopg.Error as exc:
        raise _blame(exc, current, modules[current][1]) from None
    order = tables  # foreign-key order: each table's keys are checked while the next one is generated
    loaded = {t.fullname for t in metadata.sorted_tables} - set(tables)
    results: list[TableResult] = []
    collecting = gc.isenabled()
    gc.disable()  # millions of short-lived tuples: the cyclic collector would rescan them over and over

    def fakes_for(table: str) -> Fakes:
        return Fakes(plan.seed, table, spaces, pool_size=min(POOL_SIZE, max(50, plan.counts[table])))

    def key_for(table: str) -> tuple[str, Callable[[int], object]] | None:
        return added_key(metadata.tables[table], plan.seed, referenced)

    offloaded = None
    try:
        if not append:
            offloaded = _start_offload(conn, modules, plan, spaces, fakes_for, key_for, referenced)
        with out.progress() if out is not None else nullcontext(None) as progress:
            for table in order:
                seed, module = modules[table]
                count = plan.counts[table]
                task = progress.add_task(table, total=count) if progress is not None else None
                advance = partial(progress.advance, task) if progress is not None and task is not None else None
                began = time.perf_counter()
                current = table
                if offloaded is not None and offloaded[0] == table:
                    for current, statement in deferred.ready(loaded):  # noqa: B007
                        conn.execute(statement)
                    current = table
                    _copy_offloaded(
                        conn, table, offloaded[1], offloaded[2], count, freeze=deferred.freeze(table), advance=advance
                    )
                    results.append(TableResult(table, module, count, time.perf_counter() - began))
                    failpoint(f"seed:after-{table}")
                    loaded.add(table)
                    continue
                rows = generate_rows(
                    seed, fakes_for(table), spaces[table].start, count, key_for(table), keyed=table in referenced
                )
                columns = tuple(str(c) for c in next(rows))
                rebuild = deferred.ready(loaded)
                if rebuild:
                    with conn.pipeline():
                        for current, statement in rebuild:  # noqa: B007 -- `current` names the culprit on error
                            conn.execute(statement)
                        ahead = list(islice(rows, PREFETCH_ROWS))  # made while the server rebuilds
                    current = table
                    rows = chain(ahead, rows)
                copy_rows(conn, table, columns, rows, freeze=deferred.freeze(table), advance=advance)
                results.append(TableResult(table, module, count, time.perf_counter() - began))
                failpoint(f"seed:after-{table}")
                loaded.add(table)
            for current, statement in deferred.ready(loaded):  # noqa: B007
                conn.execute(statement)
    except Failed:
        raise
    except Exception as exc:
        raise _blame(exc, current, modules[current][1]) from None
    finally:
        if offloaded is not None:
            offloaded[2].close()
        if collecting:
            gc.enable()
    return sorted(results, key=lambda r: tables.index(r.table))


def _start_offload(
    conn: Connection,
    modules: dict[str, tuple[SeedTable, str]],
    plan: SeedPlan,
    spaces: dict[str, KeySpace],
    fakes_for: Callable[[str], Fakes],
    key_for: Callable[[str], tuple[str, Callable[[int], object]] | None],
    referenced: set[str],
) -> tuple[str, tuple[str, ...], OffloadedTable] | None:
    """Start making the largest table's rows in a second process, when that pays (offload.py)."""
    table = worth_offloading(plan.counts)
    if table is None:
        return None
    seed, module = modules[table]
    start, key = spaces[table].start, key_for(table)
    probe = Fakes(plan.seed, table, spaces, pool_size=50, stream=f"probe:{table}")
    try:
        columns = tuple(str(c) for c in next(generate_rows(seed, probe, start, 1, key)))  # the names only
        oids = column_oids(conn, table, columns)
    except (RowError, BadColumns) as exc:
        raise _blame(exc, table, module) from None
    if not binary_capable(oids):
        return None
    generate = partial(generate_rows, keyed=table in referenced)
    worker = OffloadedTable(
        seed, fakes_for(table), start, plan.counts[table], oids, converters_for(oids), generate, key
    )
    return table, columns, worker


def _copy_offloaded(
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    worker: OffloadedTable,
    count: int,
    *,
    freeze: bool,
    advance: Callable[[int], object] | None,
) -> None:
    error = worker.wait()
    if error is not None:
        raise RowError(str(error)) if error.rows else error
    with conn.cursor() as cur, cur.copy(copy_statement(table, columns, binary=True, freeze=freeze)) as copy:
        worker.stream_into(copy.write, advance, count)
    set_sequences(conn, table, columns)


def set_sequences(conn: Connection, table: str, columns: tuple[str, ...]) -> None:
    """Move each identity or serial sequence of the loaded columns past the largest value now in its column."""
    schema, name = split(table)
    found = conn.execute(
        "SELECT a.attname, pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY(%s)",
        (schema, name, list(columns)),
    ).fetchall()
    for column, sequence in found:
        if sequence is None:
            continue
        conn.execute(
            sql.SQL("SELECT setval({}, m) FROM (SELECT max({}) AS m FROM {}) x WHERE m IS NOT NULL").format(
                sql.Literal(sequence), sql.Identifier(column), qualified(table)
            )
        )


def copy_statement(table: str, columns: tuple[str, ...], *, binary: bool, freeze: bool) -> sql.Composed:
    options = [o for o in ("FORMAT BINARY" if binary else "", "FREEZE" if freeze else "") if o]
    return sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        qualified(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(f" WITH ({', '.join(options)})" if options else ""),
    )


def copy_rows(
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    rows: Iterable[Sequence[Any]],
    *,
    freeze: bool,
    advance: Callable[[int], object] | None,
) -> int:
    """COPY rows into one table. Binary format where every column type allows it (about 3x faster than text)."""
    oids = column_oids(conn, table, columns)
    binary = binary_capable(oids)
    rows = iter(rows)
    first = next(rows, None)
    converters = settled(oids, converters_for(oids), first)
    done = 0
    with conn.cursor() as cur, cur.copy(copy_statement(table, columns, binary=binary, freeze=freeze)) as copy:
        copy.set_types(copy_types(oids))
        write = copy.write_row
        try:
            for row in chain((first,), rows) if first is not None else rows:
                write(converted(row, converters))
                done += 1
                if advance is not None and done % PROGRESS_EVERY == 0:
                    advance(PROGRESS_EVERY)
        except (ValueError, TypeError, psycopg.Error) as exc:
            if isinstance(exc, RowError) or (isinstance(exc, psycopg.Error) and exc.sqlstate is not None):
                raise
            raise RowError(f"a value of row {done + 1} cannot go into its column: {exc}") from exc
        if advance is not None:
            advance(done % PROGRESS_EVERY)
    set_sequences(conn, table, columns)
    return done


def table_digests(conn: Connection, project: Project) -> dict[str, str]:
    """md5 of each app table's rows, sorted by their text: equal digests mean identical contents, whatever
    the table's key (or none)."""
    out = {}
    for table in project.metadata.sorted_tables:
        q = sql.SQL(
            "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), '')) FROM {} t"
        ).format(qualified(table.fullname))
        row = conn.execute(q).fetchone()
        assert row is not None
        out[table.fullname] = str(row[0])
    return out
