"""db.verify: is a backup what its manifest says? Checksum and archive listing; --deep restores it
into a throwaway database on INT's server and compares rows per table and the revision.

The throwaway database is made under the run's clearance: the 'verify' row grants --deep a scratch
database on INT's server ('verify-deep'), so INT's configuration and stamp are checked first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dbguard.backup.archive import ArchiveListing, list_archive, restore_archive
from dbguard.backup.dump import count_rows, sha256_of, user_tables
from dbguard.backup.files import Backup, resolve_backup
from dbguard.cli.console import Output
from dbguard.cluster.pgtools import require_bindir
from dbguard.errors import Failed, Refused
from dbguard.guard.cleared import Cleared
from dbguard.guard.policy import DEEP_CHECK
from dbguard.guard.stamp import write_stamp
from dbguard.guard.tiers import Tier
from dbguard.migrations.history import current_revision
from dbguard.settings import Settings

if TYPE_CHECKING:
    from dbguard.cli.runner import TaskContext


def check_file(settings: Settings, backup: Backup) -> ArchiveListing:
    """Manifest present, checksum equal, archive readable; the reason named when not."""
    if not backup.manifest:
        raise Refused(
            f"{backup.path.name} has no manifest beside it: it was not made by db.backup",
            "restore it with pg_restore by hand, or take a new backup: invoke db.backup",
        )
    if backup.manifest.get("damaged_manifest"):
        raise Failed(f"the manifest of {backup.path.name} is damaged", "use another backup: invoke db.backups")
    expected, size = str(backup.manifest.get("sha256")), int(backup.manifest.get("size_bytes", -1))
    actual_size = backup.path.stat().st_size
    if actual_size != size:
        raise Failed(
            f"{backup.path.name} is {actual_size:,} bytes, its manifest says {size:,}: the file is truncated "
            "or was changed",
            "use another backup: invoke db.backups",
        )
    actual = sha256_of(backup.path)
    if actual != expected:
        raise Failed(
            f"{backup.path.name} fails its checksum (sha256 {actual[:16]}…, manifest {expected[:16]}…): "
            "the file is damaged or was changed",
            "use another backup: invoke db.backups",
        )
    return list_archive(require_bindir(settings.values, ("pg_restore",)), backup.path)


def restore_and_count(
    settings: Settings,
    backup: Backup,
    into: Cleared,
    listing: ArchiveListing,
    out: Output | None,
    *,
    stamp_as: Tier | None = None,
    stamp_name: str = "",
) -> tuple[dict[str, int], str | None]:
    """Restore `backup` into the empty database `into` (re-stamped if asked); its rows per table and revision."""
    restore_archive(require_bindir(settings.values, ("pg_restore",)), backup.path, into, len(listing.data_tables), out)
    if stamp_as is not None:
        with into.connect() as conn:
            write_stamp(conn, stamp_as, stamp_name)
    with into.connect(read_only=True) as conn:
        return count_rows(conn, user_tables(conn)), current_revision(conn)


def rows_differing(backup: Backup, rows: dict[str, int]) -> list[str]:
    """Tables whose row count differs from the manifest's."""
    expected = {k: int(v) for k, v in dict(backup.manifest.get("rows", {})).items()}
    return sorted(t for t in set(rows) | set(expected) if rows.get(t) != expected.get(t))


def deep_check(
    settings: Settings, backup: Backup, server: Cleared, listing: ArchiveListing, out: Output | None
) -> dict[str, int]:
    """Restore into a throwaway database on `server`; rows per table and revision must match the manifest."""
    live = f"verify_{backup.tier}"
    server.drop_leftovers(("check",), live=live, out=out)
    with server.scratch("check", live=live) as scratch:
        rows, revision = restore_and_count(settings, backup, scratch, listing, out)
    differing = rows_differing(backup, rows)
    if differing:
        raise Failed(
            f"{backup.path.name} restored with different rows than its manifest in: {', '.join(differing)}",
            "use another backup: invoke db.backups",
        )
    if revision != backup.manifest.get("revision"):
        raise Failed(
            f"{backup.path.name} restored at revision {revision}, its manifest says {backup.manifest.get('revision')}",
            "use another backup: invoke db.backups",
        )
    return rows


def verify_task(ctx: TaskContext, *, backup: str | None, deep: bool) -> int:
    """db.verify [FILE] [--deep]: the deep check's server is the clearance's DEEP_CHECK grant."""
    found = resolve_backup(ctx.settings.backups_dir, backup or "latest", None)
    ctx.facts["file"] = found.path.name
    server = ctx.clearance.db(DEEP_CHECK) if deep else None
    verify_backup(ctx.settings, found, deep=deep, server=server, out=ctx.out)
    return 0


def verify_backup(
    settings: Settings, backup: Backup, *, deep: bool, server: Cleared | None, out: Output | None
) -> Backup:
    listing = check_file(settings, backup)
    if out is not None:
        out.ok(
            f"{backup.path.name}: checksum matches, archive lists {listing.entries} entries "
            f"({len(listing.data_tables)} tables of data)"
        )
    if deep:
        assert server is not None
        rows = deep_check(settings, backup, server, listing, out)
        if out is not None:
            out.ok(
                f"{backup.path.name}: restored into a throwaway database; {sum(rows.values()):,} rows in "
                f"{len(rows)} tables and revision {backup.manifest.get('revision')} match the manifest"
            )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    backup.manifest["verified_at"] = now
    if deep:
        backup.manifest["deep_verified_at"] = now
    backup.save_manifest()
    return backup
