"""The embedded default: a project-local cluster started on demand, stamped databases, up/down."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.cluster.pgtools import no_binaries
from dbguard.errors import Refused
from dbguard.guard.config import target_for
from dbguard.guard.connect import connect
from dbguard.guard.stamp import read_stamp
from dbguard.guard.tiers import Tier
from dbguard.reports.status import collect_status

from tests.support.cli import invoke_cli
from tests.support.setup import make_settings, state_values


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder only root can enter (like a fresh `mktemp -d` clone)."""
    folder = tmp_path / "clone"
    folder.mkdir()
    os.chmod(tmp_path, 0o700)
    return folder


def test_embedded_default_end_to_end(project: Path) -> None:
    settings = make_settings(project, EMBEDDED_PG_PORT="54391", APP_NAME="demo")
    cluster = EmbeddedCluster.from_settings(settings)
    try:
        target = target_for(settings, Tier.STG)
        assert target.embedded and target.dbname == "demo_stg"
        for tier in Tier:
            opened = cluster.ensure_database(tier)
            with connect(opened, read_only=True) as conn:
                stamp = read_stamp(conn)
            assert stamp is not None and stamp.tier is tier and stamp.database_name == f"demo_{tier.value}"
        assert cluster.is_running()
        if os.geteuid() == 0:  # the unprivileged server user cannot enter the 0700 folder: data lives beside it
            assert cluster.home.is_symlink() and str(cluster.real_home).startswith("/var/tmp/")
        rows = {r.tier: r for r in collect_status(settings)}
        assert all(r.reachable and r.stamp == r.tier.value.upper() for r in rows.values())
        # socket only: nothing listens on TCP
        assert "listen_addresses = ''" in (cluster.data_dir / "postgresql.conf").read_text()
        assert cluster.stop() is True
        rows = {r.tier: r for r in collect_status(settings)}
        assert rows[Tier.STG].why == "embedded cluster stopped (invoke db.up)"
        # started on demand again, data kept
        cluster.ensure_database(Tier.STG)
        assert cluster.is_running()
    finally:
        cluster.stop()


def test_a_killed_database_creation_is_cleaned_up(project: Path) -> None:
    settings = make_settings(project, EMBEDDED_PG_PORT="54392")
    cluster = EmbeddedCluster.from_settings(settings)
    try:
        cluster.ensure_database(Tier.INT)
        with connect(cluster.target(Tier.INT, "postgres"), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "app_stg__creating"')  # what a run killed mid-creation leaves
        cluster.ensure_database(Tier.STG)
        with connect(cluster.target(Tier.INT, "postgres"), autocommit=True) as conn:
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        assert "app_stg__creating" not in names and "app_stg" in names
    finally:
        cluster.stop()


def test_up_and_down_tasks(project: Path) -> None:
    env = state_values(project) | {"EMBEDDED_PG_PORT": "54393"}
    up = invoke_cli("db.up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert "started:" in up.stdout and "databases app_int, app_stg, app_prod" in up.stdout
        status = invoke_cli("db.status", env=env)
        assert "embedded:app_prod" in status.stdout and "PROD" in status.stdout
    finally:
        down = invoke_cli("db.down", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout


def test_a_changed_embedded_port_is_named_while_running_and_used_at_the_next_start(project: Path) -> None:
    """The cluster was made on one port: running, another EMBEDDED_PG_PORT is refused with the fix (not an
    endless 'start it with invoke db.up'); stopped, it starts on the port the settings say now."""
    first = state_values(project) | {"EMBEDDED_PG_PORT": "54397"}
    second = state_values(project) | {"EMBEDDED_PG_PORT": "54398"}
    try:
        assert invoke_cli("db.up", env=first).returncode == 0
        moved = invoke_cli("db.up", env=second)
        assert moved.returncode == 2 and "Traceback" not in moved.stderr
        assert "runs on port 54397, and EMBEDDED_PG_PORT is 54398" in moved.stderr
        assert "EMBEDDED_PG_PORT=54397 invoke db.down" in moved.stderr
        assert invoke_cli("db.down", env=first).returncode == 0
        up = invoke_cli("db.up", env=second)
        assert up.returncode == 0, up.stderr
        status = invoke_cli("db.status", env=second)
        assert status.returncode == 0 and re.search(r"embedded:app_stg\s*│\s*yes", status.stdout), status.stdout
    finally:
        invoke_cli("db.down", env=second)
        invoke_cli("db.down", env=first)


def test_a_wrong_embedded_folder_is_never_emptied(project: Path, tmp_path: Path) -> None:
    """EMBEDDED_PG_DIR pointed at someone's folder with a data/ in it: refused, nothing deleted; a half-made
    cluster of our own (initdb killed after it started) is still cleaned up and made again."""
    victim = tmp_path / "victim"
    (victim / "data").mkdir(parents=True)
    (victim / "data" / "app.sqlite3").write_bytes(b"precious")
    env = state_values(project) | {"EMBEDDED_PG_DIR": str(victim), "EMBEDDED_PG_PORT": "54394"}
    proc = invoke_cli("db.up", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{victim / 'data'} holds files the tools did not make" in proc.stderr
    assert "point EMBEDDED_PG_DIR at a new or empty folder" in proc.stderr
    assert (victim / "data" / "app.sqlite3").read_bytes() == b"precious"
    ours = Path(tempfile.mkdtemp(prefix="pgtest-ours-", dir="/var/tmp"))  # reachable by the server's user
    try:
        (ours / "data").mkdir()
        (ours / "data" / "PG_VERSION").write_text("15\n")  # what a killed initdb leaves
        (ours / ".initdb-started").write_text("initdb started\n")
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(ours, owner.pw_uid, owner.pw_gid)
        cluster = EmbeddedCluster.from_settings(make_settings(project, EMBEDDED_PG_DIR=str(ours)))
        assert cluster.initialise() and cluster.is_initialized()
        assert (ours / "data" / "postgresql.conf").is_file()
    finally:
        shutil.rmtree(ours, ignore_errors=True)


def test_no_binaries_and_no_urls_says_the_ways_out(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = state_values(project) | {"PG_BINDIR": str(empty)}
    proc = invoke_cli("db.up", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found for the embedded default" in proc.stderr
    # PG_BINDIR set is the only folder searched: installing PostgreSQL would not help, the folder would
    assert f"in PG_BINDIR={empty} (the only folder searched while PG_BINDIR is set)" in proc.stderr
    assert "point PG_BINDIR at the bin folder that holds them, or unset it" in proc.stderr
    unset = no_binaries("no PostgreSQL binaries found (needed: psql)", {})  # nothing set: the ways to get them
    assert "install PostgreSQL" in (unset.fix or "") and "docker compose up -d" in (unset.fix or "")
    assert "INT_DATABASE_URL and STG_DATABASE_URL" in (unset.fix or "")


def test_prod_standin_only_on_a_laptop_setup(tmp_path: Path) -> None:
    laptop = make_settings(tmp_path)
    assert target_for(laptop, Tier.PROD).embedded
    team = make_settings(tmp_path, STG_DATABASE_URL="postgresql://app@db.internal/app_stg")
    with pytest.raises(Refused, match="PROD_DATABASE_URL is not set"):
        target_for(team, Tier.PROD)


def test_runs_starting_together_on_a_new_cluster_all_get_their_databases(project: Path) -> None:
    """The first use by several runs at once (pytest workers, a task and the app): one creates, the others wait."""
    from concurrent.futures import ThreadPoolExecutor

    settings = make_settings(project, EMBEDDED_PG_PORT="54393")
    cluster = EmbeddedCluster.from_settings(settings)
    try:
        with ThreadPoolExecutor(4) as pool:
            made = list(pool.map(lambda _: cluster.ensure_database(Tier.INT).dbname, range(4)))
        assert made == ["app_int"] * 4
        with connect(cluster.target(Tier.INT, "postgres"), autocommit=True) as conn:
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        assert {"app_int", "app_stg", "app_prod"} <= names and not any(n.endswith("__creating") for n in names)
    finally:
        cluster.stop()
