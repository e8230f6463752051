"""One function per task: what `tasks.py` calls. Each returns an exit code and knows nothing of invoke."""

from __future__ import annotations

from dbguard.audit import report as audit_report
from dbguard.backup import dump as backup
from dbguard.backup import files as backup_files
from dbguard.backup import restore, retention
from dbguard.backup import verify as backup_verify
from dbguard.cli.runner import TaskContext, run_task
from dbguard.cluster import updown as cluster
from dbguard.guard import stamp_task as stamping
from dbguard.guard.config import target_for
from dbguard.guard.door import open_target
from dbguard.guard.tiers import Tier
from dbguard.ladder import rungs
from dbguard.migrations import autogenerate as revision
from dbguard.migrations import migrate
from dbguard.refresh import staging as refresh
from dbguard.reports import doctor, status
from dbguard.seeding import reset


def up(env: str | None = None, dry_run: bool = False) -> int:
    return run_task("up", env, {}, cluster.up_task, dry_run=dry_run)


def down(env: str | None = None, dry_run: bool = False) -> int:
    return run_task("down", env, {}, cluster.down_task, dry_run=dry_run)


def show_status(env: str | None = None) -> int:
    def body(ctx: TaskContext) -> int:
        status.show_status(ctx.settings, ctx.out)
        return 0

    return run_task("status", env, {}, body)


def run_doctor(env: str | None = None) -> int:
    def body(ctx: TaskContext) -> int:
        report = doctor.show_doctor(ctx.settings, ctx.out)
        return 1 if report.required_failures else 0

    return run_task("doctor", env, {}, body)


def show_audit(env: str | None = None, verify: bool = False, limit: int = 20) -> int:
    return run_task(
        "audit",
        env,
        {"verify": verify, "limit": limit},
        lambda ctx: audit_report.audit_task(ctx, verify=verify, limit=limit),
    )


def stamp(env: str | None = None, force: bool = False, confirm: str | None = None, dry_run: bool = False) -> int:
    return run_task(
        "stamp",
        env,
        {"force": force},
        lambda ctx: stamping.stamp_task(ctx, force=force),
        confirm=confirm,
        dry_run=dry_run,
    )


def run_migrate(
    env: str | None = None, to: str | None = None, confirm: str | None = None, dry_run: bool = False
) -> int:
    return run_task(
        "migrate", env, {"to": to}, lambda ctx: migrate.migrate_task(ctx, to), confirm=confirm, dry_run=dry_run
    )


def run_seed(
    env: str | None = None,
    scenario: str = "demo",
    seed: int = 1,
    scale: float = 1.0,
    append: bool = False,
    dry_run: bool = False,
) -> int:
    args = {"scenario": scenario, "seed": seed, "scale": scale, "append": append}
    return run_task(
        "seed",
        env,
        args,
        lambda ctx: reset.seed_task(ctx, scenario=scenario, seed_value=seed, scale=scale, append=append),
        dry_run=dry_run,
    )


def run_reset(
    env: str | None = None,
    no_seed: bool = False,
    scenario: str = "demo",
    seed: int = 1,
    scale: float = 1.0,
    dry_run: bool = False,
) -> int:
    args = {"no_seed": no_seed, "scenario": scenario, "seed": seed, "scale": scale}
    return run_task(
        "reset",
        env,
        args,
        lambda ctx: reset.reset_task(ctx, seed=not no_seed, scenario=scenario, seed_value=seed, scale=scale),
        dry_run=dry_run,
    )


def run_revision(message: str, env: str | None = None, dry_run: bool = False) -> int:
    return run_task(
        "revision", env, {"message": message}, lambda ctx: revision.revision_task(ctx, message), dry_run=dry_run
    )


def run_backup(env: str | None = None, dry_run: bool = False) -> int:
    def body(ctx: TaskContext) -> int:
        if ctx.dry_run:
            ctx.out.plan(
                f"pg_dump {ctx.target.dbname} (custom format) into {ctx.settings.backups_dir}, "
                "with a manifest, in a read-only session"
            )
            return 0
        made = backup.take_backup(ctx.settings, ctx.target, ctx.out)
        ctx.facts["file"] = made.path.name
        return 0

    return run_task("backup", env, {}, body, dry_run=dry_run)


def show_backups(env: str | None = None, tier: str | None = None) -> int:
    def body(ctx: TaskContext) -> int:
        retention.show_backups(ctx.settings, ctx.out, tier.lower() if tier else None)
        return 0

    return run_task("backups", env, {"tier": tier}, body)


def verify(spec: str = "latest", env: str | None = None, deep: bool = False) -> int:
    def body(ctx: TaskContext) -> int:
        found = backup_files.resolve_backup(ctx.settings.backups_dir, spec, None)
        ctx.facts["file"] = found.path.name
        server = open_target(ctx.settings, target_for(ctx.settings, Tier.INT)) if deep else None
        backup_verify.verify_backup(ctx.settings, found, deep=deep, server=server, out=ctx.out)
        return 0

    return run_task("verify", env, {"spec": spec, "deep": deep}, body)


def run_restore(
    env: str | None = None,
    source: str = "latest",
    confirm: str | None = None,
    allow_prod_data: bool = False,
    dry_run: bool = False,
) -> int:
    return run_task(
        "restore",
        env,
        {"from": source, "allow_prod_data": allow_prod_data},
        lambda ctx: restore.restore_task(ctx, source, allow_prod_data=allow_prod_data),
        confirm=confirm,
        dry_run=dry_run,
    )


def prune_backups(env: str | None = None, keep: int | None = None, yes: bool = False) -> int:
    return run_task(
        "prune-backups",
        env,
        {"keep": keep, "yes": yes},
        lambda ctx: retention.prune_task(ctx.settings, ctx.out, keep=keep, yes=yes),
    )


def refresh_staging(env: str | None = None, undo: bool = False, dry_run: bool = False) -> int:
    return run_task(
        "refresh-staging", env, {"undo": undo}, lambda ctx: refresh.refresh_task(ctx, undo=undo), dry_run=dry_run
    )


def sanitize_check(env: str | None = None) -> int:
    return run_task("sanitize-check", env, {}, refresh.sanitize_check_task)


def run_ladder(report: str | None = None, apply_stg: bool = False) -> int:
    return rungs.main([*(["--report", report] if report else []), *(["--apply-stg"] if apply_stg else [])])
