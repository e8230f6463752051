"""pg_restore, the way these tools use it: listing an archive, and restoring with a progress bar."""

from __future__ import annotations

import re
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from dbguard.cli.console import Output
from dbguard.cluster.children import die_with_parent
from dbguard.cluster.pgtools import first_error_line, follow_progress
from dbguard.cluster.private_files import private_folder
from dbguard.errors import Failed
from dbguard.guard.cleared import Cleared
from dbguard.roles.names import roles_policy

_DATA_LINE = re.compile(r'processing data for table "(?P<name>[^"]+)"')
RESTORE_JOBS = 2


@dataclass(frozen=True)
class ArchiveListing:
    entries: int
    data_tables: list[str]
    dumped_from: str
    lines: tuple[str, ...] = ()  # the table of contents' entries, as `pg_restore --use-list` reads them


def list_archive(bindir: Path, path: Path, section: str = "") -> ArchiveListing:
    """`pg_restore --list`: proves the file is a readable archive and names what it holds (connects nowhere)."""
    only = [f"--section={section}"] if section else []
    proc = subprocess.run(
        [str(bindir / "pg_restore"), "--list", *only, str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        reason = first_error_line(proc.stderr).removeprefix("pg_restore: error: ")
        raise Failed(
            f"{path.name} is not a readable PostgreSQL archive ({reason})", "use another backup: invoke db.backups"
        )
    tables, entries, dumped_from, lines = [], 0, "", []
    for line in proc.stdout.splitlines():
        if line.startswith(";") and "Dumped from database version:" in line:
            dumped_from = line.split(":", 1)[1].strip()
        elif line and not line.startswith(";"):
            entries += 1
            lines.append(line)
            parts = line.split()
            if "TABLE DATA" in line and len(parts) >= 7:
                tables.append(f"{parts[5]}.{parts[6]}")
    return ArchiveListing(entries, tables, dumped_from, tuple(lines))


def restore_archive(
    bindir: Path, path: Path, into: Cleared, tables: int, out: Output | None, jobs: int = RESTORE_JOBS
) -> None:
    """Restore `path` into the (empty) database `into`; objects owned by the connecting role. db.roles'
    policies are left out: they name the roles of the server the backup came from (the target's own are
    re-applied from the ownership matrix, dbguard.roles.apply.carry_roles)."""
    args = ["--verbose", "--no-owner", "--no-acl", "--exit-on-error", f"--jobs={jobs}", str(path)]
    with ExitStack() as stack:
        listing = list_archive(bindir, path).lines
        if any(roles_policy(line) for line in listing):
            kept = stack.enter_context(private_folder("restore-list")) / "restore.list"
            kept.write_text("\n".join(line for line in listing if not roles_policy(line)) + "\n")
            args.insert(-1, f"--use-list={kept}")
        with into.tool(bindir, "pg_restore", args) as (argv, env):
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=die_with_parent(),
            )
            lines = follow_progress(proc, _DATA_LINE, tables, f"pg_restore {path.name}", out)
            code = proc.wait()
    if code != 0:
        errors = [ln for ln in lines if "error" in ln.lower()] or lines[-3:]
        raise Failed(
            f"pg_restore failed: {first_error_line(chr(10).join(errors))}",
            "the target was left as it was; check the server and run the restore again",
        )
