"""db.up / db.down: start and stop the embedded local PostgreSQL."""

from __future__ import annotations

from dbguard.cli.runner import TaskContext
from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.guard.config import all_targets
from dbguard.guard.targets import Target


def up_task(ctx: TaskContext) -> int:
    cluster = EmbeddedCluster.from_settings(ctx.settings)
    embedded = [t for t in all_targets(ctx.settings).values() if isinstance(t, Target) and t.embedded]
    if not embedded:
        ctx.out.info("every tier has its own URL: the embedded cluster is not used")
        return 0
    if ctx.dry_run:
        ctx.out.plan(
            f"would start the embedded cluster in {cluster.home} and create " + ", ".join(t.dbname for t in embedded)
        )
        return 0
    started = cluster.start()
    for target in embedded:
        cluster.ensure_database(target.tier)
    ctx.out.ok(
        ("started" if started else "already running") + f": {cluster.home} (socket {cluster.socket_dir}, "
        f"port {cluster.port}); databases " + ", ".join(t.dbname for t in embedded)
    )
    return 0


def down_task(ctx: TaskContext) -> int:
    cluster = EmbeddedCluster.from_settings(ctx.settings)
    if ctx.dry_run:
        ctx.out.plan(f"would stop the embedded cluster in {cluster.home}")
        return 0
    stopped = cluster.stop()
    ctx.out.ok("stopped" if stopped else "was not running")
    return 0
