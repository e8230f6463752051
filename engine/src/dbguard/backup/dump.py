"""db.backup: pg_dump in PostgreSQL's custom format, written atomically, with a manifest beside it.

The dump and the exact row counts come from one exported snapshot, so the manifest describes
exactly what the file holds. PROD is read through a session the server keeps read-only. A PROD
dump is verified as soon as it is written (its archive read back, every table's data in it), since
it is PROD's undo point (backup/undo.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from psycopg import IsolationLevel, sql

from dbguard.backup.archive import list_archive
from dbguard.backup.files import (
    Backup,
    backup_name,
    ensure_backups_dir,
    fsync_dir,
    partial_path,
    remove_stale_partials,
)
from dbguard.cli.console import Output
from dbguard.cluster.children import die_with_parent
from dbguard.cluster.pgtools import first_error_line, follow_progress, require_bindir, tool_major_version
from dbguard.errors import Failed
from dbguard.failpoints import failpoint
from dbguard.guard.cleared import Cleared
from dbguard.guard.connect import Connection
from dbguard.guard.tiers import Tier
from dbguard.migrations.history import current_revision
from dbguard.reports.status import human_size
from dbguard.settings import Settings

_TABLE_LINE = re.compile(r'dumping contents of table "?(?P<name>[^"\s]+)"?')


@dataclass(frozen=True)
class SnapshotFacts:
    snapshot: str
    server_version: str
    revision: str | None
    tables: list[str]


def sha256_of(path: Path, chunk: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def user_tables(conn: Connection) -> list[str]:
    rows = conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_toast%' AND NOT c.relispartition ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def count_rows(conn: Connection, tables: list[str]) -> dict[str, int]:
    counts = {}
    for table in tables:
        schema, _, name = table.partition(".")
        q = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema.strip('"')), sql.Identifier(name.strip('"'))
        )
        row = conn.execute(q).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def take_backup(
    settings: Settings, target: Cleared, out: Output | None, *, reason: str = "manual", verify: bool | None = None
) -> Backup:
    """Dump `target` (as the guard cleared it) into the backups folder; return the finished backup.

    `verify` (default: on PROD) reads the archive back before the backup counts as taken."""
    folder = ensure_backups_dir(settings.backups_dir)
    remove_stale_partials(folder)
    bindir = require_bindir(settings.values, ("pg_dump", "pg_restore"))
    final = folder / backup_name(target.tier.value, target.dbname)
    tmp = partial_path(final)
    began = time.monotonic()
    with target.connect(read_only=True) as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        row = conn.execute("SELECT pg_export_snapshot(), current_setting('server_version')").fetchone()
        assert row is not None
        facts = SnapshotFacts(str(row[0]), str(row[1]), current_revision(conn), user_tables(conn))
        with DumpProcess(bindir, target, facts, tmp) as dump, ThreadPoolExecutor(1) as pool:
            counting = pool.submit(count_rows, conn, facts.tables)  # same snapshot, while pg_dump works
            dump.wait(out)
            rows = counting.result()
    try:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        digest = sha256_of(tmp)
        size = tmp.stat().st_size
        os.replace(tmp, final)
        fsync_dir(folder)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Failed(
            f"the backup could not be finished in {folder} ({exc.strerror})", "free space in BACKUP_DIR"
        ) from None
    backup = Backup(
        final,
        {
            "file": final.name,
            "format": "custom",
            "sha256": digest,
            "size_bytes": size,
            "tier": target.tier.value,
            "database": target.dbname,
            "source": target.masked(),
            "server_version": facts.server_version,
            "pg_dump_version": tool_major_version(bindir, "pg_dump"),
            "revision": facts.revision,
            "rows": rows,
            "reason": reason,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.monotonic() - began, 3),
            "verified_at": None,
        },
    )
    if verify if verify is not None else target.tier is Tier.PROD:
        verify_written(bindir, backup)
    try:
        backup.save_manifest()
    except OSError as exc:
        final.unlink(missing_ok=True)
        raise Failed(
            f"the backup manifest could not be written in {folder} ({exc.strerror})", "free space in BACKUP_DIR"
        ) from None
    if out is not None:
        seconds = max(time.monotonic() - began, 1e-6)
        out.ok(
            f"backup {final} ({human_size(size)}, sha256 {digest[:16]}…) in {seconds:.1f}s, "
            f"{human_size(int(size / seconds))}/s"
        )
    return backup


def verify_written(bindir: Path, backup: Backup) -> None:
    """The archive lists every table the manifest counted (`pg_restore --list`); marked verified."""
    listing = list_archive(bindir, backup.path)
    listed = {t.replace('"', "") for t in listing.data_tables}
    missing = sorted(t for t in dict(backup.manifest["rows"]) if t.replace('"', "") not in listed)
    if missing:
        backup.path.unlink(missing_ok=True)
        raise Failed(
            f"the backup {backup.path.name} does not hold the data of {', '.join(missing)}; it was removed",
            "check the server and free space in BACKUP_DIR, then run it again",
        )
    backup.manifest["verified_at"] = datetime.now(UTC).isoformat(timespec="seconds")


class DumpProcess:
    """pg_dump into `tmp` (created 0600 first); started before any thread exists, killed with us."""

    def __init__(self, bindir: Path, target: Cleared, facts: SnapshotFacts, tmp: Path) -> None:
        self.tmp, self.tables, self.lines = tmp, len(facts.tables), list[str]()
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        args = ["--format=custom", "--verbose", f"--snapshot={facts.snapshot}", f"--file={tmp}"]
        # PROD's read-only role reads a row-owned table through its all-rows policy (dbguard.roles); without
        # this pg_dump refuses any table with row-level security for a role that does not bypass it
        args.append("--enable-row-security")
        self._env = target.tool(bindir, "pg_dump", args, read_only=True)
        argv, env = self._env.__enter__()
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent()
        )

    def __enter__(self) -> DumpProcess:
        return self

    def wait(self, out: Output | None) -> None:
        failpoint("backup:dumping")
        tmp = self.tmp

        def written() -> str:
            return f"pg_dump {human_size(tmp.stat().st_size if tmp.exists() else 0)}"

        self.lines = follow_progress(self.proc, _TABLE_LINE, self.tables, "pg_dump", out, written)
        if self.proc.wait() != 0:
            raise Failed(
                f"pg_dump failed: {first_error_line(chr(10).join(self.lines))}",
                "check the server and free space in BACKUP_DIR, then run db.backup again",
            )

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._env.__exit__(None, None, None)
        if exc_type is not None:
            self.tmp.unlink(missing_ok=True)
