"""Staging refresh benchmark: db.refresh-staging against the naive `pg_dump PROD | psql STG`, no sanitizing.

PROD is a separate throwaway cluster (password authentication over TCP) seeded with the 'load'
scenario to at least 500 MB; STG lives on the embedded cluster. db.refresh-staging does everything
it always does: coverage check, backup of STG, sanitizing inside PROD, snapshot-consistent parallel
copy, indexes, sequences, stamp, row-count and PII verification, the swap.

    python -m bench.refresh_bench [--scale 3]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from dbguard.cli.console import Output
from dbguard.cli.runner import run_task
from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.cluster.pgtools import require_bindir, tool_conninfo, tool_environment
from dbguard.guard.caller import Caller
from dbguard.guard.connect import connect
from dbguard.guard.stamp import write_stamp
from dbguard.guard.targets import parse_database_url
from dbguard.guard.tiers import Tier
from dbguard.migrations.schema import drop_app_schemas, raw, sa_connection, upgrade
from dbguard.refresh.staging import refresh_task
from dbguard.reports.status import human_size
from dbguard.seeding.runner import make_plan, seed_database
from dbguard.settings import load_settings
from psycopg import sql
from tests.support.clusters import ThrowawayCluster
from tests.support.project import FIXTURE_ROOT, PROJECT
from tests.support.setup import grant_reader

from bench.common import Timer, empty_database, machine, scratch_database, size_and_rounds

PASSWORD = "bench-prod-pw-1"  # noqa: S105 -- a throwaway cluster's


def naive(bindir: Path, prod, stg_admin, name: str) -> float:  # type: ignore[no-untyped-def]
    with (
        empty_database(stg_admin, name) as into,
        tool_environment(prod) as penv,
        tool_environment(into) as senv,
        Timer() as timer,
    ):
        dump = subprocess.Popen([str(bindir / "pg_dump"), "-d", tool_conninfo(prod)], env=penv, stdout=subprocess.PIPE)
        subprocess.run(
            [str(bindir / "psql"), "-X", "-q", "-d", tool_conninfo(into)],
            env=senv,
            stdin=dump.stdout,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        assert dump.wait() == 0
    return timer.seconds


def main() -> int:
    args = size_and_rounds()
    base = load_settings(FIXTURE_ROOT)
    prod_cluster = ThrowawayCluster("benchprod", password=PASSWORD).start()
    try:
        prod_cluster.create_database("bench_prod")
        prod = parse_database_url(prod_cluster.owner_url("bench_prod"), tier=Tier.PROD, source="PROD_DATABASE_URL")
        with connect(prod) as c:
            write_stamp(c, Tier.PROD, "bench_prod")
        with sa_connection(prod) as conn, conn.begin():
            drop_app_schemas(conn)
            upgrade(base, conn, "head")
            seed_database(raw(conn), make_plan(PROJECT, "load", seed=5, scale=args.scale))
        with connect(prod, autocommit=True) as c:
            c.execute("VACUUM (ANALYZE)")
            size = int(c.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
        grant_reader(prod_cluster, "bench_prod")  # the tools read PROD through its read-only role
        reader = parse_database_url(prod_cluster.tcp_url("bench_prod"), tier=Tier.PROD, source="PROD_DATABASE_URL")
        bindir = require_bindir(base.values)
        stg_admin = EmbeddedCluster.from_settings(base).target(Tier.STG, "postgres")
        with (
            tempfile.TemporaryDirectory(prefix="bench-refresh-") as folder,
            scratch_database(base, "bench_refresh_stg", Tier.STG) as stg,
        ):
            settings = base.with_values(
                PROD_DATABASE_URL=reader.url(),
                STG_DATABASE_URL=stg.url(),
                BACKUP_DIR=folder,
                AUDIT_LOG=str(Path(folder) / "audit.jsonl"),
                SANITIZE_SALT_FILE=str(Path(folder) / "salt"),
            )
            robot = Caller(interactive=False, ci=True, agent=None, consent=None)
            naive_runs, ours = [], []
            for _ in range(args.rounds):
                naive_runs.append(naive(bindir, prod, stg_admin, "bench_naive_stg"))
                with sa_connection(stg) as conn, conn.begin():
                    drop_app_schemas(conn)  # every round refreshes the same small STG
                with Timer() as timer:
                    code = run_task(
                        "refresh-staging",
                        "stg",
                        {},
                        refresh_task,
                        settings=settings,
                        caller=robot,
                        out=Output(Tier.STG),
                    )
                assert code == 0
                ours.append(timer.seconds)
            with connect(stg_admin, autocommit=True) as c:
                c.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier("bench_refresh_stg__previous")
                    )
                )
    finally:
        prod_cluster.destroy()
    n, o = min(naive_runs), min(ours)
    print(f"machine: {machine()}")
    print(f"PROD: {human_size(size)} on a separate cluster ('load' x{args.scale:g}, password over TCP)")
    print(
        f"refresh: naive pg_dump | psql {n:.2f}s, db.refresh-staging {o:.2f}s -> {o / n:.2f}x (target <= 1.3x; runs "
        f"{', '.join(f'{x:.2f}' for x in naive_runs)} / {', '.join(f'{x:.2f}' for x in ours)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
