"""SQLAlchemy and Alembic on a cleared database: migrations run inside the caller's transaction, so a reset or
a migration is all-or-nothing. The connection comes from the guard's clearance (`Cleared.sa_connection`)."""

from __future__ import annotations

from alembic import command
from psycopg import sql
from sqlalchemy import Connection as SAConnection

from dbguard.guard.connect import Connection
from dbguard.guard.connect import sa_connection as sa_connection  # noqa: PLC0414 -- for tests and scripts only
from dbguard.migrations.history import alembic_config
from dbguard.settings import Settings

APP_SCHEMAS = ("public",)  # what a reset drops and rebuilds; the dbguard stamp schema is never touched


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
