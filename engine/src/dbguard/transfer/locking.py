"""The imports' locks: never an open-ended wait that stalls the app's writes behind it.

What must always hold: an import's transaction runs with IMPORT_LOCK_TIMEOUT and IMPORT_STATEMENT_TIMEOUT
(transaction-local, so nothing else on the connection keeps them), and every table lock it takes is taken
one table at a time, so a lock not granted in time is a refusal naming that table, with nothing written
(the transaction rolls back as the refusal leaves it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg import errors, sql

from dbguard.errors import Refused
from dbguard.guard.connect import Connection
from dbguard.settings import Settings


def limit(conn: Connection, settings: Settings) -> None:
    """The import's lock and statement timeouts, for the rest of this transaction."""
    conn.execute(
        "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
        (settings.get("IMPORT_LOCK_TIMEOUT").strip(), settings.get("IMPORT_STATEMENT_TIMEOUT").strip()),
    )


def busy(table: str, settings: Settings, env: str, operation: str) -> Refused:
    waited = settings.get("IMPORT_LOCK_TIMEOUT").strip()
    return Refused(
        f"table {table} is busy: another session's transaction held a conflicting lock for longer than "
        f"IMPORT_LOCK_TIMEOUT={waited}; nothing was imported",
        f"run `invoke {operation} --env {env}` again when that transaction has ended (pg_stat_activity names it), "
        "or raise IMPORT_LOCK_TIMEOUT",
    )


@contextmanager
def bounded(settings: Settings, env: str, operation: str) -> Iterator[None]:
    """The import's transaction cut off by IMPORT_STATEMENT_TIMEOUT: one line, nothing written."""
    try:
        yield
    except errors.QueryCanceled as exc:
        if "statement timeout" not in str(exc):
            raise
        limit_ = settings.get("IMPORT_STATEMENT_TIMEOUT").strip()
        raise Refused(
            f"a statement of the import ran longer than IMPORT_STATEMENT_TIMEOUT={limit_}; nothing was imported",
            f"raise IMPORT_STATEMENT_TIMEOUT, then run `invoke {operation} --env {env}` again",
        ) from None


@contextmanager
def naming(table: str, settings: Settings, env: str, operation: str) -> Iterator[None]:
    """A lock timeout inside the block is refused as `table` being busy."""
    try:
        yield
    except (errors.LockNotAvailable, errors.DeadlockDetected):
        raise busy(table, settings, env, operation) from None


def lock_tables(conn: Connection, tables: list[str], mode: str, settings: Settings, env: str, operation: str) -> None:
    """LOCK TABLE each `schema.table` in `mode`, one at a time, in a stable order (no deadlock between imports)."""
    assert mode in {"ROW EXCLUSIVE", "SHARE ROW EXCLUSIVE", "ACCESS EXCLUSIVE"}
    for name in sorted(tables):
        schema, _, table = name.rpartition(".")
        with naming(name, settings, env, operation):
            conn.execute(
                sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.Identifier(schema or "public", table), sql.SQL(mode))
            )
