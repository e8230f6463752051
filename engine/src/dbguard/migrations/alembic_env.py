"""What an app's `migrations/env.py` runs. The URL never comes from a literal: the tier machinery supplies it.

Three ways in:
- from the engine's own tasks (db.migrate, db.reset, the ladder): a connection is handed over in
  `config.attributes["connection"]`, already guarded (an Engine is accepted too, as pytest-alembic's
  fixtures hand one over). Handed over outside a transaction, Alembic runs its own: one per revision
  (so a NOT VALID constraint and its VALIDATE, in two revisions, never share one), and a revision may
  step outside it (`op.get_context().autocommit_block()`: concurrent index builds, enum values,
  batched backfills) on the same guarded session, lock_timeout and statement_timeout set for the
  session, so they hold outside the transaction too. Handed over inside the caller's transaction
  (db.reset's in-place rebuild), the revisions run in it, all or nothing, and a step outside it is
  refused in one line;
- `alembic --sql` (offline): SQL for review and for squawk, no database touched, with the same
  transaction per revision and the same COMMIT around each autocommit block as a run online;
- the plain `alembic` CLI: `-x env=int|stg|prod` (and `-x confirm=<dbname>` for PROD) runs the
  command through the same guard, audit log and safety steps as `invoke db.migrate`.
"""

from __future__ import annotations

import sys
from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine

from dbguard.migrations.schema import refuse_autocommit_blocks, session_timeouts, set_timeouts
from dbguard.ownership import INFO_KEY as OWNERSHIP_KEY
from dbguard.settings import Settings, load_settings

ENGINE_TABLES = {"alembic_version", "tier_stamp"}


def _partition(table: Any) -> bool:
    """A reflected table that is a partition (or an inheritance child) of another: the migration made it."""
    options = getattr(table, "dialect_options", {}).get("postgresql", {})
    return bool(options.get("inherits"))


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Autogenerate looks at the app's tables only: never the tier stamp or Alembic's own table, nor the
    partitions of a partitioned table (made by its migration, not declared as models) and their indexes."""
    if type_ == "table" and name in ENGINE_TABLES:
        return False
    if reflected and compare_to is None:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        if table is not None and _partition(table):
            return False
    return True


def app_schemas(metadata: Any) -> set[str | None]:
    """The schemas autogenerate compares: the default one and each one a table of the app names."""
    return {None, "public"} | {t.schema for t in metadata.tables.values() if t.schema}


def include_name_for(metadata: Any) -> Any:
    """Autogenerate reads the app's schemas only (never the tier stamp's, or another app's)."""
    schemas = app_schemas(metadata)

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        return name in schemas if type_ == "schema" else True

    return include_name


def compare_options(metadata: Any) -> dict[str, Any]:
    """How the models are compared with a database, the same for autogenerate and the ladder's check."""
    return {
        "compare_type": True,
        "compare_server_default": True,
        "include_object": include_object,
        "include_schemas": True,  # a table in a second schema is compared too
        "include_name": include_name_for(metadata),
    }


def drop_engine_info(context: Any, revision: Any, directives: list[Any]) -> None:
    """Autogenerate leaves out what the engine keeps in a table's `info` (its ownership entry): Alembic writes
    a table's info into `op.create_table(...)`, and `Ownership(...)` there would not even import. Column
    info (the PII classes) is never written by Alembic."""

    def walk(op: Any) -> None:
        info = getattr(op, "info", None)
        if isinstance(info, dict) and OWNERSHIP_KEY in info:
            op.info = {k: v for k, v in info.items() if k != OWNERSHIP_KEY}
        for child in getattr(op, "ops", None) or ():
            walk(child)

    for script in directives:
        for ops in (*getattr(script, "upgrade_ops_list", ()), *getattr(script, "downgrade_ops_list", ())):
            walk(ops)


def run() -> None:
    """Run the migrations Alembic asked for, in whichever of the three modes applies."""
    config = context.config
    settings: Settings = config.attributes.get("settings") or load_settings()
    metadata = settings.project.metadata

    def run_on(connection: Connection) -> None:
        external = connection.in_transaction()  # the caller's own transaction: the revisions run inside it
        context.configure(
            connection=connection,
            target_metadata=metadata,
            **compare_options(metadata),
            transaction_per_migration=not external,
            process_revision_directives=drop_engine_info,
        )
        if external:
            refuse_autocommit_blocks(context.get_context())
            with context.begin_transaction():
                set_timeouts(connection, settings)
                context.run_migrations()
            return
        with session_timeouts(connection, settings), context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        context.configure(
            dialect_name="postgresql",
            target_metadata=metadata,
            literal_binds=True,
            include_object=include_object,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.execute(f"SET lock_timeout = '{settings.get('MIGRATION_LOCK_TIMEOUT')}'")
            context.execute(f"SET statement_timeout = '{settings.get('MIGRATION_STATEMENT_TIMEOUT')}'")
            context.run_migrations()
        return
    handed = config.attributes.get("connection")
    if isinstance(handed, Engine):
        with handed.connect() as connection:
            run_on(connection)
        return
    if handed is not None:
        run_on(handed)
        return
    from dbguard.migrations.migrate import alembic_cli_task  # late: only the CLI path needs the guard

    x = context.get_x_argument(as_dictionary=True)
    cmd = getattr(config.cmd_opts, "cmd", None)
    command_name = cmd[0].__name__ if cmd else "upgrade"
    code = alembic_cli_task(settings, command_name, x.get("env"), x.get("confirm"), run_on)
    if code:
        sys.exit(code)
