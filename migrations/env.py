"""Alembic environment. The URL never comes from a literal: the tier machinery supplies it.

Three ways in:
- from our own tasks (db.migrate, db.reset, the ladder): a connection is handed over in
  `config.attributes["connection"]`, already guarded, inside the caller's transaction;
- `alembic --sql` (offline): SQL for review and for squawk, no database touched;
- the plain `alembic` CLI: `-x env=int|stg|prod` (and `-x confirm=<dbname>` for PROD) runs the
  command through the same guard, audit log and safety steps as `invoke db.migrate`.
"""

from __future__ import annotations

import sys
from typing import Any

from alembic import context
from sqlalchemy import Connection

from app.models import Base
from app.ops.schema import set_timeouts
from app.settings import Settings, load_settings

config = context.config
settings: Settings = config.attributes.get("settings") or load_settings()
target_metadata = Base.metadata


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate looks at the app's tables only: never the tier stamp or Alembic's own table."""
    return not (type_ == "table" and name in {"alembic_version", "tier_stamp"})


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        set_timeouts(connection, settings)
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        dialect_name="postgresql", target_metadata=target_metadata, literal_binds=True, include_object=include_object
    )
    with context.begin_transaction():
        context.execute(f"SET lock_timeout = '{settings.get('MIGRATION_LOCK_TIMEOUT')}'")
        context.execute(f"SET statement_timeout = '{settings.get('MIGRATION_STATEMENT_TIMEOUT')}'")
        context.run_migrations()


def run_from_cli() -> None:
    from app.ops.migrate import alembic_cli_task  # imported late: the guard needs this module loaded first

    x = context.get_x_argument(as_dictionary=True)
    cmd = getattr(config.cmd_opts, "cmd", None)
    command_name = cmd[0].__name__ if cmd else "upgrade"
    code = alembic_cli_task(settings, command_name, x.get("env"), x.get("confirm"), run_on)
    if code:
        sys.exit(code)


if context.is_offline_mode():
    run_offline()
elif "connection" in config.attributes:
    run_on(config.attributes["connection"])
else:
    run_from_cli()
