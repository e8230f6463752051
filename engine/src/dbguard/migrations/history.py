"""Alembic's view of the migration files and of a database's revision (read-only helpers)."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from dbguard.guard.connect import Connection
from dbguard.settings import Settings


def alembic_config(settings: Settings) -> Config:
    """Alembic's Config for this project, without reading alembic.ini (env.py needs nothing from it)."""
    cfg = Config(str(settings.root / "alembic.ini")) if (settings.root / "alembic.ini").exists() else Config()
    cfg.set_main_option("script_location", str(settings.migrations_dir))
    cfg.attributes["settings"] = settings
    return cfg


def script_directory(settings: Settings) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(settings))


def heads(settings: Settings) -> list[str]:
    if not (settings.migrations_dir / "env.py").exists():
        return []
    return list(script_directory(settings).get_heads())


def head(settings: Settings) -> str | None:
    found = heads(settings)
    return found[0] if len(found) == 1 else None


def current_revision(conn: Connection) -> str | None:
    """The database's Alembic revision; None for a database Alembic has never touched."""
    row = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT version_num FROM public.alembic_version").fetchall()
    return ",".join(sorted(str(r[0]) for r in found)) or None


def pending_revisions(settings: Settings, current: str | None, target: str = "heads") -> list[str]:
    """Revisions between `current` and `target`, oldest first."""
    script = script_directory(settings)
    revs = list(script.iterate_revisions(target, current or "base"))
    return [r.revision for r in reversed(revs)]
