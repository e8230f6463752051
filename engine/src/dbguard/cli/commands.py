"""Task bodies the engine's modules lack in the shape `body(ctx, **options)`; `catalog.TASKS` names them.

Each body imports what it uses inside itself: running one task must not import what the others
need (Alembic, SQLAlchemy, Faker...), and importing this module must cost nothing.
"""

# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dbguard.cli.runner import TaskContext


def status(ctx: TaskContext) -> int:
    from dbguard.reports.status import show_status

    show_status(ctx.settings, ctx.out)
    return 0


def doctor(ctx: TaskContext) -> int:
    from dbguard.reports.doctor import show_doctor

    report = show_doctor(ctx.settings, ctx.out)
    return 1 if report.required_failures else 0


def seed(ctx: TaskContext, *, scenario: str, seed: int, scale: float, append: bool) -> int:
    from dbguard.seeding.reset import seed_task

    return seed_task(ctx, scenario=scenario, seed_value=seed, scale=scale, append=append)


def reset(ctx: TaskContext, *, no_seed: bool, scenario: str, seed: int, scale: float) -> int:
    from dbguard.seeding.reset import reset_task

    return reset_task(ctx, seed=not no_seed, scenario=scenario, seed_value=seed, scale=scale)


def backup(ctx: TaskContext) -> int:
    if ctx.dry_run:
        ctx.out.plan(
            f"pg_dump {ctx.target.dbname} (custom format) into {ctx.settings.backups_dir}, "
            "with a manifest, in a read-only session"
        )
        return 0
    from dbguard.backup.dump import take_backup

    made = take_backup(ctx.settings, ctx.target, ctx.out)
    ctx.facts["file"] = made.path.name
    return 0


def backups(ctx: TaskContext, *, tier: str | None) -> int:
    from dbguard.backup.retention import show_backups

    show_backups(ctx.settings, ctx.out, tier.lower() if tier else None)
    return 0


def restore(ctx: TaskContext, *, from_: str, allow_prod_data: bool) -> int:
    from dbguard.backup.restore import restore_task

    return restore_task(ctx, from_, allow_prod_data=allow_prod_data)


def prune_backups(ctx: TaskContext, *, keep: int | None, yes: bool) -> int:
    from dbguard.backup.retention import prune_task

    return prune_task(ctx.settings, ctx.out, keep=keep, yes=yes, caller=ctx.caller)


def ladder(*, report: str | None, apply_stg: bool) -> int:
    """Unguarded here: the ladder's own entry point (also `nox -s migrations`) runs the guard."""
    from dbguard.ladder.rungs import main

    return main([*(["--report", report] if report else []), *(["--apply-stg"] if apply_stg else [])])
