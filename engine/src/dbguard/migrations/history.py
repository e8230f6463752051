"""Alembic's view of the migration files and of a database's revision, and what a failed revision left
(INVALID indexes): read-only helpers."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Alembic is imported only by the functions that use it (db.status needs none)
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from dbguard.guard.connect import Connection
    from dbguard.settings import Settings


def alembic_config(settings: Settings) -> Config:
    """Alembic's Config for this project, without reading alembic.ini (env.py needs nothing from it)."""
    from alembic.config import Config

    cfg = Config(str(settings.root / "alembic.ini")) if (settings.root / "alembic.ini").exists() else Config()
    cfg.set_main_option("script_location", str(settings.migrations_dir))
    cfg.attributes["settings"] = settings
    return cfg


def script_directory(settings: Settings) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(settings))


def heads(settings: Settings) -> list[str]:
    if not (settings.migrations_dir / "env.py").exists():
        return []
    return list(script_directory(settings).get_heads())


def head(settings: Settings) -> str | None:
    """The single head revision; None without migrations or with several heads.

    Read from the files' source when it is plain (see `plain_heads`), which spares db.status and
    friends importing Alembic and SQLAlchemy; anything else is Alembic's ScriptDirectory's to judge.
    """
    found = plain_heads(settings)
    if found is None:
        found = heads(settings)
    return found[0] if len(found) == 1 else None


REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")  # Alembic's own test for a revision file
DISCOVERY_OPTIONS = ("version_locations", "recursive_version_locations", "sourceless")
PLAIN_NAMES = ("revision", "down_revision", "branch_labels", "depends_on")


def plain_heads(settings: Settings) -> list[str] | None:
    """The heads Alembic would find, read without importing the revision files; None when unsure.

    Sure means: Alembic looks in versions/ only (alembic.ini sets none of DISCOVERY_OPTIONS); each
    file assigns `revision` and `down_revision` once, to literals, and no branch labels or
    dependencies; revisions are unique; every down revision exists; no cycle.
    """
    if not (settings.migrations_dir / "env.py").exists():
        return []
    ini = settings.root / "alembic.ini"
    if ini.exists() and any(re.search(rf"^\s*{o}\s*[=:]", ini.read_text(), re.M) for o in DISCOVERY_OPTIONS):
        return None
    versions = settings.migrations_dir / "versions"
    files = sorted(versions.iterdir()) if versions.is_dir() else []
    downs: dict[str, tuple[str, ...]] = {}
    for path in (p for p in files if not p.is_dir() and REVISION_FILE.match(p.name)):
        found = plain_assignments(path)
        revision, down = found.get("revision"), found.get("down_revision", ())
        down = (down,) if isinstance(down, str) else () if down is None else down
        if (
            not isinstance(revision, str)
            or revision in downs
            or not isinstance(down, tuple | list)
            or not all(isinstance(d, str) for d in down)
            or found.get("branch_labels") is not None
            or found.get("depends_on") is not None
        ):
            return None
        downs[revision] = tuple(down)
    if any(d not in downs for down in downs.values() for d in down):
        return None
    remaining = dict(downs)
    while remaining:  # no cycle: the bases can be peeled off until nothing is left
        bases = [r for r, down in remaining.items() if not any(d in remaining for d in down)]
        if not bases:
            return None
        for r in bases:
            del remaining[r]
    below = {d for down in downs.values() for d in down}
    return [r for r in downs if r not in below]


def plain_assignments(path: Path) -> dict[str, object]:
    """Those of PLAIN_NAMES the file assigns once, at its top level, to a literal; {} if it does more."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return {}
    bound = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    bound += [a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names]
    if any(bound.count(name) > 1 for name in PLAIN_NAMES):
        return {}
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in PLAIN_NAMES:
            try:
                found[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError, RecursionError):
                return {}
    return found if sum(bound.count(name) for name in PLAIN_NAMES) == len(found) else {}


def current_revision(conn: Connection) -> str | None:
    """The database's Alembic revision; None for a database Alembic has never touched."""
    row = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT version_num FROM public.alembic_version").fetchall()
    return ",".join(sorted(str(r[0]) for r in found)) or None


INVALID_INDEXES = (
    "SELECT n.nspname, c.relname, t.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
)


def invalid_indexes(conn: Connection) -> list[tuple[str, str, str]]:
    """(schema, index, table) of every INVALID index: what a failed or killed CREATE INDEX CONCURRENTLY leaves."""
    return [(str(s), str(i), str(t)) for s, i, t in conn.execute(INVALID_INDEXES).fetchall()]


def drop_invalid_sql(found: list[tuple[str, str, str]]) -> str:
    """The statements that clear them (one per index; each runs outside a transaction)."""
    from psycopg import sql

    return "; ".join(
        sql.SQL("DROP INDEX CONCURRENTLY {}.{}").format(sql.Identifier(s), sql.Identifier(i)).as_string(None)
        for s, i, _ in found
    )


def invalid_index_note(found: list[tuple[str, str, str]], env: str) -> tuple[str, str]:
    """(what is wrong, the command that fixes it) for INVALID indexes left on tier `env`."""
    names = ", ".join(f"{s}.{i} on {t}" for s, i, t in found)
    what = f"{len(found)} INVALID index(es) left by a failed concurrent build: {names}"
    fix = f"drop them ({drop_invalid_sql(found)}), then invoke db.migrate --env {env}"
    return what, fix


def pending_revisions(settings: Settings, current: str | None, target: str = "heads") -> list[str]:
    """Revisions between `current` and `target`, oldest first."""
    script = script_directory(settings)
    revs = list(script.iterate_revisions(target, current or "base"))
    return [r.revision for r in reversed(revs)]
