"""Does a migration stop the app's writes? An index on a busy table, built the lock-safe way against the naive way.

Ours: the lockfree fixture's revision 0002 (`CREATE INDEX CONCURRENTLY` in an autocommit block), run
through Alembic as db.migrate runs it. Naive: the same index as a plain `op.create_index` in the
revision's transaction. Both on the same table of `--rows` orders in a scratch database on the
embedded cluster, while a writer inserts one order at a time and times each insert. Reported: the
longest an insert waited (the app's stall) and how long the migration took, the median of the rounds,
interleaved (ours, naive, ours, ...) after a warm-up of each.

    python -m bench.migration_lock_bench [--rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from dbguard.guard.connect import connect
from dbguard.guard.targets import Target
from dbguard.migrations.schema import sa_connection, upgrade
from dbguard.settings import Settings, load_settings
from tests.support.project import PROJECTS

from bench.common import Timer, machine, scratch_database

NAIVE = '''"""an index on a busy table, the naive way"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_placed_at", "orders", ["placed_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_placed_at", table_name="orders")
'''


def fill(settings: Settings, target: Target, rows: int) -> None:
    with sa_connection(target) as conn:
        upgrade(settings, conn, "0001")
    with connect(target, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers (email, full_name) SELECT 'c' || i || '@x.io', 'C' FROM generate_series(1, 100) i"
        )
        conn.execute(
            "INSERT INTO orders (customer_id, status, total_cents, placed_at) SELECT 1 + mod(i, 100), 'placed', i, "
            "now() - i * interval '1 second' FROM generate_series(1, %s) i",
            (rows,),
        )
        conn.execute("VACUUM (ANALYZE) orders")


def reset(target: Target) -> None:
    with connect(target, autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS ix_orders_placed_at")
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
        conn.execute("CHECKPOINT")


def measure(settings: Settings, target: Target) -> tuple[float, float]:
    """(longest insert wait in seconds, migration seconds) for one migration 0001 -> 0002 under a writer."""
    stop, waits = threading.Event(), []

    def writer() -> None:
        with connect(target, autocommit=True) as conn:
            while not stop.is_set():
                began = time.perf_counter()
                conn.execute(
                    "INSERT INTO orders (customer_id, status, total_cents, placed_at) VALUES (1, 'placed', 1, now())"
                )
                waits.append(time.perf_counter() - began)
                time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    with Timer() as timer, sa_connection(target) as conn:
        upgrade(settings, conn, "0002")
    time.sleep(0.3)
    stop.set()
    thread.join()
    return max(waits), timer.seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders in the table")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds of each side (after one warm-up)")
    args = parser.parse_args()
    base = load_settings(PROJECTS / "lockfree")
    with tempfile.TemporaryDirectory(prefix="bench-naive-") as folder:
        naive_dir = Path(folder) / "migrations"
        shutil.copytree(base.migrations_dir, naive_dir, ignore=shutil.ignore_patterns("__pycache__"))
        (naive_dir / "versions" / "0002_index_orders_placed_at_concurrently.py").write_text(NAIVE)
        ours = base.with_values(MIGRATION_STATEMENT_TIMEOUT="1h")
        naive = ours.with_values(MIGRATIONS_DIR=str(naive_dir))
        with scratch_database(base, "bench_migration_lock_int") as target:
            fill(ours, target, args.rows)
            results: dict[str, list[tuple[float, float]]] = {"ours": [], "naive": []}
            for round_ in range(args.rounds + 1):
                for name, settings in (("ours", ours), ("naive", naive)):
                    reset(target)
                    wait, seconds = measure(settings, target)
                    if round_:  # the first round warms the cache
                        results[name].append((wait, seconds))
                    print(f"round {round_} {name}: longest insert wait {wait * 1000:.0f} ms, migration {seconds:.2f}s")
    stall = {k: statistics.median(s for s, _ in v) for k, v in results.items()}
    took = {k: statistics.median(t for _, t in v) for k, v in results.items()}
    print(f"machine: {machine()}; {args.rows:,} orders; medians of {args.rounds} interleaved rounds")
    print(f"longest insert wait: ours {stall['ours'] * 1000:.0f} ms, naive {stall['naive'] * 1000:.0f} ms "
          f"({stall['naive'] / stall['ours']:.0f}x shorter)")  # fmt: skip
    print(f"migration time: ours {took['ours']:.2f}s, naive {took['naive']:.2f}s ({took['ours'] / took['naive']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
