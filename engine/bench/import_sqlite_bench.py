"""db.import-sqlite against the two ways a team would otherwise move the same SQLite file into PostgreSQL.

One SQLite file in the shape of the taskboard fixture (users, projects, tasks, comments; dates as ISO text,
JSON as text), loaded into an empty database at head three ways, interleaved, each into its own fresh copy:
- ours: db.import-sqlite through the real runner and guard (type checks, keys, foreign keys, COPY, sequences);
- copy: the same rows streamed through plain COPY with no check at all (the floor: what COPY alone costs);
- insert: the hand-written script (sqlite3 rows, psycopg `executemany` INSERT, one transaction).
The file is clean (every row fits), so all three load the same rows; the row counts are compared.

    python -m bench.import_sqlite_bench [--users 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from dbguard.cli.console import Output
from dbguard.cli.runner import run_task
from dbguard.guard.connect import connect
from dbguard.guard.targets import parse_database_url
from dbguard.guard.tiers import Tier
from dbguard.migrations.schema import sa_connection, upgrade
from dbguard.transfer.sqlite_import import import_sqlite_task
from psycopg import sql
from rich.console import Console
from tests.support.clusters import ThrowawayCluster
from tests.support.setup import PROD_OWNER_PASSWORD, PROD_PASSWORD, Tiers, make_tiers, robot, stamp_url

from bench.common import Timer, machine

TABLES = ("users", "projects", "tasks", "comments")
COLUMNS = {
    "users": ("id", "email", "full_name", "phone", "preferences", "created_at"),
    "projects": ("id", "owner_id", "name", "description", "created_at"),
    "tasks": ("id", "project_id", "assignee_id", "title", "status", "priority", "due_date", "created_at"),
    "comments": ("id", "task_id", "author_id", "body", "created_at"),
}


def make_file(path: Path, users: int) -> int:
    """users; 2 projects each; 5 tasks a project; 1 comment a task. Returns the row count."""
    with sqlite3.connect(path) as conn:
        for table, columns in COLUMNS.items():
            conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
        conn.executemany(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
            (
                (u, f"user{u}@example.com", f"User {u}", None, '{"theme": "dark"}', "2024-03-01 10:00:00")
                for u in range(1, users + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO projects VALUES (?, ?, ?, ?, ?)",
            ((p, (p + 1) // 2, f"project {p}", None, "2024-03-01 10:00:00") for p in range(1, 2 * users + 1)),
        )
        conn.executemany(
            "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (t, (t + 4) // 5, (t % users) + 1, f"task {t}", "todo", 1 + t % 4, "2024-03-02", "2024-03-01T10:00:00")
                for t in range(1, 10 * users + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO comments VALUES (?, ?, ?, ?, ?)",
            ((c, c, (c % users) + 1, f"comment {c}", "2024-03-01 11:00:00") for c in range(1, 10 * users + 1)),
        )
    conn.close()
    return 23 * users


def fresh(tiers: Tiers, template: str) -> str:
    """INT's database dropped and cloned again from the migrated template, stamped: empty, at head."""
    name = tiers.names[Tier.INT]
    tiers.local.psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    tiers.local.psql("postgres", f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    stamp_url(tiers.urls[Tier.INT], Tier.INT, name)
    return tiers.urls[Tier.INT]


def ours(tiers: Tiers, path: Path) -> float:
    quiet = Output(None, Console(file=io.StringIO()), Console(file=io.StringIO()))
    with Timer() as timer:
        code = run_task(
            "import-sqlite",
            "int",
            {},
            lambda ctx: import_sqlite_task(ctx, from_=str(path), skip_bad=False),
            settings=tiers.settings,
            caller=robot(),
            out=quiet,
        )
    assert code == 0, code
    return timer.seconds


def plain_copy(url: str, path: Path) -> float:
    with (
        Timer() as timer,
        sqlite3.connect(path) as lite,
        connect(parse_database_url(url, tier=Tier.INT, source="bench")) as pg,
    ):
        for table in TABLES:
            columns = COLUMNS[table]
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            with pg.cursor().copy(statement) as copy:
                for row in lite.execute(f"SELECT {', '.join(columns)} FROM {table}"):
                    copy.write_row(row)
    lite.close()
    return timer.seconds


def insert_script(url: str, path: Path) -> float:
    with (
        Timer() as timer,
        sqlite3.connect(path) as lite,
        connect(parse_database_url(url, tier=Tier.INT, source="bench")) as pg,
    ):
        for table in TABLES:
            columns = COLUMNS[table]
            statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            )
            pg.cursor().executemany(statement, lite.execute(f"SELECT {', '.join(columns)} FROM {table}"))
    lite.close()
    return timer.seconds


def counts(tiers: Tiers) -> str:
    return tiers.sql(Tier.INT, "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20_000, help="users in the file (23 rows per user in all)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side, interleaved; medians reported")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    local = ThrowawayCluster("bench-sqlite").start()
    prod = ThrowawayCluster("bench-sqlite-prod", password=PROD_PASSWORD, owner_password=PROD_OWNER_PASSWORD, tls=True)
    prod.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as folder:
            tmp = Path(folder)
            tiers = make_tiers(tmp, local, prod)
            template = "bench_sqlite_template"
            local.create_database(template)
            target = parse_database_url(local.socket_url(template), tier=Tier.INT, source="bench")
            with sa_connection(target) as conn, conn.begin():
                upgrade(tiers.settings, conn, "head")
            path = tmp / "app.db"
            rows = make_file(path, args.users)
            size = path.stat().st_size
            print(f"file   : {rows:,} rows in 4 tables, {size / 1e6:.1f} MB")
            sides: dict[str, tuple[Callable[[], float], list[float]]] = {
                "ours": (lambda: ours(tiers, path), []),
                "copy": (lambda: plain_copy(tiers.urls[Tier.INT], path), []),
                "insert": (lambda: insert_script(tiers.urls[Tier.INT], path), []),
            }
            # a warm-up of each side (caches, catalogs, imports), then interleaved rounds
            for side, _ in sides.values():
                fresh(tiers, template)
                side()
            seen = set()
            for _ in range(args.rounds):
                for side, times in sides.values():
                    fresh(tiers, template)
                    times.append(side())
                    seen.add(counts(tiers))
            assert len(seen) == 1, seen  # every side loaded the same rows
            medians = {name: statistics.median(times) for name, (_, times) in sides.items()}
            for name, (_, times) in sides.items():
                runs = ", ".join(f"{t:.2f}" for t in times)
                print(f"{name:7}: {medians[name]:.2f}s median ({runs}) = {rows / medians[name]:,.0f} rows/s")
            print(f"ours / plain COPY   : {medians['ours'] / medians['copy']:.2f}x the time")
            print(f"INSERT script / ours: {medians['insert'] / medians['ours']:.2f}x the time")
            print(f"rows per table in every run: {seen.pop()}")
    finally:
        local.destroy()
        prod.destroy()
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
