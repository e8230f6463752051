"""Undo points: what the tools keep of a tier before they replace or change its data, and for how long.

- INT: none: test data, dropped freely.
- STG: the database itself. A reset, a restore or a refresh builds the new STG beside the live one
  (a scratch database) and swaps it in; the one it replaces is kept, renamed `<stg>__previous`, and the
  one kept before becomes `<stg>__undo_<UTC time>`. Nothing is copied, so it costs the same at 5 MB or
  50 GB. The newest STG_UNDO_KEEP (default 2) are kept; each new one drops the oldest beyond that.
  `db.restore --env stg --from previous` (or `db.refresh-staging --undo`) swaps `<stg>__previous` back,
  and the current STG takes its place, so it can be undone again. An operation makes room for its
  undo point as it starts (`Aside`); should it then fail, STG is as it was and the undo points it
  dropped were the ones its success would have dropped. A migration
  changes STG in place, so it still takes a dump first (kept like any backup, see `db.prune-backups`).
- PROD: a real dump before every write (migrate, restore): pg_dump in PROD's snapshot, checksum and
  rows in the manifest, verified (`pg_restore --list` reads it back and finds every table it should
  hold). Kept until `db.prune-backups`, which never deletes PROD's newest verified backup nor the
  newest one taken before a PROD write.

`db.status` lists the undo points of every tier and their sizes.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from typing import TYPE_CHECKING

from dbguard.cluster.scratch import PREVIOUS, sibling_name
from dbguard.errors import Refused
from dbguard.failpoints import failpoint
from dbguard.guard.locks import exclusive
from dbguard.guard.stamp import read_stamp
from dbguard.guard.tiers import Tier
from dbguard.roles.apply import carry_roles_into

if TYPE_CHECKING:
    from dbguard.cli.runner import TaskContext
    from dbguard.guard.cleared import Cleared


def keeps_database(ctx: TaskContext) -> bool:
    """Whether this run's undo point is the target database itself, set aside by the swap: a tier below
    PROD whose policy cell asks for an undo point (`backup_first`) of an operation that builds aside."""
    rule = ctx.clearance.rule
    return rule.backup_first and rule.scratch and ctx.tier is not Tier.PROD


class Aside:
    """Replace `ctx.target` by a database built beside it, keeping the target as its undo point:

        with Aside(ctx, "reset") as into:     # live database locked, room made, scratch database made
            ...build into `into`...
        # on success, inside the block's end: aside.swap(note) swaps it in (lock released first)

    Order, each step before the next: scratch databases killed runs left are dropped; the live database's
    lock is taken (another reset, restore, migrate or refresh is refused at once); the undo points this
    one's will push beyond STG_UNDO_KEEP are dropped (now, while little is dirty: DROP DATABASE forces a
    checkpoint); the scratch database is made. Should the build fail, STG is as it was, and the undo points
    dropped are the ones its success would have dropped.
    """

    def __init__(self, ctx: TaskContext, purpose: str, *, lock: bool = True) -> None:
        self.ctx, self.purpose, self.lock = ctx, purpose, lock
        self.stack = ExitStack()
        self.locked = ExitStack()
        self.errors: list[BaseException] = []
        self.dropping = threading.Thread(target=self._drop, name="undo-points", daemon=True)

    def __enter__(self) -> Cleared:
        target = self.ctx.target
        target.drop_leftovers((self.purpose, "old", "exchange"), out=self.ctx.out)
        with ExitStack() as stack:
            stack.enter_context(self.locked)
            if self.lock:
                self.locked.enter_context(exclusive(target, self.purpose))
            self.dropping.start()
            stack.callback(self._dropped)
            into = stack.enter_context(target.scratch(self.purpose))
            self.stack = stack.pop_all()
        return into

    def _drop(self) -> None:
        try:
            self.ctx.target.drop_undo_points(keep=self.ctx.settings.stg_undo_keep - 1, out=self.ctx.out)
        except BaseException as exc:  # re-raised in the caller's thread
            self.errors.append(exc)

    def _dropped(self) -> None:
        """Wait for the undo points beyond the limit to be dropped; raise what failed."""
        if self.dropping.is_alive():
            self.dropping.join()
        if self.errors:
            raise self.errors.pop()

    def swap(self, into: Cleared, *, note: str, failpoint_name: str = "") -> None:
        """Release the lock (a database cannot be renamed under a session), then swap `into` in."""
        carry_roles_into(self.ctx.settings, self.ctx.tier, self.ctx.target, into, self.ctx.out)
        self._dropped()
        self.locked.close()
        if failpoint_name:
            failpoint(failpoint_name)
        self.ctx.target.swap_in(
            into,
            keep_old_as=previous_name(self.ctx),
            wait_seconds=float(self.ctx.settings.get("SWAP_WAIT_SECONDS")),
            out=self.ctx.out,
            keep=self.ctx.settings.stg_undo_keep,
            note=note,
        )
        self.ctx.facts["undo_point"] = previous_name(self.ctx)

    def __exit__(self, *exc: object) -> None:
        self.stack.close()  # the lock, then the scratch database (a no-op once it was swapped in)


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
