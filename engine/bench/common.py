"""Shared helpers for the benchmarks: a scratch database on the embedded cluster, timing, reporting."""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.guard.connect import connect
from dbguard.guard.stamp import write_stamp
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.settings import Settings
from psycopg import sql


@contextmanager
def scratch_database(settings: Settings, name: str, tier: Tier = Tier.INT) -> Iterator[Target]:
    """A stamped database of its own on the embedded cluster, dropped afterwards."""
    cluster = EmbeddedCluster.from_settings(settings)
    cluster.start()
    admin = cluster.target(tier, "postgres")
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = cluster.target(tier, name)
    with connect(target) as conn:
        write_stamp(conn, tier, name)
    try:
        yield target
    finally:
        with connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def empty_database(admin: Target, name: str) -> Iterator[Target]:
    """An empty, unstamped database on `admin`'s server for the naive side of a benchmark; dropped afterwards."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with connect(admin, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield admin.with_database(name)
    finally:
        with connect(admin, autocommit=True) as conn:
            conn.execute(drop)


def size_and_rounds() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=3.0, help="'load' scenario multiplier (3: over 500 MB)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each side; the best is reported")
    return parser.parse_args()


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
