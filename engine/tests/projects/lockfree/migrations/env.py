"""Alembic environment: the engine runs it (guard, audit, timeouts, the app's declared metadata)."""

from dbguard.migrations.alembic_env import run

run()
