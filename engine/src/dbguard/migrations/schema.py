"""SQLAlchemy and Alembic on a cleared database. The connection comes from the guard's clearance
(`Cleared.sa_connection`), and Alembic runs on it in one of two ways:

- handed over outside a transaction (db.migrate, the alembic CLI, the ladder): Alembic's own transactions,
  one per revision (as Alembic advises where autocommit blocks are used; a NOT VALID constraint and its
  VALIDATE, in two revisions, never share a transaction), each revision all or nothing, except where it
  steps outside its transaction with `op.get_context().autocommit_block()` (CREATE INDEX CONCURRENTLY,
  ALTER TYPE ... ADD VALUE, a batched backfill): what ran before the block is committed, the block runs
  statement by statement on the same session, a new transaction follows. lock_timeout and
  statement_timeout are set for the session, so they hold in the block too; the advisory lock
  (`guard.locks.exclusive`) is a session lock on its own connection, held for the whole run. What must
  always hold: the database's revision names exactly the revisions whose every step committed; a
  revision that failed is not recorded, and what it left (an INVALID index) is named with the command
  that clears it (`failure`);
- handed over inside the caller's transaction (db.reset's in-place rebuild, the pytest plugin's
  template): the revisions run in it, all or nothing, and an autocommit block is refused in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from psycopg import sql
from sqlalchemy import Connection as SAConnection
from sqlalchemy import MetaData

from dbguard.errors import Failed, OpsError
from dbguard.guard.connect import Connection
from dbguard.guard.connect import sa_connection as sa_connection  # noqa: PLC0414 -- for tests and scripts only
from dbguard.migrations.history import (
    alembic_config,
    current_revision,
    invalid_index_note,
    invalid_indexes,
    script_directory,
)
from dbguard.settings import Settings

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import Script

    from dbguard.cli.console import Output
    from dbguard.guard.cleared import Cleared

APP_SCHEMAS = ("public",)  # what a reset drops and rebuilds; the dbguard stamp schema is never touched


def raw(conn: SAConnection) -> Connection:
    """The psycopg connection under a SQLAlchemy one (for COPY)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver  # type: ignore[no-any-return]


TIMEOUTS = (("lock_timeout", "MIGRATION_LOCK_TIMEOUT"), ("statement_timeout", "MIGRATION_STATEMENT_TIMEOUT"))


def set_timeouts(conn: SAConnection, settings: Settings) -> None:
    """lock_timeout and statement_timeout for this transaction: a migration never queues behind traffic."""
    for name, key in TIMEOUTS:
        statement = sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(name), sql.Literal(settings.get(key)))
        raw(conn).execute(statement)


@contextmanager
def session_timeouts(conn: SAConnection, settings: Settings) -> Iterator[None]:
    """lock_timeout and statement_timeout for the session (inside Alembic's transactions and outside them, in
    an autocommit block); the session's own values are put back afterwards (a pooled connection goes on)."""
    before = {name: conn.exec_driver_sql(f"SELECT current_setting('{name}')").scalar() for name, _ in TIMEOUTS}
    for name, key in TIMEOUTS:
        _set(conn, name, settings.get(key))
    conn.commit()
    failed = True
    try:
        yield
        failed = False
    finally:
        with suppress(Exception) if failed else _nothing():  # never hide why the migration failed
            if conn.in_transaction():
                conn.rollback()
            for name, value in before.items():
                _set(conn, name, str(value))
            conn.commit()


def _set(conn: SAConnection, name: str, value: str) -> None:
    conn.exec_driver_sql("SELECT set_config(%(name)s, %(value)s, false)", {"name": name, "value": value})


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class StepsOutside(Failed):
    """A revision's autocommit block, met inside a caller's transaction (rolled back whole: nothing changed)."""


def refuse_autocommit_blocks(context: MigrationContext) -> None:
    """Inside a caller's transaction, a step outside it cannot run: one line instead of Alembic's AssertionError."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise StepsOutside(
            "a revision steps outside its transaction (autocommit_block), which this run cannot do: it "
            "migrates inside its own transaction to stay all-or-nothing",
            "migrate the database first (invoke db.migrate), or rebuild a tier that keeps an undo point "
            "(invoke db.reset --env stg)",
        )

    setattr(context, "autocommit_block", refused)  # noqa: B010 -- an instance attribute over the method


def upgrade(settings: Settings, conn: SAConnection, revision: str = "head") -> None:
    cfg = alembic_config(settings)
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def downgrade(settings: Settings, conn: SAConnection, revision: str) -> None:
    cfg = alembic_config(settings)
    cfg.attributes["connection"] = conn
    command.downgrade(cfg, revision)


LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out: nothing of that transaction happened, trying again is safe


def sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", exc), "sqlstate", None)


def apply(settings: Settings, target: Cleared, what: str, run: Callable[[SAConnection], None], out: Output) -> None:
    """Run Alembic (`run`, e.g. an upgrade to head) on `target` in its own transactions (the module's opening).

    A revision that could not take its lock within lock_timeout is tried again, MIGRATION_LOCK_RETRIES
    times, from wherever the database then is (what was committed stays, the rest was rolled back) -- but
    never a revision that steps outside its transaction (an autocommit block): what its block did is
    committed, and running it again would do it twice. Any other failure, or the last lock timeout, is one
    Failed line: what broke, the revision the database is at now, the INVALID indexes left behind, and
    the command that recovers.
    """
    tries = 1 + int(settings.get("MIGRATION_LOCK_RETRIES") or 0)
    for attempt in range(1, tries + 1):
        try:
            with target.sa_connection() as conn:
                run(conn)
            return
        except OpsError:
            raise
        except Exception as exc:
            locked = sqlstate(exc) == LOCK_NOT_AVAILABLE
            now = _now(target) if locked else "?"
            outside = steps_outside(settings, now, "downgrade" in what) if now != "?" else None
            if outside:
                env = target.tier.value
                raise Failed(
                    f"{what} failed: a table stayed locked beyond lock_timeout in revision {outside}, which steps "
                    f"outside its transaction (autocommit_block): what its block did is committed, so it is not "
                    f"tried again; '{target.dbname}' is at {now or 'base'}",
                    f"check what the block changed, make it safe to run twice, then invoke db.migrate --env {env}",
                ) from None
            if locked and attempt < tries:
                out.warn(
                    f"a table stayed busy beyond lock_timeout={settings.get('MIGRATION_LOCK_TIMEOUT')} "
                    f"(try {attempt} of {tries}): trying again"
                )
                time.sleep(min(attempt, 5))
                continue
            raise failure(target, exc, what, tries if locked else 0) from None


def _now(target: Cleared) -> str | None:
    try:
        with target.connect(read_only=True) as conn:
            return current_revision(conn)
    except OpsError:
        return "?"


def steps_outside(settings: Settings, now: str | None, downgrade: bool) -> str | None:
    """The revision that failed, when it has an autocommit block: the one above `now`, where the database is
    (an upgrade; any of them, on branches) or `now` itself (a downgrade); None otherwise."""

    def below(rev: Script) -> tuple[str, ...]:
        down = rev.down_revision
        return (down,) if isinstance(down, str) else tuple(down or ())

    revisions = list(script_directory(settings).walk_revisions())
    if downgrade:
        near = [r for r in revisions if r.revision == now]
    else:
        near = [r for r in revisions if (now in below(r) if now else not below(r))]
    for rev in near:
        path = Path(rev.path)
        if path.is_file() and "autocommit_block" in path.read_text(encoding="utf-8", errors="replace"):
            return rev.revision
    return None


def error_line(exc: BaseException) -> str:
    """The database's (or Alembic's) first line about what went wrong."""
    inner = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(inner).splitlines() if ln.strip()]
    return f"{type(inner).__name__}: {lines[0] if lines else ''}"[:300]


def failure(target: Cleared, exc: BaseException, what: str, lock_tries: int = 0) -> Failed:
    """The one line a failed migration leaves: what broke, where the database is now, what to do."""
    env = target.tier.value
    why = error_line(exc)
    if lock_tries:
        why = f"a table stayed locked by other sessions through {lock_tries} tries ({why})"
    try:
        with target.connect(read_only=True) as conn:
            now, found = current_revision(conn), invalid_indexes(conn)
    except OpsError:
        now, found = "?", []
    message = f"{what} failed: {why}; '{target.dbname}' is at {now or 'base'}"
    if found:
        what, fix = invalid_index_note(found, env)
        return Failed(f"{message}, with {what}", fix)
    if lock_tries:
        again = f"run it again when traffic is lower (invoke db.migrate --env {env}) or raise MIGRATION_LOCK_TIMEOUT"
        return Failed(message, again)
    return Failed(message, f"fix the revision, then invoke db.migrate --env {env}")


def other_schemas(metadata: MetaData | None) -> list[str]:
    """The schemas besides public that the app's tables live in (`kitchen` for `kitchen.meal_plans`)."""
    if metadata is None:
        return []
    return sorted({t.schema for t in metadata.tables.values() if t.schema and t.schema not in APP_SCHEMAS})


def drop_app_schemas(conn: SAConnection, metadata: MetaData | None = None) -> None:
    """Drop and recreate the app's schemas (in the caller's transaction); the tier stamp lives elsewhere.
    The other schemas the app's tables name (`metadata`) are dropped: its migrations create them again."""
    for schema in APP_SCHEMAS:
        raw(conn).execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        raw(conn).execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    for schema in other_schemas(metadata):
        raw(conn).execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
