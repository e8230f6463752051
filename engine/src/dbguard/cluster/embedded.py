"""The embedded default: a project-local PostgreSQL cluster made from the finder's binaries.

It serves INT and STG when their URLs are unset, plus a stand-in PROD (stamped PROD) so every
task can be tried end to end on one laptop. It listens on a Unix socket only (mode 0700), so
nobody else on the machine or the network can reach it. Its binaries are the first the finder
offers (pgtools: PG_BINDIR, the machine's, the guarded-db-engine[server] wheel's); once the cluster
exists, only binaries of the major version that made it are used, whatever was installed since.

When the caller is root the server runs as an unprivileged user (PostgreSQL refuses root): the
owner of the existing data folder; else EMBEDDED_PG_OS_USER, which must exist; else `postgres`;
else, on a bare machine where root is the only user, a system user `dbguard` made for the purpose
(useradd --system: no home, no login shell), and the run says so. If that user cannot reach the
project folder, the data lives under /var/tmp and the project folder is a symlink to it; if it
cannot run the wheel's binaries (a Python under /root), the cluster's folder gets a copy of them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql

from dbguard.cli.console import Output
from dbguard.cluster.pgtools import (
    ALL_TOOLS,
    WHEEL_ORIGIN,
    Bindir,
    bindir_candidates,
    clean_environment,
    first_error_line,
    no_binaries,
)
from dbguard.errors import Failed, Refused
from dbguard.guard.connect import connect
from dbguard.guard.stamp import write_stamp
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.settings import Settings

SUPERUSER = "postgres"
_READY_MARKER = ".ready"
_STARTED_MARKER = ".initdb-started"  # written before initdb: only a data folder made after it may be removed
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN.lock"
_CREATING_SUFFIX = "__creating"
_COPY_PREFIX = "pginstall-"  # the wheel's binaries, copied into the cluster's folder for its OS user
DEFAULT_OS_USER = "postgres"
CREATED_OS_USER = "dbguard"  # made only when root is alone on the machine and nothing was configured
_USERADD = ("/usr/sbin/useradd", "/sbin/useradd")
_NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")


def server_user_name() -> str:
    return DEFAULT_OS_USER if existing_user(DEFAULT_OS_USER) else CREATED_OS_USER


def existing_user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def create_system_user(name: str, environ: Mapping[str, str]) -> tuple[pwd.struct_passwd, bool]:
    """`useradd --system` with its own group, no home and no login shell; (the account, made by this call).

    Runs that start together take turns (two concurrent useradds can both write /etc/passwd, and the
    later one wins); the fix is refused as one line when it cannot be made.
    """
    with open("/etc/passwd", "rb") as turn:
        fcntl.flock(turn, fcntl.LOCK_EX)
        made = existing_user(name)
        if made is not None:
            return made, False
        useradd = shutil.which("useradd", path=environ.get("PATH")) or next(
            (p for p in _USERADD if os.access(p, os.X_OK)), None
        )
        why = "useradd is not installed"
        if useradd is not None:
            shell = next((p for p in _NOLOGIN if os.path.exists(p)), "/bin/false")
            argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
            argv += ["--shell", shell, "--comment", "runs the embedded PostgreSQL of dbguard", name]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            why = first_error_line(proc.stderr)
        made = existing_user(name)
    if made is None:
        raise Refused(
            f"running as root, PostgreSQL needs an unprivileged user to run as, and '{name}' "
            f"could not be created ({why})",
            f"create one (useradd --system {name}) or set EMBEDDED_PG_OS_USER to an existing unprivileged user",
        )
    return made, True


def server_user(config: Mapping[str, str], name: str | None = None, tier: Tier | None = None) -> pwd.struct_passwd:
    """The unprivileged account a root caller runs PostgreSQL as (see the module's docstring).

    `name` is one already decided (an existing data folder's owner); else EMBEDDED_PG_OS_USER, which
    must exist; else `postgres`; else `dbguard`, made here and announced under `tier`'s badge.
    """
    configured = config.get("EMBEDDED_PG_OS_USER")
    name = name or configured or server_user_name()
    entry = existing_user(name)
    if entry is not None:
        return entry
    if name != CREATED_OS_USER or configured:
        raise Refused(
            f"running as root, and the unprivileged user '{name}' that PostgreSQL must run as does not exist",
            f"create it (useradd --system {name}) or set EMBEDDED_PG_OS_USER to an existing user",
        )
    entry, made_here = create_system_user(name, config)
    if made_here:
        Output(tier).info(
            f"created the system user '{name}' (no home, no login) to run the embedded PostgreSQL: "
            "PostgreSQL refuses to run as root; set EMBEDDED_PG_OS_USER to use another"
        )
    return entry


def copy_install(found: Bindir, into: Path) -> Path:
    """The wheel's whole install (bin, lib, share) copied to `into`/pginstall-<version>, once; its bin folder."""
    copy = into / f"{_COPY_PREFIX}{found.version() or 'unknown'}"
    if not copy.is_dir():
        scratch = Path(tempfile.mkdtemp(prefix=f".{_COPY_PREFIX}", dir=into))
        try:
            shutil.copytree(found.path.parent, scratch / "tree", symlinks=True)
            os.chmod(scratch / "tree", 0o755)  # noqa: S103 -- root's files, read and run by the server's user
            try:
                os.rename(scratch / "tree", copy)  # atomic: a copy is there whole or not at all
            except OSError:
                if not copy.is_dir():  # else a concurrent run put the same copy there first
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return copy / "bin"


@dataclass(frozen=True)
class EmbeddedCluster:
    """One project's local cluster; cheap to construct, touches nothing until asked."""

    home: Path
    port: int
    app_name: str
    config: Mapping[str, str]  # Settings.values: PG_BINDIR, PG_SEARCH_GLOBS, EMBEDDED_PG_OS_USER, PATH

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedCluster:
        return cls(
            home=settings.path("EMBEDDED_PG_DIR"),
            port=int(settings.get("EMBEDDED_PG_PORT")),
            app_name=settings.app_name,
            config=settings.values,
        )

    # -- where things are -------------------------------------------------------------------
    @property
    def real_home(self) -> Path:
        return self.home.resolve()

    @property
    def data_dir(self) -> Path:
        return self.real_home / "data"

    @property
    def log_file(self) -> Path:
        return self.real_home / "server.log"

    @property
    def socket_dir(self) -> Path:
        preferred = self.real_home / "run"
        if len(str(preferred)) + 24 <= _SOCKET_PATH_LIMIT:
            return preferred
        digest = hashlib.sha1(str(self.real_home).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"pg-{digest}"

    def database_name(self, tier: Tier) -> str:
        return f"{self.app_name}_{tier.value}"

    def target(self, tier: Tier, dbname: str | None = None) -> Target:
        params = {
            "host": str(self.socket_dir),
            "port": str(self.port),
            "user": SUPERUSER,
            "dbname": dbname or self.database_name(tier),
        }
        return Target(tier=tier, params=params, source="embedded default", embedded=True)

    # -- who runs it ------------------------------------------------------------------------
    @property
    def os_user(self) -> str | None:
        """None: run as ourselves. Otherwise the unprivileged account the server runs as."""
        if os.geteuid() != 0:
            return None
        return self._data_owner() or self.config.get("EMBEDDED_PG_OS_USER") or server_user_name()

    def _data_owner(self) -> str | None:
        """The server can only run as the owner of its data folder, whatever the settings say now."""
        try:
            uid = self.data_dir.stat().st_uid
        except OSError:
            return None
        try:
            return pwd.getpwuid(uid).pw_name if uid != 0 else None
        except KeyError:
            raise Refused(
                f"the embedded cluster's data folder {self.data_dir} belongs to uid {uid}, which has no account here",
                f"make an account with uid {uid} (useradd --system --uid {uid} NAME), "
                f"or back up, remove {self.home} and let the next task make a new cluster",
            ) from None

    def _owner(self, tier: Tier | None = None) -> pwd.struct_passwd:
        return server_user(self.config, self._data_owner(), tier)

    def _run_as_owner(self, argv: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = clean_environment(os.environ)  # the real environment: .env secrets never reach the server
        env.update({"LC_ALL": "C", "LANG": "C"})
        kwargs: dict[str, object] = {}
        if self.os_user is not None:
            entry = self._owner()
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            env["HOME"] = entry.pw_dir
            env["USER"] = entry.pw_name
        # found on our PATH, not the owner's: a PATH folder under /root is closed to it
        program = shutil.which(argv[0], path=os.environ.get("PATH")) or argv[0]
        proc: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            argv,
            executable=os.path.realpath(program),
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
        return proc

    def _give_to_owner(self, path: Path) -> None:
        if self.os_user is not None:
            entry = self._owner()
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _reachable_by_owner(self, path: Path) -> bool:
        if self.os_user is None:
            return True
        return self._run_as_owner(["test", "-w", str(path)], timeout=10).returncode == 0

    # -- which binaries ---------------------------------------------------------------------
    def made_by(self) -> int | None:
        """The PostgreSQL major version that made the data folder (None: no cluster yet)."""
        try:
            return int((self.data_dir / "PG_VERSION").read_text().strip().split(".")[0])
        except (OSError, ValueError):
            return None

    def binaries(self) -> Bindir:
        """The finder's first folder with every tool; once the cluster exists, the first of its major version."""
        holding = [c for c in bindir_candidates(self.config) if c.holds(ALL_TOOLS)]
        if not holding:
            raise no_binaries(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found for the embedded default", self.config
            )
        made_by = self.made_by()
        if made_by is None:
            return holding[0]
        for each in holding:
            if each.major() == made_by:
                return each
        seen = ", ".join(f"PostgreSQL {c.version() or '?'} in {c.path}" for c in holding)
        raise Refused(
            f"the embedded cluster in {self.home} was made by PostgreSQL {made_by}, and only other versions "
            f"are here ({seen})",
            f"install PostgreSQL {made_by} or set PG_BINDIR to its bin folder; "
            f"or back up, remove {self.home} and let the next task make a new cluster",
        )

    def bindir(self) -> Path:
        """`binaries()`, as a folder the server's OS user can run: a copy of the wheel's where it cannot."""
        found = self.binaries()
        user = self.os_user
        if user is None or self._owner_can_run(found.path):
            return found.path
        if found.origin != WHEEL_ORIGIN:
            raise Refused(
                f"the unprivileged user '{user}' that runs the embedded PostgreSQL cannot run {found.path}",
                f"let '{user}' reach that folder (o+x on each parent folder) or set PG_BINDIR to binaries it can run",
            )
        return self._copy_for_owner(found)

    def _owner_can_run(self, bindir: Path) -> bool:
        try:
            return self._run_as_owner([str(bindir / "postgres"), "--version"], timeout=30).returncode == 0
        except PermissionError:  # the owner cannot reach the folder
            return False

    def _copy_for_owner(self, found: Bindir) -> Path:
        self._prepare_home()
        return copy_install(found, self.real_home)

    def _remove_other_copies(self, in_use: Path) -> None:
        """Copies left by an older wheel; only while the server is stopped (it loads libraries lazily)."""
        for old in self.real_home.glob(f"{_COPY_PREFIX}*"):
            if old != in_use.parent and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    # -- lifecycle --------------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise init/start/stop between concurrent task runs."""
        self.home.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.home.parent / f".{self.home.name}.lock"
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def is_initialized(self) -> bool:
        return (self.real_home / _READY_MARKER).exists() and (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return False
        proc = self._run_as_owner([str(self.bindir() / "pg_ctl"), "status", "-D", str(self.data_dir)], timeout=30)
        return proc.returncode == 0

    def running_port(self) -> int | None:
        """The port the running server listens on (postmaster.pid's fourth line); None when unknown."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def _prepare_home(self) -> None:
        if self.home.exists():
            return
        self.home.mkdir(parents=True, mode=0o700)
        self._give_to_owner(self.home)
        if self._reachable_by_owner(self.home):
            return
        # The unprivileged user cannot traverse the project path (e.g. a 0700 temp folder):
        # keep the data where it can, and leave a symlink in the project.
        self.home.rmdir()
        digest = hashlib.sha1(str(self.home).encode()).hexdigest()[:12]
        real = Path("/var/tmp") / f"{self.app_name}-pg-{digest}"  # noqa: S108 -- private 0700 folder
        real.mkdir(mode=0o700, exist_ok=True)
        self._give_to_owner(real)
        self.home.symlink_to(real, target_is_directory=True)

    def initialise(self) -> bool:
        """initdb once; returns True when a new cluster was made."""
        if self.is_initialized():
            return False
        self._prepare_home()
        started = self.real_home / _STARTED_MARKER
        if self.data_dir.exists():
            if started.exists():  # a half-made cluster from a killed initdb of ours: nothing of value in it yet
                shutil.rmtree(self.data_dir)
            elif any(self.data_dir.iterdir()):  # not ours: a wrong EMBEDDED_PG_DIR must never delete anything
                raise Refused(
                    f"{self.data_dir} holds files the tools did not make: the embedded cluster will not touch it",
                    f"point EMBEDDED_PG_DIR at a new or empty folder (it is {self.home}), or remove "
                    f"{self.data_dir} yourself if it is a half-made cluster",
                )
            else:
                self.data_dir.rmdir()
        started.write_text("initdb started\n")
        bindir = self.bindir()
        proc = self._run_as_owner(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            timeout=300,
        )
        if proc.returncode != 0:
            raise Failed(f"initdb failed for the embedded cluster: {first_error_line(proc.stderr)}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# --- embedded default (written by app/ops/embedded.py) ---\n"
                "listen_addresses = ''\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "unix_socket_permissions = 0700\n"
                "wal_level = minimal\n"
                "max_wal_senders = 0\n"
                "shared_buffers = 256MB\n"
                "maintenance_work_mem = 256MB\n"
                "max_wal_size = 4GB\n"
                "logging_collector = off\n"
            )
        (self.real_home / _READY_MARKER).write_text("initialised\n")
        return True

    def start(self) -> bool:
        """Start the server if it is not running; returns True when it was started."""
        with self._lock():
            self.initialise()
            if self.is_running():
                running = self.running_port()
                if running not in (None, self.port):
                    raise Refused(
                        f"the embedded PostgreSQL in {self.home} runs on port {running}, and EMBEDDED_PG_PORT is "
                        f"{self.port}",
                        f"stop it first (EMBEDDED_PG_PORT={running} invoke db.down), or set EMBEDDED_PG_PORT back "
                        f"to {running}",
                    )
                return False
            bindir = self.bindir()
            self._remove_other_copies(bindir)
            self.socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._give_to_owner(self.socket_dir)
            if not self.log_file.exists():
                self.log_file.touch(mode=0o600)
                self._give_to_owner(self.log_file)
            proc = self._run_as_owner(
                [
                    str(bindir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    f"-p {self.port}",  # EMBEDDED_PG_PORT now, whatever port the cluster was made with
                    "-w",
                    "-t",
                    "120",
                ],
                timeout=180,
            )
            if proc.returncode != 0:
                tail = (
                    self.log_file.read_text(errors="replace").strip().splitlines()[-3:]
                    if self.log_file.exists()
                    else []
                )
                detail = first_error_line("\n".join(tail) or proc.stderr or proc.stdout)
                raise Failed(f"the embedded PostgreSQL did not start: {detail}", f"read {self.log_file}")
            return True

    def stop(self) -> bool:
        """Stop the server (fast shutdown); returns True when it was running."""
        with self._lock():
            if not self.is_running():
                return False
            proc = self._run_as_owner(
                [str(self.bindir() / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "120"],
                timeout=180,
            )
            if proc.returncode != 0:
                raise Failed(f"the embedded PostgreSQL did not stop: {first_error_line(proc.stderr)}")
            return True

    def ensure_database(self, tier: Tier) -> Target:
        """Start the cluster if needed and make sure the tier databases exist, stamped.

        All three are made on first use, so the stand-in PROD is there as soon as anything runs.
        """
        if self.os_user is not None:
            self._owner(tier)  # a user made for the server is announced under this run's badge
        self.start()
        admin = self.target(tier, "postgres")
        with self._lock():  # runs starting together take turns: one creates, the others find the databases made
            with connect(admin, autocommit=True) as conn:
                leftovers = conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"%{_CREATING_SUFFIX}",)
                ).fetchall()
                for (name,) in leftovers:  # a killed run's: nobody else is creating while we hold the lock
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name))))
                existing = {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
            for each in Tier:
                if self.database_name(each) not in existing:
                    self._create_stamped(each)
        return self.target(tier)

    def _create_stamped(self, tier: Tier) -> None:
        """Create under a scratch name, stamp, then rename: a killed run never leaves an unstamped database."""
        name = self.database_name(tier)
        scratch = name + _CREATING_SUFFIX
        admin = self.target(tier, "postgres")
        with connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        with connect(self.target(tier, scratch)) as conn:
            write_stamp(conn, tier, name)
        with connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(scratch), sql.Identifier(name))
            )
