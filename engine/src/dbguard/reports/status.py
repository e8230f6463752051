"""db.status: every tier at a glance, each read through its own read-only session.

An unreachable tier (PROD behind a VPN, say) is a row that says why; it never fails the others.
Each tier is read as the guard clears it for the 'report' row: read-only, never started or created.
A second table lists each tier's undo points (backup/undo.py): the databases a swap set aside and the
newest backup file, with their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dbguard.backup.files import Backup, list_backups
from dbguard.cli.console import Output, add_row, new_table
from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.cluster.scratch import UndoPoint, undo_points
from dbguard.errors import OpsError
from dbguard.guard.config import all_targets, prod_tls_finding
from dbguard.guard.door import report_target
from dbguard.guard.stamp import read_stamp
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.migrations.history import current_revision, head, invalid_index_note, invalid_indexes
from dbguard.settings import Settings


@dataclass
class TierStatus:
    tier: Tier
    target: str
    reachable: bool
    why: str = ""
    stamp: str = "-"
    revision: str = "-"
    size_bytes: int | None = None
    connections: int | None = None
    server_version: str = ""
    warnings: tuple[str, ...] = ()
    undo: list[UndoPoint] = field(default_factory=list)  # databases a swap set aside (STG)


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def tier_status(settings: Settings, tier: Tier, target: Target | OpsError, code_head: str | None) -> TierStatus:
    if isinstance(target, OpsError):
        return TierStatus(tier, "-", False, target.short)
    warnings: tuple[str, ...] = ()
    if tier is Tier.PROD and not prod_tls_finding(target).ok:
        warnings = ("remote PROD without sslmode=require",)
    if target.embedded and not EmbeddedCluster.from_settings(settings).is_running():
        return TierStatus(tier, target.short(), False, "embedded cluster stopped (invoke db.up)", warnings=warnings)
    try:
        with report_target(settings, target).connect(read_only=True, timeout=3) as conn:
            stamp = read_stamp(conn)
            rev = current_revision(conn)
            row = conn.execute(
                "SELECT pg_database_size(current_database()), "
                "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()), "
                "current_setting('server_version')"
            ).fetchone()
            undo = undo_points(conn, target.dbname)
            invalid = invalid_indexes(conn)  # a concurrent index build that failed or was killed
    except OpsError as exc:
        return TierStatus(tier, target.short(), False, exc.short, warnings=warnings)
    assert row is not None
    if invalid:
        warnings = (*warnings, " -> ".join(invalid_index_note(invalid, tier.value)))
    if stamp is None:
        stamp_text = "MISSING"
    elif stamp.tier is not tier or stamp.database_name != target.dbname:
        stamp_text = f"MISMATCH ({stamp.tier.value.upper()} for {stamp.database_name})"
    else:
        stamp_text = stamp.tier.value.upper()
    if rev is None:
        rev_text = "empty" if code_head is None else f"empty (head {code_head})"
    elif code_head is None:
        rev_text = rev
    else:
        rev_text = f"{rev} (at head)" if rev == code_head else f"{rev} (head {code_head})"
    return TierStatus(
        tier,
        target.short(),
        True,
        "",
        stamp_text,
        rev_text,
        int(row[0]),
        int(row[1]),
        str(row[2]),
        warnings,
        undo,
    )


def collect_status(settings: Settings) -> list[TierStatus]:
    try:
        code_head = head(settings)
    except Exception:  # a broken migration file must not hide the databases' state
        code_head = None
    targets = all_targets(settings)
    return [tier_status(settings, tier, targets[tier], code_head) for tier in Tier]


def show_status(settings: Settings, out: Output) -> list[TierStatus]:
    rows = collect_status(settings)
    table = new_table("database tiers", "tier", "target", "reachable", "stamp", "revision", "size", "connections")
    for r in rows:
        reach = "yes" if r.reachable else f"no: {r.why}"
        add_row(
            table,
            out.badge(r.tier),
            r.target,
            reach,
            r.stamp,
            r.revision,
            human_size(r.size_bytes),
            "-" if r.connections is None else str(r.connections),
        )
    out.table(table)
    show_undo_points(settings, out, rows)
    for r in rows:
        for w in r.warnings:
            out.warn(f"{r.tier.value.upper()}: {w}")
    return rows


def newest_backup(settings: Settings, tier: Tier) -> Backup | None:
    try:
        backups = list_backups(settings.backups_dir, tier.value)
    except OSError:
        return None
    return backups[-1] if backups else None


def show_undo_points(settings: Settings, out: Output, rows: list[TierStatus]) -> None:
    """Each tier's undo points: the databases a swap set aside, and the newest backup file."""
    table = new_table("undo points (docs/operations.md)", "tier", "undo point", "set aside (UTC)", "before", "size")
    for r in rows:
        for point in r.undo:
            add_row(
                table, out.badge(r.tier), point.name, point.taken_at[:19] or "?", point.before or "?",
                human_size(point.size_bytes),
            )  # fmt: skip
        backup = newest_backup(settings, r.tier)
        if backup is not None:
            verified = " (verified)" if backup.verified_at else ""
            add_row(
                table, out.badge(r.tier), f"backup {backup.path.name}{verified}", f"{backup.created:%Y-%m-%dT%H:%M:%S}",
                str(backup.manifest.get("reason") or "manual"), human_size(int(backup.manifest.get("size_bytes") or 0)),
            )  # fmt: skip
    if table.row_count:
        out.table(table)
