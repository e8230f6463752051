"""One function per task: what `tasks.py` calls. Each returns an exit code and knows nothing of invoke."""

from __future__ import annotations

from app.ops import audit_report, cluster, doctor, stamping, status
from app.ops.runner import TaskContext, run_task


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
