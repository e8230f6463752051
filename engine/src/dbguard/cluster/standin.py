"""db.fill-standin: seed data in the embedded stand-in PROD, so PROD's chores can be tried on one laptop.

What must always hold: only the embedded stand-in PROD of a laptop set-up (neither PROD_DATABASE_URL nor
STG_DATABASE_URL set) is ever filled; a PROD reached through a URL is never seeded, by this task or any
flag (the policy row's `standin_only`, checked by the guard before anything is opened). The fill is a
PROD write like the others: the database name typed (or --confirm), a coding agent needs a human's
consent, a backup first (the stand-in's undo point: `invoke db.restore --env prod`), one audit line.

The stand-in is rebuilt from empty through Alembic (each revision in its own transaction, autocommit
blocks allowed) and seeded in one transaction. Killed half-way, it holds part of the new schema: the
stand-in carries no real data, and running the fill again rebuilds it from empty.
"""

from __future__ import annotations

import time

from dbguard.backup.dump import take_backup
from dbguard.cli.runner import TaskContext
from dbguard.guard.locks import exclusive
from dbguard.migrations.history import head
from dbguard.migrations.schema import apply, drop_app_schemas, raw, upgrade
from dbguard.seeding.reset import show_plan, show_results
from dbguard.seeding.runner import make_plan, seed_database

NEXT_STEPS = (
    "try PROD's chores on it: invoke db.backup --env prod, invoke db.refresh-staging, nox -s migrations "
    "(the ladder rehearses pending revisions on the newest verified PROD backup)"
)


def fill_standin_task(ctx: TaskContext, *, scenario: str = "demo", seed: int = 1, scale: float = 1.0) -> int:
    settings, target, out = ctx.settings, ctx.target, ctx.out
    plan = make_plan(settings.project, scenario, seed=seed, scale=scale)
    code_head = head(settings) or "base"
    ctx.facts.update({"scenario": scenario, "head": code_head, "rows": sum(plan.counts.values())})
    show_plan(out, plan)
    if ctx.dry_run:
        out.plan(
            f"back up the stand-in PROD '{target.dbname}', drop its app schemas (the tier stamp stays), "
            f"migrate from empty to {code_head} through Alembic, seed '{scenario}'"
        )
        return 0
    with exclusive(target, "fill the stand-in PROD"):
        backup = take_backup(settings, target, out, reason="before fill-standin")
        ctx.facts["backup"] = backup.path.name
        began = time.perf_counter()
        with target.sa_connection() as conn, conn.begin():
            drop_app_schemas(conn)
        apply(settings, target, f"upgrade to {code_head}", lambda conn: upgrade(settings, conn, "head"), out)
        with target.sa_connection() as conn, conn.begin():
            results = seed_database(raw(conn), plan, out)
        show_results(out, results, time.perf_counter() - began)
    out.ok(f"filled the stand-in PROD '{target.dbname}': at {code_head}, seeded '{scenario}'")
    out.info(NEXT_STEPS)
    return 0
