"""db.migrate (and the plain `alembic` CLI): pending revisions first, then upgrade or downgrade.

STG is backed up first; PROD needs the typed database name, a backup, and a passing ladder for
exactly these migration files and this PROD at its revision now (this machine's record, or the
ladder's report with --ladder-report: dbguard.ladder.gate). One schema change per database at a
time (advisory lock), each run with lock_timeout and statement_timeout so it never queues behind
production traffic; a lock timeout is tried again (MIGRATION_LOCK_RETRIES). Each revision runs in
its own transaction, and a revision may step outside it (`autocommit_block`: concurrent index
builds, enum values, batched backfills) on the same guarded session: see dbguard.migrations.schema.
A failure is one line: what broke, the revision the database is at now, what it left (INVALID
indexes), and the command that recovers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection as SAConnection

from dbguard.backup.dump import take_backup
from dbguard.cli.console import add_row, new_table
from dbguard.cli.runner import TaskContext, run_task
from dbguard.errors import Refused
from dbguard.guard.door import authorize_step
from dbguard.guard.locks import exclusive
from dbguard.ladder.gate import check_gate, read_prod_facts
from dbguard.migrations.history import current_revision, script_directory
from dbguard.migrations.schema import apply, downgrade, upgrade
from dbguard.roles.apply import regrant_after_migration
from dbguard.settings import Settings


def resolve_destination(script: ScriptDirectory, to: str | None) -> str:
    """A full revision id (or 'base'); an unknown one is refused with the way to list them."""
    heads = script.get_heads()
    if to is None or to == "head":
        if len(heads) != 1:
            raise Refused(
                f"the migrations have {len(heads)} heads ({', '.join(heads)})",
                "merge them: alembic merge heads -m 'merge'",
            )
        return heads[0]
    if to == "base":
        return "base"
    try:
        revision = script.get_revision(to)
    except CommandError as exc:
        raise Refused(f"unknown revision '{to}': {exc}", "list the revisions: alembic history") from None
    if revision is None:
        raise Refused(f"unknown revision '{to}'", "list the revisions: alembic history")
    return revision.revision


def plan_steps(script: ScriptDirectory, current: str | None, destination: str) -> tuple[str, list[str]]:
    """('upgrade' | 'downgrade', revisions in the order they will run)."""
    below_current = {r.revision for r in script.iterate_revisions(current, "base")} if current else set()
    if destination == "base" or (destination in below_current and destination != current):
        steps = [r.revision for r in script.iterate_revisions(current, destination) if r.revision != destination]
        return "downgrade", steps
    steps = [r.revision for r in script.iterate_revisions(destination, current or "base")]
    return "upgrade", list(reversed([s for s in steps if s != current]))


def migrate_task(ctx: TaskContext, to: str | None = None, ladder_report: str | None = None) -> int:
    """`ladder_report`: for PROD, the ladder's report from another machine, checked in place of this one's record."""
    settings, target, out, rule = ctx.settings, ctx.target, ctx.out, ctx.clearance.rule
    script = script_directory(settings)
    destination = resolve_destination(script, to)
    with target.connect(read_only=True) as reading:
        current = current_revision(reading)
        prod = read_prod_facts(reading) if rule.needs_ladder else None
    direction, steps = plan_steps(script, current, destination)
    ctx.facts.update({"from": current, "to": destination, "direction": direction, "steps": steps})
    if not steps:
        out.ok(f"already at {current or 'base'}; nothing to migrate")
        return 0
    table = new_table(f"{direction} {current or 'base'} -> {destination}", "step", "revision", "message")
    for i, rev in enumerate(steps, 1):
        add_row(table, str(i), rev, script.get_revision(rev).doc or "")
    out.table(table)
    if direction == "downgrade":  # dropping what later revisions made: the 'downgrade' row says who may
        authorize_step(
            "downgrade",
            ctx.tier,
            ctx.caller,
            name=target.dbname,
            action=f"downgrade {ctx.tier.value.upper()} '{target.dbname}' to {destination}",
            dry_run=ctx.dry_run,
        )
    if prod is not None:
        gate = check_gate(settings, prod, Path(ladder_report) if ladder_report else None)
        where = f" (report {ladder_report})" if ladder_report else ""
        out.info(f"ladder passed for these migration files and this PROD at {gate.passed_at}{where}")
    elif ladder_report:
        out.info(f"--ladder-report is read for PROD only; {ctx.tier.value.upper()} needs no ladder")
    if ctx.dry_run:
        out.plan(
            ("back up, then " if rule.backup_first else "") + f"{direction} {len(steps)} revision(s), "
            "each in its own transaction (but for its autocommit blocks), "
            f"with lock_timeout={settings.get('MIGRATION_LOCK_TIMEOUT')}"
        )
        return 0
    with exclusive(target, "migrate"):
        if rule.backup_first:
            backup = take_backup(settings, target, out, reason=f"before migrate to {destination}")
            ctx.facts["backup"] = backup.path.name
        step = upgrade if direction == "upgrade" else downgrade
        apply(settings, target, f"{direction} to {destination}", lambda conn: step(settings, conn, destination), out)
        regrant_after_migration(settings, ctx.tier, target, out)  # tables it added: the ownership matrix's grants
    out.ok(f"{direction}d {target.dbname} to {destination} ({len(steps)} revision(s))")
    return 0


ALEMBIC_OPERATIONS = {"current": "status", "check": "status", "revision": "revision"}


def alembic_cli_task(
    settings: Settings, command: str, env: str | None, confirm: str | None, run_on: Callable[[SAConnection], None]
) -> int:
    """The plain `alembic -x env=...` CLI, through the same guard, audit and safety steps as db.migrate."""
    operation = ALEMBIC_OPERATIONS.get(command, "migrate")

    def body(ctx: TaskContext) -> int:
        if operation == "migrate":
            if command == "downgrade":
                authorize_step("downgrade", ctx.tier, ctx.caller, name=ctx.target.dbname)
            if ctx.clearance.rule.needs_ladder:
                with ctx.target.connect(read_only=True) as reading:
                    check_gate(ctx.settings, read_prod_facts(reading))
            with exclusive(ctx.target, "migrate"):
                if ctx.clearance.rule.backup_first:
                    backup = take_backup(ctx.settings, ctx.target, ctx.out, reason=f"before alembic {command}")
                    ctx.facts["backup"] = backup.path.name
                apply(ctx.settings, ctx.target, f"alembic {command}", run_on, ctx.out)
                regrant_after_migration(ctx.settings, ctx.tier, ctx.target, ctx.out)
            return 0
        with ctx.target.sa_connection() as conn:
            run_on(conn)
        return 0

    return run_task(operation, env, {"alembic": command}, body, settings=settings, confirm=confirm)
