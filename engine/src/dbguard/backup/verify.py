"""db.verify: is a backup what its manifest says? Checksum and archive listing; --deep restores it
into a throwaway database on INT's server and compares rows per table and the revision."""

from __future__ import annotations

from datetime import UTC, datetime

from dbguard.backup.archive import ArchiveListing, list_archive, restore_archive
from dbguard.backup.dump import count_rows, sha256_of, user_tables
from dbguard.backup.files import Backup
from dbguard.cli.console import Output
from dbguard.cluster.pgtools import require_bindir
from dbguard.cluster.scratch import admin_target, drop_leftovers, scratch_database
from dbguard.errors import Failed, Refused
from dbguard.guard.connect import connect
from dbguard.guard.stamp import write_stamp
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.migrations.history import current_revision
from dbguard.settings import Settings


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
    into: Target,
    listing: ArchiveListing,
    out: Output | None,
    *,
    stamp_as: Tier | None = None,
    stamp_name: str = "",
) -> tuple[dict[str, int], str | None]:
    """Restore `backup` into the empty database `into` (re-stamped if asked); its rows per table and revision."""
    restore_archive(require_bindir(settings.values, ("pg_restore",)), backup.path, into, len(listing.data_tables), out)
    if stamp_as is not None:
        with connect(into) as conn:
            write_stamp(conn, stamp_as, stamp_name)
    with connect(into, read_only=True) as conn:
        return count_rows(conn, user_tables(conn)), current_revision(conn)


def rows_differing(backup: Backup, rows: dict[str, int]) -> list[str]:
    """Tables whose row count differs from the manifest's."""
    expected = {k: int(v) for k, v in dict(backup.manifest.get("rows", {})).items()}
    return sorted(t for t in set(rows) | set(expected) if rows.get(t) != expected.get(t))


def deep_check(
    settings: Settings, backup: Backup, server: Target, listing: ArchiveListing, out: Output | None
) -> dict[str, int]:
    """Restore into a throwaway database on `server`; rows per table and revision must match the manifest."""
    admin = admin_target(server)
    live = f"verify_{backup.tier}"
    drop_leftovers(admin, live, ("check",), out)
    with scratch_database(admin, live, "check") as scratch:
        rows, revision = restore_and_count(settings, backup, scratch.target(server), listing, out)
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


def verify_backup(
    settings: Settings, backup: Backup, *, deep: bool, server: Target | None, out: Output | None
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
