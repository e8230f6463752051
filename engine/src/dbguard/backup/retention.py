"""db.backups and db.prune-backups: what is there, and keeping the newest N per tier.

Pruning never deletes the only verified backup of a tier, shows what it would delete, and
deletes only with --yes.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from dbguard.backup.files import Backup, list_backups, remove_stale_partials
from dbguard.cli.console import Output, add_row, new_table
from dbguard.errors import Refused
from dbguard.guard.tiers import Tier
from dbguard.reports.status import human_size
from dbguard.settings import Settings


def show_backups(settings: Settings, out: Output, tier: str | None) -> list[Backup]:
    backups = list_backups(settings.backups_dir, tier)
    table = new_table(
        f"backups in {settings.backups_dir}" + (f" ({tier.upper()})" if tier else ""),
        "time (UTC)",
        "tier",
        "database",
        "size",
        "revision",
        "rows",
        "verified",
        "file",
    )
    for b in reversed(backups):
        m = b.manifest
        if not m:
            verified = Text("no manifest", "red")
        elif m.get("deep_verified_at"):
            verified = Text(f"deep, {str(m['deep_verified_at'])[:16]}", "green")
        elif m.get("verified_at"):
            verified = Text(f"checksum, {str(m['verified_at'])[:16]}", "green")
        else:
            verified = Text("not yet", "yellow")
        rows = sum(dict(m.get("rows", {})).values()) if m else 0
        add_row(
            table,
            f"{b.created:%Y-%m-%d %H:%M:%S}",
            b.tier.upper(),
            str(m.get("database", "?")),
            human_size(int(m["size_bytes"])) if m.get("size_bytes") is not None else human_size(b.path.stat().st_size),
            str(m.get("revision") or "-"),
            f"{rows:,}",
            verified,
            b.path.name,
        )
    out.table(table)
    if not backups:
        out.info("no backups yet: invoke db.backup --env stg")
    return backups


@dataclass(frozen=True)
class PrunePlan:
    delete: list[Backup]
    kept_because_only_verified: list[Backup]


def plan_prune(settings: Settings, keep: int) -> PrunePlan:
    if keep < 1:
        raise Refused(f"--keep must be at least 1, not {keep}", "pass --keep 10 (or any number from 1)")
    delete: list[Backup] = []
    spared: list[Backup] = []
    for tier in Tier:
        backups = list_backups(settings.backups_dir, tier.value)  # oldest first
        doomed = backups[:-keep] if len(backups) > keep else []
        verified = [b for b in backups if b.verified_at]
        kept_verified = [b for b in verified if b not in doomed]
        if verified and not kept_verified:
            newest_verified = verified[-1]
            doomed.remove(newest_verified)
            spared.append(newest_verified)
        delete += doomed
    return PrunePlan(delete, spared)


def prune_task(settings: Settings, out: Output, *, keep: int | None, yes: bool) -> int:
    remove_stale_partials(settings.backups_dir)
    plan = plan_prune(settings, keep if keep is not None else settings.backup_keep)
    for b in plan.kept_because_only_verified:
        out.info(f"keeping {b.path.name}: it is the only verified backup of {b.tier.upper()}")
    if not plan.delete:
        out.ok("nothing to prune")
        return 0
    for b in plan.delete:
        out.info(("deleting " if yes else "would delete ") + b.path.name)
    if not yes:
        out.plan(f"{len(plan.delete)} backup(s) would be deleted; run again with --yes to delete them")
        return 0
    for b in plan.delete:
        b.path.unlink(missing_ok=True)
        b.manifest_path.unlink(missing_ok=True)
    out.ok(f"deleted {len(plan.delete)} backup(s)")
    return 0
