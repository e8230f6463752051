"""Find the machine's PostgreSQL binaries and run them without a password on any command line.

Passwords reach `pg_dump`, `pg_restore` and `psql` through a private passfile (mode 0600,
deleted afterwards); the connection string on argv never carries one. Inherited `PG*`
variables are dropped so that a stray PGHOST or PGDATABASE in the shell can never redirect
a tool to another database: the tier's URL says everything.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from dbguard.cli.console import Output
from dbguard.errors import Failed, Refused
from dbguard.guard.masking import mask_text
from dbguard.guard.targets import Target

SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
CLIENT_TOOLS = ("pg_dump", "pg_restore", "psql")
_SEARCH_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew, Apple silicon
    "/usr/local/opt/postgresql@*/bin",  # Homebrew, Intel
    "/opt/homebrew/bin",
    "/usr/local/pgsql/bin",
    "/Applications/Postgres.app/Contents/Versions/latest/bin",
)
NO_BINARIES_FIX = (
    "install PostgreSQL (apt install postgresql / brew install postgresql@16), "
    "or run `docker compose up -d` and set the *_DATABASE_URL variables, "
    "or point INT_DATABASE_URL and STG_DATABASE_URL at existing servers"
)


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def candidate_bindirs(environ: Mapping[str, str]) -> list[Path]:
    """PG_BINDIR alone when set; otherwise `pg_config --bindir`, PATH, then the usual install locations."""
    found: list[Path] = []
    if environ.get("PG_BINDIR"):
        return [Path(environ["PG_BINDIR"])]
    pg_config = shutil.which("pg_config", path=environ.get("PATH"))
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
            if out.returncode == 0 and out.stdout.strip():
                found.append(Path(out.stdout.strip()))
        except OSError:
            pass
    for tool in ("initdb", "pg_ctl", "pg_dump"):
        located = shutil.which(tool, path=environ.get("PATH"))
        if located:
            found.append(Path(located).resolve().parent)
    for pattern in _SEARCH_GLOBS:
        found.extend(Path(p) for p in sorted(glob.glob(pattern), key=_version_key, reverse=True))
    unique: list[Path] = []
    for p in found:
        if p not in unique and p.is_dir():
            unique.append(p)
    return unique


def find_bindir(environ: Mapping[str, str], tools: Sequence[str] = CLIENT_TOOLS) -> Path | None:
    """The first candidate directory that holds every one of `tools`."""
    for bindir in candidate_bindirs(environ):
        if all(os.access(bindir / t, os.X_OK) for t in tools):
            return bindir
    return None


def require_bindir(environ: Mapping[str, str], tools: Sequence[str] = CLIENT_TOOLS) -> Path:
    bindir = find_bindir(environ, tools)
    if bindir is None:
        raise Refused(f"no PostgreSQL binaries found (needed: {', '.join(tools)})", NO_BINARIES_FIX)
    return bindir


def clean_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment minus every libpq variable that could redirect a connection."""
    return {k: v for k, v in base.items() if not k.startswith("PG")}


def _passfile_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextmanager
def tool_environment(
    target: Target, *, read_only: bool = False, base: Mapping[str, str] | None = None, options: str = ""
) -> Iterator[dict[str, str]]:
    """Environment for a libpq tool aimed at `target`: password in a private passfile only."""
    env = clean_environment(os.environ if base is None else base)
    env["PGAPPNAME"] = "guarded-db-tools"
    pgoptions = " ".join(o for o in (options, "-c default_transaction_read_only=on" if read_only else "") if o)
    if pgoptions:
        env["PGOPTIONS"] = pgoptions
    if target.password is None:
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="pgpass-") as tmp:
        passfile = Path(tmp) / "pgpass"
        fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"*:*:*:*:{_passfile_escape(target.password)}\n")
        env["PGPASSFILE"] = str(passfile)
        yield env


def tool_conninfo(target: Target) -> str:
    """A connection string for argv: every setting of the target except the password."""
    return target.conninfo(with_password=False)


def run_tool(
    bindir: Path,
    tool: str,
    args: Sequence[str],
    target: Target,
    *,
    read_only: bool = False,
    stdin: int | None = None,
    stdout: int | None = subprocess.PIPE,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a client tool against `target`; a non-zero exit becomes one masked `Failed` line."""
    argv = [str(bindir / tool), *args]
    with tool_environment(target, read_only=read_only) as env:
        proc = subprocess.run(
            argv, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout, check=False
        )
    if proc.returncode != 0:
        raise Failed(f"{tool} failed: {first_error_line(proc.stderr)}")
    return proc


def first_error_line(stderr: bytes | str | None) -> str:
    """The most telling line of a PostgreSQL tool's stderr, masked."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower() or "fatal" in ln.lower():
            return mask_text(ln)
    return mask_text(lines[0]) if lines else "no message"


def tool_major_version(bindir: Path, tool: str = "pg_dump") -> int:
    out = subprocess.run([str(bindir / tool), "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(match.group(1)) if match else 0


def follow_progress(
    proc: subprocess.Popen[str],
    marker: re.Pattern[str],
    total: int,
    label: str,
    out: Output | None,
    describe: Callable[[], str] | None = None,
) -> list[str]:
    """Read a tool's --verbose stderr: each line matching `marker` is one step of a progress bar.

    Returns the masked lines (for the error message when the tool fails). `describe`, if given, is
    polled for a live description (pg_dump's bytes written so far).
    """
    assert proc.stderr is not None
    stream, lines = proc.stderr, list[str]()

    def read(step: Callable[[], object] | None) -> None:
        for line in stream:
            lines.append(mask_text(line.rstrip()))
            if step is not None and marker.search(line):
                step()

    if out is None:
        read(None)
        return lines
    with out.progress() as progress:
        task = progress.add_task(label, total=max(total, 1))
        reader = threading.Thread(target=read, args=(partial(progress.advance, task),), daemon=True)
        reader.start()
        while reader.is_alive():
            if describe is not None:
                progress.update(task, description=describe())
            reader.join(0.25)
    return lines
