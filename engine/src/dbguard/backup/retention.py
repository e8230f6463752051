"""db.backups and db.prune-backups: what is there, and keeping the newest N per tier.

What pruning must never do: delete the only verified backup of a tier; delete PROD's newest verified
backup, or the newest backup taken before a PROD write (a migrate or restore: "before ..."), since
either may be all that is left of PROD's data. It shows what it would delete and deletes only with
--yes; deleting any PROD backup also takes the 'delete-backups' row of the policy table: at an
interactive terminal only, the PROD database name typed, and a human's consent for a coding agent.
A backup's tier is `Backup.tier` (file name and manifest, the more careful of the two).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text

from dbguard.backup.files import Backup, list_backups, remove_stale_partials
from dbguard.cli.console import Output, add_row, new_table
from dbguard.errors import Refused
from dbguard.guard.caller import Caller
from dbguard.guard.door import authorize_step
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
    kept_for_prod: dict[str, str] = field(default_factory=dict)  # file name -> why PROD needs it kept


def _protected_prod(backups: list[Backup]) -> dict[str, str]:
    """PROD's backups that retention never deletes (oldest first in, file name -> why)."""
    kept: dict[str, str] = {}
    verified = [b for b in backups if b.verified_at]
    if verified:
        kept[verified[-1].path.name] = "the newest verified PROD backup"
    before_write = [b for b in backups if b.reason.startswith("before ")]
    if before_write:
        kept.setdefault(before_write[-1].path.name, f"taken {before_write[-1].reason}, the latest PROD write")
    return kept


def plan_prune(settings: Settings, keep: int) -> PrunePlan:
    if keep < 1:
        raise Refused(f"--keep must be at least 1, not {keep}", "pass --keep 10 (or any number from 1)")
    delete: list[Backup] = []
    spared: list[Backup] = []
    kept_for_prod: dict[str, str] = {}
    for tier in Tier:
        backups = list_backups(settings.backups_dir, tier.value)  # oldest first, by Backup.tier
        doomed = backups[:-keep] if len(backups) > keep else []
        if tier is Tier.PROD:
            protected = _protected_prod(backups)
            kept_for_prod = {name: why for name, why in protected.items() if name in {b.path.name for b in doomed}}
            doomed = [b for b in doomed if b.path.name not in protected]
        verified = [b for b in backups if b.verified_at]
        kept_verified = [b for b in verified if b not in doomed]
        if verified and not kept_verified:
            newest_verified = verified[-1]
            doomed.remove(newest_verified)
            spared.append(newest_verified)
        delete += doomed
    return PrunePlan(delete, spared, kept_for_prod)


def prune_task(settings: Settings, out: Output, *, keep: int | None, yes: bool, caller: Caller) -> int:
    remove_stale_partials(settings.backups_dir)
    plan = plan_prune(settings, keep if keep is not None else settings.backup_keep)
    for b in plan.kept_because_only_verified:
        out.info(f"keeping {b.path.name}: it is the only verified backup of {b.tier.upper()}")
    for name, why in plan.kept_for_prod.items():
        out.info(f"keeping {name}: {why}")
    if not plan.delete:
        out.ok("nothing to prune")
        return 0
    for b in plan.delete:
        out.info(("deleting " if yes else "would delete ") + b.path.name)
    prod = [b for b in plan.delete if b.tier == Tier.PROD.value]
    if not yes:
        needs = " (PROD's at a terminal only, with the database name typed)" if prod else ""
        out.plan(f"{len(plan.delete)} backup(s) would be deleted; run again with --yes to delete them{needs}")
        return 0
    for name in sorted({str(b.manifest.get("database") or b.path.name) for b in prod}):
        count = sum(1 for b in prod if str(b.manifest.get("database") or b.path.name) == name)
        authorize_step(
            "delete-backups", Tier.PROD, caller, name=name, action=f"delete {count} PROD backup(s) of '{name}'"
        )
    for b in plan.delete:
        b.path.unlink(missing_ok=True)
        b.manifest_path.unlink(missing_ok=True)
    out.ok(f"deleted {len(plan.delete)} backup(s)")
    return 0
