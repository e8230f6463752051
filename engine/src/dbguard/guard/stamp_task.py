"""db.stamp: write or repair a database's tier stamp, guarded like a write.

Stamping an unstamped, empty database is the normal first step for a server the tools did not create.
Changing a stamp needs --force, and what it takes beyond that is the policy table's 're-stamp'
row, keyed by the tier the database carries now: turning a PROD database into anything else (or
re-stamping PROD for another database name) is the one unlock that could open PROD to resets, so it
is allowed only interactively, with the database name typed, and (for a coding agent) a human's consent.
A database that already holds rows is never stamped, on any tier, without the same (the
'stamp-over-data' row): it may be PROD reached through another tier's URL.
"""

from __future__ import annotations

from dbguard.cli.runner import TaskContext
from dbguard.errors import Refused
from dbguard.guard.door import authorize_step, check_restamp
from dbguard.guard.stamp import tables_with_rows, write_stamp
from dbguard.guard.tiers import Tier


def stamp_task(ctx: TaskContext, *, force: bool = False) -> int:
    target, tier = ctx.target, ctx.tier
    existing = ctx.clearance.stamp  # read by the guard, which leaves judging it to this task and 're-stamp'
    wanted = f"{tier.value.upper()} for '{target.dbname}'"
    if existing and existing.tier is tier and existing.database_name == target.dbname:
        ctx.out.ok(f"already stamped {wanted}; nothing to do")
        return 0
    if existing:
        was = f"{existing.tier.value.upper()} for '{existing.database_name}'"
        if existing.tier is Tier.PROD and tier is not Tier.PROD and not force:
            raise Refused(
                f"'{target.dbname}' is stamped PROD; re-stamping it {tier.value.upper()} would unlock resets on it",
                f"if it truly is not PROD: invoke db.stamp --env {tier.value} --force",
            )
        if not force:
            raise Refused(f"'{target.dbname}' is already stamped {was}", f"invoke db.stamp --env {tier.value} --force")
        if not ctx.dry_run:
            check_restamp(ctx.clearance, existing.tier, ctx.caller)
        ctx.facts["previous_stamp"] = was
    with target.connect(read_only=True, autocommit=True) as conn:
        filled = tables_with_rows(conn)
    if filled:
        ctx.facts["holds_rows"] = filled
        authorize_step(
            "stamp-over-data",
            tier,
            ctx.caller,
            name=target.dbname,
            action=f"stamp '{target.dbname}' as {tier.value.upper()} although it holds rows (in {', '.join(filled)})",
            dry_run=ctx.dry_run,
        )
    if ctx.dry_run:
        ctx.out.plan(
            f"would stamp '{target.dbname}' as {wanted}" + (f" (was {ctx.facts['previous_stamp']})" if existing else "")
        )
        return 0
    with target.connect() as conn:
        write_stamp(conn, tier, target.dbname)
    ctx.out.ok(f"stamped '{target.dbname}' as {wanted}")
    return 0
