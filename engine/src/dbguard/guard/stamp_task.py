"""db.stamp: write or repair a database's tier stamp, guarded like a write.

Stamping an unstamped database is the normal first step for a server the tools did not create.
Changing a stamp needs --force; turning a PROD database into anything else is the one unlock
that could open PROD to resets, so it is allowed only interactively, with the database name
typed, and (for a coding agent) a human's consent.
"""

from __future__ import annotations

from dbguard.cli.runner import TaskContext
from dbguard.errors import Refused
from dbguard.guard.connect import connect
from dbguard.guard.door import check_caller
from dbguard.guard.policy import Confirm, Rule
from dbguard.guard.stamp import read_stamp, write_stamp
from dbguard.guard.tiers import Tier

UNSTAMP_PROD = Rule(True, confirm=Confirm.INTERACTIVE)


def stamp_task(ctx: TaskContext, *, force: bool = False) -> int:
    target, tier = ctx.target, ctx.tier
    with connect(target, read_only=True) as conn:
        existing = read_stamp(conn)
    wanted = f"{tier.value.upper()} for '{target.dbname}'"
    if existing and existing.tier is tier and existing.database_name == target.dbname:
        ctx.out.ok(f"already stamped {wanted}; nothing to do")
        return 0
    if existing:
        was = f"{existing.tier.value.upper()} for '{existing.database_name}'"
        if existing.tier is Tier.PROD and tier is not Tier.PROD:
            if not force:
                raise Refused(
                    f"'{target.dbname}' is stamped PROD; re-stamping it {tier.value.upper()} would unlock resets on it",
                    f"if it truly is not PROD: invoke db.stamp --env {tier.value} --force",
                )
            if not ctx.dry_run:
                check_caller(UNSTAMP_PROD, Tier.PROD, target, ctx.caller, None, "re-stamp PROD as " + tier.value)
        elif not force:
            raise Refused(f"'{target.dbname}' is already stamped {was}", f"invoke db.stamp --env {tier.value} --force")
        ctx.facts["previous_stamp"] = was
    if ctx.dry_run:
        ctx.out.plan(
            f"would stamp '{target.dbname}' as {wanted}" + (f" (was {ctx.facts['previous_stamp']})" if existing else "")
        )
        return 0
    with connect(target) as conn:
        write_stamp(conn, tier, target.dbname)
    ctx.out.ok(f"stamped '{target.dbname}' as {wanted}")
    return 0
