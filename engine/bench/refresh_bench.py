"""STG benchmark: db.refresh-staging against the naive `pg_dump PROD | psql`, and STG's safety copies.

PROD is a separate throwaway cluster (password authentication over TCP; its tables owned by the write
role, read through the read-only role, as the tools require) seeded with the 'load' scenario to over
500 MB. STG is the embedded default of the benchmark's own (a cluster in a temporary folder, configured
as every app's). Every task runs as a user runs it, `invoke db....` in its own process (through
bench/invoke_with.py, on both sides of a comparison). Four ratios, each side run at least three times,
interleaved round by round so a slow moment of the machine hits both, after one untimed warm-up of
each (the page cache is warm for both):

1. first refresh: db.refresh-staging while STG holds the demo data, against the naive copy
   (`pg_dump --no-owner --no-acl PROD | psql` into an empty database on STG's server);
2. repeated refresh: db.refresh-staging while STG holds the previous refresh's copy, against the same;
3. db.reset --env stg on the refreshed (over 500 MB) STG, against the same reset without a safety copy
   (STG's cell of the policy table without `backup_first`: INT's reset, in place);
4. db.restore --env stg of a backup into the over-500 MB STG, against the same restore without a safety
   copy (the replaced database dropped, not kept).

db.refresh-staging does everything it always does: coverage check, sanitizing inside PROD, the
snapshot-consistent copy, row counts and the PII checks, keys and indexes, sequences, the stamp, the
swap that keeps the old STG as its undo point (and drops the one beyond STG_UNDO_KEEP).

    cd engine && python -m bench.refresh_bench [--scale 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.cluster.pgtools import require_bindir, tool_conninfo, tool_environment
from dbguard.guard.config import target_for
from dbguard.guard.connect import connect
from dbguard.guard.stamp import write_stamp
from dbguard.guard.targets import Target, parse_database_url
from dbguard.guard.tiers import Tier
from dbguard.migrations.schema import drop_app_schemas, raw, sa_connection, upgrade
from dbguard.reports.status import human_size
from dbguard.seeding.runner import make_plan, seed_database
from dbguard.settings import Settings, load_settings
from psycopg import sql
from tests.support.clusters import ThrowawayCluster, free_port
from tests.support.project import FIXTURE_ROOT, PROJECT
from tests.support.setup import grant_reader

from bench.common import machine

PASSWORD = "bench-prod-pw-1"  # noqa: S105 -- a throwaway cluster's
ENGINE = Path(__file__).resolve().parents[1]  # on the children's PYTHONPATH: bench.invoke_with
TARGETS = {"first refresh": 1.1, "repeated refresh": 1.2, "reset on STG": 1.2, "restore into STG": 1.2}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=3.0, help="'load' scenario multiplier (3: over 500 MB)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each side (at least 3)")
    return parser.parse_args()


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def environment(settings: dict[str, str]) -> dict[str, str]:
    """The child's environment: nothing of the caller's shell but PATH and the like, the bench's settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
    return {k: os.environ[k] for k in keep if k in os.environ} | settings


def invoke(env: dict[str, str], *args: str, no_safety_copy: str = "") -> float:
    """Run `invoke <args>` in the fixture app as a user would; its wall time (the run must succeed)."""
    patch = ["--no-safety-copy", no_safety_copy] if no_safety_copy else []
    argv = [sys.executable, "-m", "bench.invoke_with", *patch, *args]
    began = time.perf_counter()
    proc = subprocess.run(argv, cwd=FIXTURE_ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"invoke {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return seconds


def naive_copy(bindir: Path, prod: Target, stg_admin: Target) -> float:
    """`pg_dump PROD | psql` into an empty database on STG's server (dropped afterwards, untimed)."""
    name = "bench_naive_copy"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with connect(stg_admin, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    into = stg_admin.with_database(name)
    with tool_environment(prod) as prod_env, tool_environment(into) as stg_env:
        began = time.perf_counter()
        dump = subprocess.Popen(
            [str(bindir / "pg_dump"), "--no-owner", "--no-acl", "-d", tool_conninfo(prod)],
            env=prod_env,
            stdout=subprocess.PIPE,
        )
        subprocess.run(
            [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", tool_conninfo(into)],
            env=stg_env,
            stdin=dump.stdout,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        assert dump.wait() == 0
        seconds = time.perf_counter() - began
    with connect(stg_admin, autocommit=True) as conn:
        conn.execute(drop)
    return seconds


def make_prod(base: Settings, scale: float) -> tuple[ThrowawayCluster, Target, int]:
    cluster = ThrowawayCluster("benchprod", password=PASSWORD).start()
    cluster.create_database("bench_prod")
    owner = parse_database_url(cluster.owner_url("bench_prod"), tier=Tier.PROD, source="PROD_DATABASE_URL")
    with connect(owner) as conn:
        write_stamp(conn, Tier.PROD, "bench_prod")
    with sa_connection(owner) as session, session.begin():
        drop_app_schemas(session)
        upgrade(base, session, "head")
        seed_database(raw(session), make_plan(PROJECT, "load", seed=5, scale=scale))
    with connect(owner, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    grant_reader(cluster, "bench_prod")  # the tools read PROD through its read-only role
    reader = parse_database_url(cluster.tcp_url("bench_prod"), tier=Tier.PROD, source="PROD_DATABASE_URL")
    return cluster, reader, int(row[0]) if row else 0


def stg_size(settings: Settings) -> int:
    with connect(target_for(settings, Tier.STG)) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def summary(name: str, naive: list[float], ours: list[float], naive_label: str) -> tuple[float, bool]:
    n, o = statistics.median(naive), statistics.median(ours)
    ratio, target = o / n, TARGETS[name]
    print(
        f"{name:17}: {naive_label} {n:.2f}s, ours {o:.2f}s (medians) -> {ratio:.2f}x (target <= {target}x; "
        f"minimums {min(ours) / min(naive):.2f}x; runs {', '.join(f'{x:.2f}' for x in naive)} / "
        f"{', '.join(f'{x:.2f}' for x in ours)})"
    )
    return ratio, ratio <= target


def main() -> int:
    args = arguments()
    rounds = max(args.rounds, 3)
    base = load_settings(FIXTURE_ROOT)
    print(f"machine: {machine()}; load average at start {load()}")
    prod_cluster, prod, prod_bytes = make_prod(base, args.scale)
    folder = Path(tempfile.mkdtemp(prefix="bench-stg-"))
    values = {
        "PROD_DATABASE_URL": prod.url(),
        "EMBEDDED_PG_DIR": str(folder / "embedded"),
        "EMBEDDED_PG_PORT": str(free_port()),
        "BACKUP_DIR": str(folder / "backups"),
        "AUDIT_LOG": str(folder / "audit.jsonl"),
        "SANITIZE_SALT_FILE": str(folder / "salt"),
    }
    env = environment(values | {"DB_TOOLS_ENV_FILE": "/dev/null", "NO_COLOR": "1", "PYTHONPATH": str(ENGINE)})
    settings = base.with_values(STG_DATABASE_URL=None, INT_DATABASE_URL=None, **values)
    cluster = EmbeddedCluster.from_settings(settings)
    times: dict[str, list[float]] = {}

    def timing(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    try:
        bindir = require_bindir(settings.values)
        invoke(env, "db.reset", "--env", "stg")  # the embedded cluster and STG made; untimed warm-ups follow
        stg_admin = cluster.target(Tier.STG, "postgres")
        naive_copy(bindir, prod, stg_admin)
        invoke(env, "db.refresh-staging")
        invoke(env, "db.backup", "--env", "stg")  # what the restores restore
        copied = stg_size(settings)
        for _ in range(rounds):
            timing("naive copy", naive_copy(bindir, prod, stg_admin))
            invoke(env, "db.reset", "--env", "stg")  # STG holds the demo data again
            timing("first refresh", invoke(env, "db.refresh-staging"))
            timing("repeated refresh", invoke(env, "db.refresh-staging"))
            timing("reset on STG", invoke(env, "db.reset", "--env", "stg"))
            invoke(env, "db.refresh-staging")  # STG over 500 MB again
            timing("reset, no copy", invoke(env, "db.reset", "--env", "stg", no_safety_copy="reset"))
            invoke(env, "db.refresh-staging")
            timing("restore into STG", invoke(env, "db.restore", "--env", "stg"))
            invoke(env, "db.refresh-staging")
            timing("restore, no copy", invoke(env, "db.restore", "--env", "stg", no_safety_copy="restore"))
            invoke(env, "db.refresh-staging")
    finally:
        cluster.stop()
        prod_cluster.destroy()
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"PROD: {human_size(prod_bytes)} on a separate cluster ('load' x{args.scale:g}, password over TCP, read-only "
        f"role); STG: the embedded default; the refreshed STG: {human_size(copied)}; {rounds} interleaved rounds; "
        "ours: invoke db.... in its own process"
    )
    results = [
        summary("first refresh", times["naive copy"], times["first refresh"], "naive pg_dump | psql"),
        summary("repeated refresh", times["naive copy"], times["repeated refresh"], "naive pg_dump | psql"),
        summary("reset on STG", times["reset, no copy"], times["reset on STG"], "reset, no safety copy"),
        summary("restore into STG", times["restore, no copy"], times["restore into STG"], "restore, no safety copy"),
    ]
    print(f"load average at the end {load()}; all within target: {'yes' if all(ok for _, ok in results) else 'NO'}")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
