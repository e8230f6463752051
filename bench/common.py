"""Shared helpers for the benchmarks: a scratch database on the embedded cluster, timing, reporting."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import sql

from app.ops.connect import connect
from app.ops.embedded import EmbeddedCluster
from app.ops.stamp import write_stamp
from app.ops.targets import Target
from app.ops.tiers import Tier
from app.settings import Settings


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


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
