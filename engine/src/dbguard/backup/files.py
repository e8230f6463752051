"""Backup files and their manifests: names, atomic writes, listing, and cleaning up after killed runs.

A backup is `<tier>-<database>-<UTC timestamp>.dump` with `<same>.dump.json` beside it. Both are
written under a hidden temporary name, fsynced and renamed into place, so a file that looks
complete is complete. Temporary files carry their writer's pid; the next run removes those
whose writer is gone.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbguard.errors import Failed, Refused
from dbguard.guard.tiers import Tier

SUFFIX = ".dump"
_NAME = re.compile(r"^(?P<tier>int|stg|prod)-(?P<db>.+)-(?P<ts>\d{8}T\d{6}(?:\d{3})?Z)\.dump$")
_PARTIAL = re.compile(r"^\..+\.(?P<pid>\d+)\.partial$")


@dataclass
class Backup:
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    @property
    def tier(self) -> str:
        """int, stg or prod: what the file name and the manifest say, whichever is more careful. A manifest
        tier in any spelling ("PROD", " Prod ") is read as that tier; one that names no tier reads as prod."""
        match = _NAME.match(self.path.name)
        named = match.group("tier") if match else Tier.PROD.value
        written = str(self.manifest.get("tier") or named).strip().lower()
        if written not in {t.value for t in Tier}:
            written = Tier.PROD.value
        return Tier.PROD.value if Tier.PROD.value in (named, written) else written

    @property
    def reason(self) -> str:
        return str(self.manifest.get("reason") or "")

    @property
    def created(self) -> datetime:
        match = _NAME.match(self.path.name)
        assert match is not None
        ts = match.group("ts")
        return datetime.strptime(ts[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)

    @property
    def verified_at(self) -> str | None:
        value = self.manifest.get("verified_at")
        return str(value) if value else None

    def save_manifest(self) -> None:
        write_atomically(self.manifest_path, (json.dumps(self.manifest, indent=2, sort_keys=True) + "\n").encode())


def backup_name(tier: str, database: str, when: datetime | None = None) -> str:
    moment = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%f")[:-3]
    return f"{tier}-{database}-{moment}Z{SUFFIX}"


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.partial")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = partial_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def ensure_backups_dir(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = folder / f".probe.{os.getpid()}.partial"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise Refused(
            f"the backups folder {folder} cannot be written ({exc.strerror})",
            f"make {folder} writable, or set BACKUP_DIR to a writable folder",
        ) from None
    return folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete temporary files left by killed runs (their writer process no longer exists)."""
    removed: list[Path] = []
    if not folder.exists():
        return removed
    for path in folder.iterdir():
        match = _PARTIAL.match(path.name)
        if match and int(match.group("pid")) != os.getpid() and not _pid_alive(int(match.group("pid"))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def list_backups(folder: Path, tier: str | None = None) -> list[Backup]:
    """Complete backups (file and manifest both present), oldest first."""
    if not folder.exists():
        return []
    found = []
    for path in folder.iterdir():
        if not _NAME.match(path.name):
            continue
        backup = Backup(path, read_manifest(path))
        if tier and backup.tier != tier:  # by Backup.tier: a manifest's "PROD" lists it with PROD's
            continue
        found.append(backup)
    return sorted(found, key=lambda b: b.path.name.rsplit("-", 1)[-1])


def resolve_backup(folder: Path, spec: str, tier: str | None = None) -> Backup:
    """'latest' (optionally of a tier), a file name in the backups folder, or a path."""
    if spec == "latest":
        backups = list_backups(folder, tier)
        if not backups:
            where = f" of {tier.upper()}" if tier else ""
            raise Refused(f"there is no backup{where} in {folder}", f"take one: invoke db.backup --env {tier or 'stg'}")
        return backups[-1]
    path = Path(spec)
    if not path.is_absolute() and not path.exists():
        path = folder / spec
    if not path.exists():
        raise Refused(f"backup file {spec} does not exist", "list the backups: invoke db.backups")
    if not path.is_file():
        raise Refused(f"{spec} is not a backup file", "list the backups: invoke db.backups")
    manifest = read_manifest(path)
    if manifest.get("damaged_manifest"):
        raise Failed(f"the manifest of {path.name} is damaged", "re-take the backup")
    if not manifest and not _NAME.match(path.name):  # whose data is it? nothing says: never guess
        raise Refused(
            f"{path.name} has no manifest beside it: it is not a backup made by db.backup, and nothing says "
            "whose data it holds",
            "list the backups: invoke db.backups",
        )
    return Backup(path, manifest)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest beside a backup: {} when there is none, a marker when it cannot be read."""
    manifest_path = path.with_name(path.name + ".json")
    if not manifest_path.exists():
        return {}
    try:
        return dict(json.loads(manifest_path.read_text()))
    except ValueError:
        return {"damaged_manifest": True}
