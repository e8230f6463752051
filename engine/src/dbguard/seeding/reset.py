"""db.reset and db.seed: rebuild the app schema through Alembic and fill it with seed data.

Killed at any moment, the database keeps its old contents and nothing half-made survives. Never on
PROD (the policy table). Two ways, by the tier's policy cell:
- a tier that keeps an undo point (STG, `backup_first`): the new database is built beside the live one
  (a scratch database: migrate from empty to head, seed, stamp), then swapped in; the old database is
  kept, renamed `<db>__previous`, as the undo point: nothing is copied, however large it is;
- otherwise (INT): one transaction in place: drop the app's schemas, migrate, seed. The tier stamp
  lives in its own schema and is never dropped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from psycopg import sql

from dbguard.backup.undo import Aside
from dbguard.cli.console import Output, add_row, new_table
from dbguard.cli.runner import TaskContext
from dbguard.cluster.scratch import PREVIOUS, sibling_name
from dbguard.errors import Refused
from dbguard.failpoints import failpoint
from dbguard.guard.locks import exclusive
from dbguard.guard.stamp import write_stamp
from dbguard.migrations.history import current_revision, head, pending_revisions
from dbguard.migrations.schema import APP_SCHEMAS, StepsOutside, drop_app_schemas, other_schemas, raw, upgrade
from dbguard.roles.apply import carry_roles
from dbguard.seeding.runner import SeedPlan, TableResult, app_tables_with_rows, make_plan, seed_database

if TYPE_CHECKING:
    from sqlalchemy import Connection as SAConnection

RESET_LOCK_TIMEOUT = "10s"  # how long a reset waits for the app's own sessions to let go of a table


def show_plan(out: Output, plan: SeedPlan) -> None:
    table = new_table(f"seed scenario '{plan.scenario}' (seed {plan.seed}, scale {plan.scale:g})", "table", "rows")
    for name, count in plan.counts.items():
        add_row(table, name, f"{count:,}")
    out.table(table)


def show_results(out: Output, results: list[TableResult], seconds: float) -> None:
    table = new_table("seeded", "table", "module", "rows", "seconds", "rows/s")
    for r in results:
        add_row(table, r.table, r.module, f"{r.rows:,}", f"{r.seconds:.2f}", f"{r.rows / max(r.seconds, 1e-9):,.0f}")
    out.table(table)
    total = sum(r.rows for r in results)
    out.ok(f"seeded {total:,} rows in {seconds:.2f}s: {total / max(seconds, 1e-9):,.0f} rows/s")


def reset_task(
    ctx: TaskContext, *, seed: bool = True, scenario: str = "demo", seed_value: int = 1, scale: float = 1.0
) -> int:
    settings, target, out = ctx.settings, ctx.target, ctx.out
    plan = make_plan(ctx.settings.project, scenario, seed=seed_value, scale=scale) if seed else None
    code_head = head(settings) or "base (no revisions yet)"
    ctx.facts.update({"scenario": scenario if seed else None, "head": code_head})
    aside = ctx.clearance.rule.backup_first  # STG: keep the live database as the undo point
    metadata = settings.project.metadata
    previous = sibling_name(target.dbname, PREVIOUS)
    if ctx.dry_run:
        if aside:
            out.plan(
                f"back up {target.dbname} by keeping it, renamed {previous}, as its undo point (nothing is copied); "
                "build the new one beside it and swap it in"
            )
            out.plan(
                f"in a new database: migrate from empty to {code_head} through Alembic"
                + (", then seed" if plan else "")
                + f", stamp it {ctx.tier.value.upper()}"
            )
        else:
            out.plan(
                f"in one transaction: drop schema(s) {', '.join([*APP_SCHEMAS, *other_schemas(metadata)])} "
                "(the tier stamp stays), "
                f"migrate from empty to {code_head} through Alembic" + (", then seed" if plan else "")
            )
        if plan:
            show_plan(out, plan)
        return 0
    if aside:
        _reset_aside(ctx, plan, code_head)
    else:
        with exclusive(target, "reset"):
            began = time.perf_counter()
            try:
                with target.sa_connection() as conn, conn.begin():
                    raw(conn).execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(RESET_LOCK_TIMEOUT)))
                    drop_app_schemas(conn, metadata)
                    failpoint("reset:schema-dropped")
                    _rebuild(ctx, conn, plan, code_head, began)
                    carry_roles(settings, ctx.tier, target, raw(conn), out)  # the ownership matrix's grants
            except StepsOutside:  # rolled back whole: INT is as it was
                _rebuild_in_steps(ctx, plan, code_head, began)
    out.ok(f"reset {target.dbname}: at {code_head}" + (f", seeded '{scenario}'" if plan else ", empty"))
    if aside:
        out.info(f"the previous {target.dbname} is kept as {previous}: invoke db.restore --env stg --from previous")
    return 0


def _rebuild(ctx: TaskContext, conn: SAConnection, plan: SeedPlan | None, code_head: str, began: float) -> None:
    upgrade(ctx.settings, conn, "head")
    ctx.out.info(f"schema rebuilt at {code_head} through Alembic")
    _seed(ctx, conn, plan, began)


def _seed(ctx: TaskContext, conn: SAConnection, plan: SeedPlan | None, began: float) -> None:
    results = seed_database(raw(conn), plan, ctx.out) if plan else []
    if plan:
        show_results(ctx.out, results, time.perf_counter() - began)


def _rebuild_in_steps(ctx: TaskContext, plan: SeedPlan | None, code_head: str, began: float) -> None:
    """INT in place when a revision steps outside its transaction (docs/migrations.md): the schemas dropped,
    the revisions run in Alembic's own transactions, then the seed. Not one transaction: INT is the tests'
    database, freely rebuilt, and a reset killed half-way is put right by running it again."""
    settings, target = ctx.settings, ctx.target
    ctx.out.warn(
        "a revision steps outside its transaction (autocommit_block): INT is rebuilt in steps, not in one "
        "transaction (if this reset is stopped half-way, run it again)"
    )
    with target.sa_connection() as conn:
        with conn.begin():
            raw(conn).execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(RESET_LOCK_TIMEOUT)))
            drop_app_schemas(conn, settings.project.metadata)
        failpoint("reset:schema-dropped")
        upgrade(settings, conn, "head")
        ctx.out.info(f"schema rebuilt at {code_head} through Alembic")
        with conn.begin():
            _seed(ctx, conn, plan, began)
            carry_roles(settings, ctx.tier, target, raw(conn), ctx.out)


def _reset_aside(ctx: TaskContext, plan: SeedPlan | None, code_head: str) -> None:
    """The new database built in a scratch database beside the live one (locked meanwhile), stamped, then
    swapped in; the live one kept as the undo point (backup/undo.py)."""
    aside = Aside(ctx, "reset")
    with aside as into:
        began = time.perf_counter()
        with into.sa_connection() as conn:
            failpoint("reset:schema-dropped")  # the database being written holds no app schema yet
            upgrade(ctx.settings, conn, "head")  # Alembic's own transactions: autocommit blocks run too
            ctx.out.info(f"schema rebuilt at {code_head} through Alembic")
            with conn.begin():  # a scratch database: the swap, not one transaction, keeps the reset whole
                _seed(ctx, conn, plan, began)
                write_stamp(raw(conn), ctx.tier, ctx.target.dbname)
        aside.swap(into, note="reset", failpoint_name="reset:before-swap")


def seed_task(
    ctx: TaskContext, *, scenario: str = "demo", seed_value: int = 1, scale: float = 1.0, append: bool = False
) -> int:
    settings, target, out = ctx.settings, ctx.target, ctx.out
    plan = make_plan(ctx.settings.project, scenario, seed=seed_value, scale=scale)
    ctx.facts.update({"scenario": scenario, "rows": sum(plan.counts.values())})
    with target.connect(read_only=True) as reading:
        current = current_revision(reading)
        pending = pending_revisions(settings, current)
        if pending:
            raise Refused(
                f"the schema is not at head: pending revision(s) {', '.join(pending)}",
                f"invoke db.migrate --env {ctx.tier.value}",
            )
        filled = app_tables_with_rows(reading, ctx.settings.project)
    if filled and not append:
        raise Refused(
            f"'{target.dbname}' already holds rows (in {', '.join(filled)})",
            f"pass --append to add to them, or start over: invoke db.reset --env {ctx.tier.value}",
        )
    show_plan(out, plan)
    if ctx.dry_run:
        out.plan(f"seed '{scenario}' into {target.dbname} in one transaction" + (" (appending)" if append else ""))
        return 0
    with exclusive(target, "seed"):
        began = time.perf_counter()
        with target.sa_connection() as conn, conn.begin():
            results = seed_database(raw(conn), plan, out, append=append)
        show_results(out, results, time.perf_counter() - began)
    return 0
