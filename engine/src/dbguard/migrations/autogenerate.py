"""db.revision: autogenerate a migration by comparing the models with a database built from empty at head.

The comparison never reads the live INT database, which may have drifted (a table added by hand, a
migration edited after it ran): a scratch database on INT's server is migrated from empty to head
and compared, then dropped. The file written passes the project's ruff lint and format as it stands
(where ruff is installed, it is run on the new file).
"""

from __future__ import annotations

import shutil
import subprocess

from alembic import command

from dbguard.cli.runner import TaskContext
from dbguard.errors import Refused
from dbguard.migrations.history import alembic_config, head
from dbguard.migrations.schema import upgrade


def revision_task(ctx: TaskContext, message: str) -> int:
    if not message.strip():
        raise Refused("a revision needs a message", 'pass -m "what it changes"')
    if ctx.dry_run:
        ctx.out.plan(
            f"build a scratch database from empty to {head(ctx.settings) or 'base'}, compare the models with it, "
            f"write a revision '{message}'"
        )
        return 0
    with ctx.target.scratch("revision") as scratch, scratch.sa_connection() as conn:
        upgrade(ctx.settings, conn, "head")  # Alembic's own transactions: a revision's autocommit block runs too
        cfg = alembic_config(ctx.settings)
        cfg.attributes["connection"] = conn
        script = command.revision(cfg, message=message, autogenerate=True)
    scripts = script if isinstance(script, list) else [script]
    for s in scripts:
        if s is not None:
            tidy(s.path)
            ctx.out.ok(f"wrote {s.path}: review it before committing")
            ctx.facts["file"] = s.path
    return 0


def tidy(path: str) -> None:
    """ruff's safe fixes and formatting on the new file, with the project's own settings (if ruff is there)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        return
    for args in (["check", "--fix", "--quiet", "--exit-zero"], ["format", "--quiet"]):
        subprocess.run([ruff, *args, path], capture_output=True, timeout=60, check=False)
