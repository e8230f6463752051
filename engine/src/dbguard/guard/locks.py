"""Advisory locks: one schema-changing operation per database at a time, refused at once, never queued."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dbguard.errors import Refused

if TYPE_CHECKING:
    from dbguard.guard.cleared import Cleared

LOCK_NAMESPACE = 0x44_42  # "DB": the first key of every lock these tools take
SCHEMA_LOCK = 1  # reset, seed, migrate and restore of one database exclude each other


@contextmanager
def exclusive(target: Cleared, what: str, key: int = SCHEMA_LOCK) -> Iterator[None]:
    """Hold a session advisory lock on `target` for the block; refuse if another run holds it."""
    with target.connect(autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, key)).fetchone()
        if not row or not row[0]:
            holder = conn.execute(
                "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.granted "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (LOCK_NAMESPACE, key),
            ).fetchone()
            who = f" (server pid {holder[0]}, since {holder[2]:%H:%M:%S})" if holder else ""
            raise Refused(
                f"another reset, seed, migrate or restore is already running on '{target.dbname}'{who}; "
                f"refusing to {what} at the same time",
                "wait for it to finish, then run this again",
            )
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, key))
