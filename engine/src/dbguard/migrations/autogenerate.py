"""db.revision: autogenerate a migration by comparing the models with INT's schema at head.

INT is brought to head inside a transaction that is rolled back afterwards, so the comparison
is always against the current head and INT is left exactly as it was.
"""

from __future__ import annotations

from alembic import command

from dbguard.cli.runner import TaskContext
from dbguard.errors import Refused
from dbguard.migrations.history import alembic_config, head
from dbguard.migrations.schema import upgrade


def revision_task(ctx: TaskContext, message: str) -> int:
    if not message.strip():
        raise Refused("a revision needs a message", 'pass -m "what it changes"')
    if ctx.dry_run:
        ctx.out.plan(f"compare the models with INT at {head(ctx.settings)} and write a revision '{message}'")
        return 0
    with ctx.target.sa_connection() as conn:
        trans = conn.begin()
        try:
            upgrade(ctx.settings, conn, "head")
            cfg = alembic_config(ctx.settings)
            cfg.attributes["connection"] = conn
            script = command.revision(cfg, message=message, autogenerate=True)
        finally:
            trans.rollback()
    scripts = script if isinstance(script, list) else [script]
    for s in scripts:
        if s is not None:
            ctx.out.ok(f"wrote {s.path}: review it before committing")
            ctx.facts["file"] = s.path
    return 0
