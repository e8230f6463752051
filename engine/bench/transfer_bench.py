"""db.export-user and db.import-user against plain COPY of the same rows, measured in the same run.

A database of 1,000,000 rows in the taskboard fixture's shape (users, projects, tasks, comments), where one
user owns 100,001 of them (their row, 1,000 projects, 49,000 tasks, 50,000 comments; the comments on their
tasks are partly written by 10 co-workers, who come along as reference rows). Interleaved rounds, medians:
- export, ours: db.export-user --env stg through the real runner and guard (one snapshot, the foreign-key
  walk, the file with its manifest and sha256s);
- export, COPY: the same rows by `COPY (SELECT * FROM <table> WHERE id = ANY(<their ids>)) TO STDOUT` per table
  into files, the ids found beforehand (untimed) by a hand-written query of the slice: the floor, what
  copying exactly these rows costs when someone already knows which they are;
- export, where: the same rows by `COPY (SELECT * FROM <table> WHERE <the slice's predicate>) TO STDOUT`, the
  predicates written by hand for this schema (what the one-off scripts this task replaces do);
- import, ours: db.import-user --env int into an empty INT at head (the keys checked, references rewired,
  the memory of imported keys written, one transaction);
- import, COPY: `COPY ... FROM STDIN` of COPY's own files into the same empty INT, one transaction.
Both imports load the same rows; the row counts are compared.

    cd engine && python -m bench.transfer_bench [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import os
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
from dbguard.transfer.export import export_task
from dbguard.transfer.import_user import import_task
from psycopg import sql
from rich.console import Console
from tests.support.clusters import ThrowawayCluster
from tests.support.setup import PROD_OWNER_PASSWORD, PROD_PASSWORD, Tiers, make_tiers, robot, stamp_url

from bench.common import Timer, machine

TABLES = ("users", "projects", "tasks", "comments")
USER = "owner@bench.test"
FILL = (
    # the user (id 1), their co-workers among ids 2-51, then other people
    "INSERT INTO users (email, full_name, phone, preferences) SELECT CASE WHEN i = 1 THEN 'owner@bench.test' ELSE "
    "'person' || i || '@bench.test' END, 'Person ' || i, '+1-555-' || lpad(i::text, 6, '0'), '{\"theme\": \"dark\"}' "
    "FROM generate_series(1, 10000) i",
    # the user's 1,000 projects (ids 1-1000), then 20,000 of other people's
    "INSERT INTO projects (owner_id, name, description) SELECT CASE WHEN i <= 1000 THEN 1 ELSE 52 + i % 9948 END, "
    "'Project ' || i, 'What project ' || i || ' is about' FROM generate_series(1, 21000) i",
    # 49 tasks in each of the user's projects (49,000), then 430,000 in other people's
    "INSERT INTO tasks (project_id, assignee_id, title, status, priority, due_date) SELECT CASE WHEN i <= 49000 "
    "THEN 1 + (i - 1) / 49 ELSE 1001 + i % 20000 END, CASE WHEN i <= 49000 AND i % 3 = 0 THEN 1 WHEN i > 49000 "
    "THEN 52 + i % 9948 END, 'Task ' || i, (ARRAY['todo', 'doing', 'done'])[1 + i % 3], 1 + i % 4, "
    "date '2026-01-01' + i % 365 FROM generate_series(1, 479000) i",
    # one comment on each of the user's tasks plus 1,000 more (50,000; every fifth by a co-worker), 440,000 others
    "INSERT INTO comments (task_id, author_id, body) SELECT CASE WHEN i <= 50000 THEN 1 + i % 49000 ELSE "
    "49001 + i % 430000 END, CASE WHEN i <= 50000 THEN (CASE WHEN i % 5 = 0 THEN 2 + i % 50 ELSE 1 END) "
    "ELSE 52 + i % 9948 END, 'Comment ' || i || E' with a tab\\tand more words' FROM generate_series(1, 490000) i",
    "ANALYZE",
)
OWNED_TASKS = (
    "SELECT t.id FROM tasks t JOIN projects p ON p.id = t.project_id WHERE p.owner_id = 1 "
    "UNION SELECT id FROM tasks WHERE assignee_id = 1"
)
SLICE = {  # the slice, written by hand for this schema: what plain COPY is given
    "users": "id = 1 OR id IN (SELECT c.author_id FROM comments c WHERE c.task_id IN (" + OWNED_TASKS + "))",
    "projects": "owner_id = 1",
    "tasks": "project_id IN (SELECT id FROM projects WHERE owner_id = 1) OR assignee_id = 1",
    "comments": "task_id IN (" + OWNED_TASKS + ") OR author_id = 1",
}
QUIET = Output(None, Console(file=io.StringIO()), Console(file=io.StringIO()))


def fresh(tiers: Tiers, template: str) -> None:
    """INT dropped and cloned again from the migrated template, stamped: empty, at head."""
    name = tiers.names[Tier.INT]
    tiers.local.psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    tiers.local.psql("postgres", f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    stamp_url(tiers.urls[Tier.INT], Tier.INT, name)


def our_export(tiers: Tiers, path: Path) -> float:
    path.unlink(missing_ok=True)
    with Timer() as timer:
        code = run_task(
            "export-user",
            "stg",
            {},
            lambda ctx: export_task(ctx, user=USER, out=str(path), raw=False),
            settings=tiers.settings,
            caller=robot(),
            out=QUIET,
        )
    assert code == 0, code
    return timer.seconds


def slice_ids(tiers: Tiers) -> dict[str, str]:
    """Each table's ids in the slice, as an array literal (found by the hand-written predicates, untimed)."""
    return {
        table: "{" + tiers.sql(Tier.STG, f"SELECT string_agg(id::text, ',') FROM {table} WHERE {SLICE[table]}") + "}"
        for table in TABLES
    }


def copy_export(tiers: Tiers, folder: Path, ids: dict[str, str]) -> float:
    target = parse_database_url(tiers.urls[Tier.STG], tier=Tier.STG, source="bench")
    with Timer() as timer, connect(target, read_only=True) as conn:
        for table in TABLES:
            query = sql.SQL("COPY (SELECT * FROM {} WHERE id = ANY({}::bigint[])) TO STDOUT").format(
                sql.Identifier(table), sql.Literal(ids[table])
            )
            with open(folder / f"{table}.copy", "wb") as fh, conn.cursor().copy(query) as copy:
                for chunk in copy:
                    fh.write(chunk)
    return timer.seconds


def where_export(tiers: Tiers, folder: Path) -> float:
    """COPY with the slice's predicates written by hand: someone who knows this schema's slice in advance."""
    target = parse_database_url(tiers.urls[Tier.STG], tier=Tier.STG, source="bench")
    with Timer() as timer, connect(target, read_only=True) as conn:
        for table in TABLES:
            query = sql.SQL("COPY (SELECT * FROM {} WHERE {}) TO STDOUT").format(
                sql.Identifier(table),
                sql.SQL(SLICE[table]),  # type: ignore[arg-type]
            )
            with open(folder / f"{table}.copy", "wb") as fh, conn.cursor().copy(query) as copy:
                for chunk in copy:
                    fh.write(chunk)
    return timer.seconds


def our_import(tiers: Tiers, path: Path) -> float:
    with Timer() as timer:
        code = run_task(
            "import-user",
            "int",
            {},
            lambda ctx: import_task(ctx, from_=str(path), as_=None),
            settings=tiers.settings,
            caller=robot(),
            out=QUIET,
        )
    assert code == 0, code
    return timer.seconds


def copy_import(tiers: Tiers, folder: Path) -> float:
    target = parse_database_url(tiers.urls[Tier.INT], tier=Tier.INT, source="bench")
    with Timer() as timer, connect(target) as conn:
        for table in TABLES:
            with (
                open(folder / f"{table}.copy", "rb") as fh,
                conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))) as copy,
            ):
                while block := fh.read(1 << 20):
                    copy.write(block)
        conn.commit()
    return timer.seconds


def counts(tiers: Tiers, tier: Tier) -> str:
    return tiers.sql(tier, "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side, interleaved; medians reported")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    local = ThrowawayCluster("bench-transfer").start()
    prod = ThrowawayCluster("bench-transfer-prod", password=PROD_PASSWORD, owner_password=PROD_OWNER_PASSWORD, tls=True)
    prod.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-transfer-") as name:
            tmp = Path(name)
            tiers = make_tiers(tmp, local, prod)
            template = "bench_transfer_template"
            local.create_database(template)
            for url in (local.socket_url(template), tiers.urls[Tier.STG]):
                with sa_connection(parse_database_url(url, tier=Tier.STG, source="bench")) as conn, conn.begin():
                    upgrade(tiers.settings, conn, "head")
            for statement in FILL:
                tiers.sql(Tier.STG, statement)
            total = sum(int(n) for n in counts(tiers, Tier.STG).split("|"))
            ids = slice_ids(tiers)
            ours_file, naive = tmp / "user.tar", tmp / "naive"
            naive.mkdir()
            where = tmp / "where"
            where.mkdir()
            times: dict[str, list[float]] = {
                "export ours": [],
                "export copy": [],
                "export where": [],
                "import ours": [],
                "import copy": [],
            }
            sides: list[tuple[str, Callable[[], float], bool]] = [
                ("export ours", lambda: our_export(tiers, ours_file), False),
                ("export copy", lambda: copy_export(tiers, naive, ids), False),
                ("export where", lambda: where_export(tiers, where), False),
                ("import ours", lambda: our_import(tiers, ours_file), True),
                ("import copy", lambda: copy_import(tiers, naive), True),
            ]
            for _, side, needs_fresh in sides:  # warm-up: caches, catalogs, imports
                if needs_fresh:
                    fresh(tiers, template)
                side()
            loaded = set()
            for _ in range(args.rounds):
                for label, side, needs_fresh in sides:
                    if needs_fresh:
                        fresh(tiers, template)
                    times[label].append(side())
                    if needs_fresh:
                        loaded.add(counts(tiers, Tier.INT))
            assert len(loaded) == 1, loaded  # both imports loaded the same rows
            rows = sum(int(n) for n in loaded.pop().split("|"))
            print(f"database: {total:,} rows; the slice: {rows:,} rows, file {ours_file.stat().st_size / 1e6:.1f} MB")
            medians = {label: statistics.median(t) for label, t in times.items()}
            for label, t in times.items():
                print(f"{label}: {medians[label]:.2f}s median ({', '.join(f'{x:.2f}' for x in t)})")
            print(f"export: ours / COPY by ids = {medians['export ours'] / medians['export copy']:.2f}x the time")
            print(
                f"export: ours / COPY by predicates = {medians['export ours'] / medians['export where']:.2f}x the time"
            )
            print(f"import: ours / COPY = {medians['import ours'] / medians['import copy']:.2f}x the time")
    finally:
        local.destroy()
        prod.destroy()
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
