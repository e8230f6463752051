"""Backup and restore benchmark: db.backup against raw `pg_dump -Fc`, db.restore against raw `pg_restore`.

One run, on the embedded cluster, on a database of at least 500 MB seeded with the 'load' scenario.
db.restore includes every safety step: checksum, version check, a backup of the target, restore into a
scratch database, row counts against the manifest, re-stamp and the swap.

    python -m bench.backup_bench [--scale 3]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from dbguard.backup.dump import take_backup
from dbguard.backup.restore import restore_task
from dbguard.cli.console import Output
from dbguard.cli.runner import run_task
from dbguard.cluster.pgtools import require_bindir, tool_conninfo, tool_environment
from dbguard.guard.caller import Caller
from dbguard.guard.config import target_for
from dbguard.guard.connect import connect
from dbguard.guard.door import authorize
from dbguard.guard.tiers import Tier
from dbguard.migrations.schema import drop_app_schemas, raw, sa_connection, upgrade
from dbguard.reports.status import human_size
from dbguard.seeding.runner import make_plan, seed_database
from dbguard.settings import load_settings
from tests.support.project import FIXTURE_ROOT, PROJECT

from bench.common import Timer, empty_database, machine, scratch_database, size_and_rounds


def seed(settings, target, scale: float) -> int:  # type: ignore[no-untyped-def]
    with sa_connection(target) as conn:
        with conn.begin():
            drop_app_schemas(conn)
            upgrade(settings, conn, "head")
            seed_database(raw(conn), make_plan(PROJECT, "load", seed=3, scale=scale))
        row = raw(conn).execute("SELECT pg_database_size(current_database())").fetchone()
    conn_size = int(row[0]) if row else 0
    with connect(target, autocommit=True) as c:
        c.execute("VACUUM (ANALYZE)")
    return conn_size


def raw_dump(bindir: Path, target, path: Path) -> float:  # type: ignore[no-untyped-def]
    with tool_environment(target) as env, Timer() as timer:
        subprocess.run(
            [str(bindir / "pg_dump"), "-Fc", "-f", str(path), "-d", tool_conninfo(target)], env=env, check=True
        )
    return timer.seconds


def raw_restore(bindir: Path, target, path: Path) -> float:  # type: ignore[no-untyped-def]
    with (
        empty_database(target.with_database("postgres"), "bench_raw_restore") as into,
        tool_environment(into) as env,
        Timer() as timer,
    ):
        subprocess.run([str(bindir / "pg_restore"), "-d", tool_conninfo(into), str(path)], env=env, check=True)
    return timer.seconds


def main() -> int:
    args = size_and_rounds()
    base = load_settings(FIXTURE_ROOT)
    with (
        tempfile.TemporaryDirectory(prefix="bench-backups-") as folder,
        scratch_database(base, "bench_backup_stg", Tier.STG) as source,
        scratch_database(base, "bench_restore_stg", Tier.STG) as restore_target,
    ):
        settings = base.with_values(
            BACKUP_DIR=folder, STG_DATABASE_URL=source.url(), AUDIT_LOG=str(Path(folder) / "audit.jsonl")
        )
        size = seed(settings, source, args.scale)
        bindir = require_bindir(settings.values)
        raw_file = Path(folder) / "raw.dump"
        robot = Caller(interactive=False, ci=True, agent=None, consent=None)
        cleared = authorize(settings, "backup", Tier.STG, target_for(settings, Tier.STG), robot).target
        dumps, backups = [], []
        for _ in range(args.rounds):
            dumps.append(raw_dump(bindir, source, raw_file))
            with Timer() as timer:
                made = take_backup(settings, cleared, None)
            backups.append(timer.seconds)
        restores, ours = [], []
        quiet = Output(Tier.STG)
        restore_settings = settings.with_values(STG_DATABASE_URL=restore_target.url())
        for _ in range(args.rounds):
            restores.append(raw_restore(bindir, source, raw_file))
            with sa_connection(restore_target) as conn, conn.begin():
                drop_app_schemas(conn)  # every round restores into the same empty STG
            with Timer() as timer:
                code = run_task(
                    "restore",
                    "stg",
                    {},
                    lambda ctx: restore_task(ctx, made.path.name),
                    settings=restore_settings,
                    caller=robot,
                    out=quiet,
                )
            assert code == 0
            ours.append(timer.seconds)
    dump_s, backup_s, restore_s, ours_s = min(dumps), min(backups), min(restores), min(ours)
    print(f"machine: {machine()}")
    print(
        f"database: {human_size(size)} ('load' scenario x{args.scale:g}); archive {human_size(raw_file_size(made))}; "
        f"db.restore into an empty STG (its pre-restore backup included), pg_restore --jobs=2"
    )
    print(
        f"backup : raw pg_dump -Fc {dump_s:.2f}s, db.backup {backup_s:.2f}s  -> {backup_s / dump_s:.2f}x "
        f"(target <= 1.15x; runs {', '.join(f'{x:.2f}' for x in dumps)} / {', '.join(f'{x:.2f}' for x in backups)})"
    )
    print(
        f"restore: raw pg_restore {restore_s:.2f}s, db.restore {ours_s:.2f}s -> {ours_s / restore_s:.2f}x "
        f"(target <= 1.2x; runs {', '.join(f'{x:.2f}' for x in restores)} / {', '.join(f'{x:.2f}' for x in ours)})"
    )
    return 0


def raw_file_size(backup) -> int:  # type: ignore[no-untyped-def]
    return int(backup.manifest["size_bytes"])


if __name__ == "__main__":
    sys.exit(main())
