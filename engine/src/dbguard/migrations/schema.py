"""SQLAlchemy and Alembic on a guarded target: engines built from our own connections, migrations run
inside the caller's transaction so a reset or a migration is all-or-nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from psycopg import sql
from sqlalchemy import Connection as SAConnection
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from dbguard.guard.connect import Connection, connect
from dbguard.guard.targets import Target
from dbguard.migrations.history import alembic_config
from dbguard.settings import Settings

APP_SCHEMAS = ("public",)  # what a reset drops and rebuilds; the dbguard stamp schema is never touched


@contextmanager
def sa_connection(target: Target, *, read_only: bool = False) -> Iterator[SAConnection]:
    """A SQLAlchemy connection over our own `connect` (masked errors, read-only sessions, no URL strings)."""
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: connect(target, read_only=read_only), poolclass=NullPool
    )
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def raw(conn: SAConnection) -> Connection:
    """The psycopg connection under a SQLAlchemy one (for COPY)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver  # type: ignore[no-any-return]


def set_timeouts(conn: SAConnection, settings: Settings) -> None:
    """lock_timeout and statement_timeout for this transaction: a migration never queues behind traffic."""
    for name, key in (("lock_timeout", "MIGRATION_LOCK_TIMEOUT"), ("statement_timeout", "MIGRATION_STATEMENT_TIMEOUT")):
        statement = sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(name), sql.Literal(settings.get(key)))
        raw(conn).execute(statement)


def upgrade(settings: Settings, conn: SAConnection, revision: str = "head") -> None:
    cfg = alembic_config(settings)
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


def downgrade(settings: Settings, conn: SAConnection, revision: str) -> None:
    cfg = alembic_config(settings)
    cfg.attributes["connection"] = conn
    command.downgrade(cfg, revision)


def drop_app_schemas(conn: SAConnection) -> None:
    """Drop and recreate the app's schemas (in the caller's transaction); the tier stamp lives elsewhere."""
    for schema in APP_SCHEMAS:
        raw(conn).execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        raw(conn).execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
