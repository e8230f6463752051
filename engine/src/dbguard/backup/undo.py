"""Undo points: what the tools keep of a tier before they replace or change its data, and for how long.

- INT: none: test data, dropped freely.
- STG: the database itself. A reset, a restore or a refresh builds the new STG beside the live one
  (a scratch database) and swaps it in; the one it replaces is kept, renamed `<stg>__previous`, and the
  one kept before becomes `<stg>__undo_<UTC time>`. Nothing is copied, so it costs the same at 5 MB or
  50 GB. The newest STG_UNDO_KEEP (default 2) are kept; each new one drops the oldest beyond that.
  `db.restore --env stg --from previous` (or `db.refresh-staging --undo`) swaps `<stg>__previous` back,
  and the current STG takes its place, so it can be undone again. An operation makes room for its
  undo point as it starts (`making_room`: the oldest beyond the limit are dropped while it works, so
  the DROP DATABASE's forced checkpoint is not waited for at the end); should it then fail, STG is as
  it was and the undo points it dropped were the ones its success would have dropped. A migration
  changes STG in place, so it still takes a dump first (kept like any backup, see `db.prune-backups`).
- PROD: a real dump before every write (migrate, restore): pg_dump in PROD's snapshot, checksum and
  rows in the manifest, verified (`pg_restore --list` reads it back and finds every table it should
  hold). Kept until `db.prune-backups`, which never deletes PROD's newest verified backup nor the
  newest one taken before a PROD write.

`db.status` lists the undo points of every tier and their sizes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dbguard.cluster.scratch import PREVIOUS, sibling_name
from dbguard.errors import Refused
from dbguard.guard.stamp import read_stamp
from dbguard.guard.tiers import Tier

if TYPE_CHECKING:
    from dbguard.cli.runner import TaskContext


def keeps_database(ctx: TaskContext) -> bool:
    """Whether this run's undo point is the target database itself, set aside by the swap: a tier below
    PROD whose policy cell asks for an undo point (`backup_first`) of an operation that builds aside."""
    rule = ctx.clearance.rule
    return rule.backup_first and rule.scratch and ctx.tier is not Tier.PROD


@contextmanager
def making_room(ctx: TaskContext) -> Iterator[None]:
    """While the block builds the new database, drop the undo points its own will push beyond STG_UNDO_KEEP."""
    errors: list[BaseException] = []

    def drop() -> None:
        try:
            ctx.target.drop_undo_points(keep=ctx.settings.stg_undo_keep - 1, out=ctx.out)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=drop, name="undo-points", daemon=True)
    worker.start()
    try:
        yield
    finally:
        worker.join()
    if errors:
        raise errors[0]


def previous_name(ctx: TaskContext) -> str:
    return sibling_name(ctx.target.dbname, PREVIOUS)


def put_back(ctx: TaskContext, *, what: str = "the previous STG") -> int:
    """Swap `<db>__previous` back in (the current database takes its place, so this can be undone too)."""
    target, out = ctx.target, ctx.out
    previous = previous_name(ctx)
    if not target.database_exists(previous):
        raise Refused(f"there is no previous {ctx.tier.value.upper()} ({previous}) to put back", "nothing to undo")
    with target.sibling(previous).connect(read_only=True) as conn:
        stamp = read_stamp(conn)
    if stamp is None or stamp.tier is not ctx.tier:
        raise Refused(
            f"{previous} is not stamped {ctx.tier.value.upper()}; it will not be put in {target.dbname}'s place",
            f"inspect it, then stamp it if it really is {ctx.tier.value.upper()}: invoke db.stamp "
            f"--env {ctx.tier.value}",
        )
    if ctx.dry_run:
        out.plan(f"swap {previous} and {target.dbname}")
        return 0
    target.exchange(previous, wait_seconds=float(ctx.settings.get("SWAP_WAIT_SECONDS")), out=out)
    ctx.facts["undo_point"] = previous
    out.ok(f"put {what} back as {target.dbname}; the one it replaced is now {previous}")
    return 0
