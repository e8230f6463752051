"""db.restore: a backup restored into a fresh scratch database first, checked, then swapped in.

A failed or killed restore leaves the target as it was (the next run removes the scratch
database). The result is re-stamped with the target's tier, so a PROD backup restored into STG
becomes STG. The target's undo point is kept (backup/undo.py): STG's is the replaced database itself,
set aside by the swap; PROD's a verified dump taken first. A backup whose checksum fails, or that
comes from a newer PostgreSQL major than the target server, is refused before anything is touched.
`--from previous` puts the undo point `<db>__previous` back instead.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from dbguard.backup.archive import ArchiveListing
from dbguard.backup.dump import take_backup
from dbguard.backup.files import Backup, resolve_backup
from dbguard.backup.undo import Aside, keeps_database, previous_name, put_back
from dbguard.backup.verify import check_file, restore_and_count, rows_differing
from dbguard.cli.runner import TaskContext
from dbguard.cluster.pgtools import require_bindir, tool_major_version
from dbguard.errors import Refused
from dbguard.failpoints import failpoint
from dbguard.guard.cleared import Cleared
from dbguard.guard.connect import server_major_version
from dbguard.guard.door import authorize_step
from dbguard.guard.locks import exclusive
from dbguard.guard.tiers import Tier
from dbguard.reports.status import human_size
from dbguard.roles.apply import carry_roles_into

RESTORE_PURPOSES = ("restore", "old")


def _major(version: object) -> int:
    try:
        return int(str(version).split(".")[0].split()[0])
    except ValueError:
        return 0


def check_versions(ctx: TaskContext, backup: Backup) -> None:
    with ctx.target.connect(read_only=True) as conn:
        server = server_major_version(conn)
    made_on = _major(backup.manifest.get("server_version"))
    if made_on > server:
        raise Refused(
            f"{backup.path.name} comes from PostgreSQL {made_on}; the {ctx.tier.value.upper()} server runs "
            f"PostgreSQL {server}, which cannot restore it",
            f"restore into a PostgreSQL {made_on} server",
        )
    bindir = require_bindir(ctx.settings.values, ("pg_restore",))
    dumped_by = int(backup.manifest.get("pg_dump_version") or 0)
    if dumped_by > tool_major_version(bindir, "pg_restore"):
        raise Refused(
            f"{backup.path.name} was written by pg_dump {dumped_by}; this machine's pg_restore is older",
            f"install PostgreSQL {dumped_by} client tools",
        )


def _restore_checked(
    ctx: TaskContext, backup: Backup, listing: ArchiveListing, scratch: Cleared
) -> tuple[dict[str, int], str | None]:
    """`backup` restored into `scratch`, re-stamped for the target, its rows checked against the manifest."""
    rows, revision = restore_and_count(
        ctx.settings, backup, scratch, listing, ctx.out, stamp_as=ctx.tier, stamp_name=ctx.target.dbname
    )
    differing = rows_differing(backup, rows)
    if differing:
        raise Refused(
            f"the restored copy differs from the manifest in {', '.join(differing)}; the target is untouched",
            "verify the backup: invoke db.verify " + backup.path.name,
        )
    return rows, revision


def restore_task(ctx: TaskContext, spec: str, *, allow_prod_data: bool = False) -> int:
    settings, target, out, tier = ctx.settings, ctx.target, ctx.out, ctx.tier
    if spec == "previous" and keeps_database(ctx):
        return put_back(ctx, what=f"the previous {tier.value.upper()}")
    began = time.monotonic()
    backup = resolve_backup(settings.backups_dir, spec, tier.value)
    ctx.facts["from"] = backup.path.name
    source_tier = backup.tier  # file name and manifest, the more careful: a manifest's "PROD" is PROD
    if source_tier == Tier.PROD.value and tier is not Tier.PROD:
        if not allow_prod_data:
            raise Refused(
                f"{backup.path.name} is a PROD backup: restoring it into {tier.value.upper()} copies real "
                "people's data there unsanitized",
                "use invoke db.refresh-staging for a sanitized copy, or pass --allow-prod-data if you must",
            )
        name = str(backup.manifest.get("database") or backup.path.name)
        action = f"copy the unsanitized data of PROD's '{name}' into {tier.value.upper()}"
        authorize_step("restore-prod-data", tier, ctx.caller, name=name, action=action, dry_run=ctx.dry_run)
    listing = check_file(settings, backup)
    check_versions(ctx, backup)
    out.ok(
        f"{backup.path.name}: checksum matches; {source_tier.upper()} '{backup.manifest.get('database')}' at "
        f"revision {backup.manifest.get('revision')}, {sum(dict(backup.manifest.get('rows', {})).values()):,} rows"
    )
    aside = keeps_database(ctx)
    if ctx.dry_run:
        steps = ["back up the target"] if ctx.clearance.rule.backup_first and not aside else []
        steps += [
            "restore into a scratch database",
            f"re-stamp it {tier.value.upper()}",
            "compare rows with the manifest",
            f"swap it in as {target.dbname}" + (f", the current one kept as {previous_name(ctx)}" if aside else ""),
        ]
        out.plan(", then ".join(steps))
        return 0
    target_exists = target.database_exists(target.dbname)
    if aside:  # STG: built beside it; the replaced database kept as the undo point
        keeper = Aside(ctx, "restore", lock=target_exists)
        with keeper as scratch:
            rows, revision = _restore_checked(ctx, backup, listing, scratch)
            keeper.swap(scratch, note=f"restore of {backup.path.name}", failpoint_name="restore:before-swap")
    else:
        target.drop_leftovers(RESTORE_PURPOSES, out=out)
        # the target's own lock keeps resets and migrations out until the swap (which needs no sessions on it)
        lock = exclusive(target, "restore") if target_exists else nullcontext()
        with target.scratch("restore") as scratch:
            with lock:
                if ctx.clearance.rule.backup_first and target_exists:
                    before = take_backup(settings, target, out, reason=f"before restore of {backup.path.name}")
                    ctx.facts["backup"] = before.path.name
                rows, revision = _restore_checked(ctx, backup, listing, scratch)
            carry_roles_into(settings, tier, target, scratch, out)  # the ownership matrix's grants (dbguard.roles)
            failpoint("restore:before-swap")
            target.swap_in(scratch, keep_old_as=None, wait_seconds=float(settings.get("SWAP_WAIT_SECONDS")), out=out)
    ctx.facts["revision"] = revision
    if aside and target_exists:
        out.info(f"the previous {target.dbname} is kept as {previous_name(ctx)}: --from previous puts it back")
    seconds = max(time.monotonic() - began, 1e-6)
    size = backup.path.stat().st_size
    out.ok(
        f"restored {backup.path.name} into {target.dbname} (stamped {tier.value.upper()}, revision {revision}, "
        f"{sum(rows.values()):,} rows): {human_size(size)} in {seconds:.1f}s, {human_size(int(size / seconds))}/s"
    )
    return 0
