"""The seed runner: scenarios, foreign-key order, ids, COPY batches, determinism, one transaction.

Seed modules (seeds/<table>.py) only say how to make one row. The runner gives each table its
own seeded random stream, so a table's contents depend only on --seed and the counts: the same
seed gives identical tables, byte for byte (`table_digests` proves it).
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

from dbguard.cli.console import Output
from dbguard.errors import Failed, Refused
from dbguard.failpoints import failpoint
from dbguard.guard.connect import Connection
from dbguard.project import Project
from dbguard.seeding.api import POOL_SIZE, Fakes, SeedTable
from dbguard.seeding.bulk_load import DeferredSchema, defer_indexes_and_keys
from dbguard.seeding.copy_types import binary_capable, column_oids, converted, converters_for
from dbguard.seeding.offload import OffloadedTable, worth_offloading

PROGRESS_EVERY = 20_000
PREFETCH_ROWS = 200_000  # rows generated ahead while the server rebuilds the previous table's indexes


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
    order = [t.name for t in project.metadata.sorted_tables if t.name in wanted]
    missing = set(wanted) - set(order)
    if missing:
        raise Refused(
            f"scenario '{scenario}' names tables the models do not have: {', '.join(sorted(missing))}",
            f"fix the scenarios ({project.spec('scenarios')})",
        )
    return SeedPlan(project, scenario, seed, scale, {t: max(1, round(wanted[t] * scale)) for t in order})


def app_tables_with_rows(conn: Connection, project: Project) -> list[str]:
    found = []
    for table in project.metadata.sorted_tables:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table.name}",)).fetchone()
        if exists and exists[0]:
            q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table.name))
            row = conn.execute(q).fetchone()
            if row and row[0]:
                found.append(table.name)
    return found


def generate_rows(seed: SeedTable, f: Fakes, start: int, count: int) -> Iterator[tuple[object, ...]]:
    """The column names first, then one tuple per row; every row must have the same keys in the same order."""
    first = seed.row(f, start)
    columns = tuple(first)
    yield columns
    yield tuple(first.values())
    make = seed.row
    for i in range(start + 1, start + count):
        row = make(f, i)
        if tuple(row) != columns:
            raise ValueError(f"row {i} has columns {tuple(row)}, the first row had {columns}")
        yield tuple(row.values())


def seed_database(
    conn: Connection, plan: SeedPlan, out: Output | None = None, *, append: bool = False
) -> list[TableResult]:
    """Seed every table of `plan` inside the caller's transaction. A failure raises Failed; the caller rolls back.

    Into empty tables the load runs like pg_restore: rows by COPY (FREEZE where allowed), then the
    indexes and foreign keys, each key validated once for the whole table. Each table's rebuild runs
    on the server (in a pipeline) while this process already generates the next table's rows.
    """
    if not plan.counts:
        return []  # a scenario with no tables (an app with no models yet) seeds nothing
    modules = discover_seeds(plan.project)
    absent = [t for t in plan.counts if t not in modules]
    if absent:
        package = plan.project.spec("seeds")
        raise Refused(f"no seed module for table(s) {', '.join(absent)}", f"add {package}/<table>.py defining SEED")
    tables = list(plan.counts)
    id_ranges = {t: (next_id(conn, t) if append else 1, n) for t, n in plan.counts.items()}
    deferred = DeferredSchema() if append else defer_indexes_and_keys(conn, tables)
    order = tables  # foreign-key order: each table's keys are checked while the next one is generated
    loaded = {t.name for t in plan.project.metadata.sorted_tables} - set(tables)
    results: list[TableResult] = []
    current = order[0]
    collecting = gc.isenabled()
    gc.disable()  # millions of short-lived tuples: the cyclic collector would rescan them over and over

    def fakes_for(table: str) -> Fakes:
        return Fakes(plan.seed, table, id_ranges, pool_size=min(POOL_SIZE, max(50, plan.counts[table])))

    offloaded = _start_offload(conn, modules, plan, id_ranges, fakes_for) if not append else None
    try:
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
                        conn,
                        table,
                        offloaded[1],
                        offloaded[2],
                        module,
                        count,
                        freeze=deferred.truncated,
                        advance=advance,
                    )
                    results.append(TableResult(table, module, count, time.perf_counter() - began))
                    failpoint(f"seed:after-{table}")
                    loaded.add(table)
                    continue
                rows = generate_rows(seed, fakes_for(table), id_ranges[table][0], count)
                columns = tuple(str(c) for c in next(rows))
                rebuild = deferred.ready(loaded)
                if rebuild:
                    with conn.pipeline():
                        for current, statement in rebuild:  # noqa: B007 -- `current` names the culprit on error
                            conn.execute(statement)
                        ahead = list(islice(rows, PREFETCH_ROWS))  # made while the server rebuilds
                    current = table
                    rows = chain(ahead, rows)
                copy_rows(conn, table, columns, rows, freeze=deferred.truncated, advance=advance)
                results.append(TableResult(table, module, count, time.perf_counter() - began))
                failpoint(f"seed:after-{table}")
                loaded.add(table)
            for current, statement in deferred.ready(loaded):  # noqa: B007
                conn.execute(statement)
    except psycopg.Error as exc:
        module = modules[current][1]
        detail = exc.diag.message_primary or str(exc).splitlines()[0]
        raise Failed(
            f"seed module {module} broke a constraint on table {current}: {detail}",
            f"fix {module}; the database was left as it was before the seed",
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        module = modules[current][1]
        raise Failed(
            f"seed module {module} made a bad row for table {current}: {type(exc).__name__}: {exc}",
            f"fix {module}; the database was left as it was before the seed",
        ) from None
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
    id_ranges: dict[str, tuple[int, int]],
    fakes_for: Callable[[str], Fakes],
) -> tuple[str, tuple[str, ...], OffloadedTable] | None:
    """Start making the largest table's rows in a second process, when that pays (seed_offload.py)."""
    table = worth_offloading(plan.counts)
    if table is None:
        return None
    seed, module = modules[table]
    probe = Fakes(plan.seed, f"probe:{table}", id_ranges, pool_size=50)
    try:
        columns = tuple(str(c) for c in seed.row(probe, id_ranges[table][0]))  # the names only
    except Exception as exc:
        raise Failed(
            f"seed module {module} made a bad row for table {table}: {type(exc).__name__}: {exc}",
            f"fix {module}; the database was left as it was before the seed",
        ) from None
    oids = column_oids(conn, table, columns)
    if not binary_capable(oids):
        return None
    converters = converters_for(oids)
    worker = OffloadedTable(
        seed, fakes_for(table), id_ranges[table][0], plan.counts[table], oids, converters, generate_rows
    )
    return table, columns, worker


def _copy_offloaded(
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    worker: OffloadedTable,
    module: str,
    count: int,
    *,
    freeze: bool,
    advance: Callable[[int], object] | None,
) -> None:
    error = worker.wait()
    if error is not None:
        raise Failed(
            f"seed module {module} failed making rows for table {table}: {error.splitlines()[0]}",
            f"fix {module}; the database was left as it was before the seed",
        )
    with conn.cursor() as cur, cur.copy(copy_statement(table, columns, binary=True, freeze=freeze)) as copy:
        worker.stream_into(copy.write, advance, count)
    _set_sequence(conn, table, columns)


def _set_sequence(conn: Connection, table: str, columns: tuple[str, ...]) -> None:
    if "id" in columns:
        conn.execute(
            sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))").format(
                sql.Literal(table), sql.Identifier(table)
            )
        )


def next_id(conn: Connection, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT coalesce(max(id), 0) + 1 FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 1


def copy_statement(table: str, columns: tuple[str, ...], *, binary: bool, freeze: bool) -> sql.Composed:
    options = [o for o in ("FORMAT BINARY" if binary else "", "FREEZE" if freeze else "") if o]
    return sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        sql.Identifier(table),
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
    converters = converters_for(oids) if binary else []
    done = 0
    with conn.cursor() as cur, cur.copy(copy_statement(table, columns, binary=binary, freeze=freeze)) as copy:
        if binary:
            copy.set_types(oids)
        write = copy.write_row
        for row in rows:
            write(converted(row, converters))
            done += 1
            if advance is not None and done % PROGRESS_EVERY == 0:
                advance(PROGRESS_EVERY)
        if advance is not None:
            advance(done % PROGRESS_EVERY)
    _set_sequence(conn, table, columns)
    return done


def table_digests(conn: Connection, project: Project) -> dict[str, str]:
    """md5 of each app table's rows in id order: equal digests mean identical contents."""
    out = {}
    for table in project.metadata.sorted_tables:
        q = sql.SQL("SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t.id), '')), count(*) FROM {} t").format(
            sql.Identifier(table.name)
        )
        row = conn.execute(q).fetchone()
        assert row is not None
        out[table.name] = str(row[0])
    return out
