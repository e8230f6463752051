"""Secrets stay with the caller: PostgreSQL's programs and the embedded server see a scrubbed environment,
and files holding a secret are gone on every exit path, even after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.cluster.pgtools import require_bindir, run_tool, tool_conninfo
from dbguard.cluster.private_files import private_file, private_folder, private_root, sweep
from dbguard.errors import Refused
from dbguard.guard.config import target_for
from dbguard.guard.connect import connect
from dbguard.guard.tiers import Tier

from tests.support.cli import invoke_cli
from tests.support.clusters import free_port
from tests.support.kill import kill_at
from tests.support.setup import Tiers, make_settings, state_values

# what a caller's shell may hold: none of it is any PostgreSQL program's business
SECRETS = {
    "PROD_DATABASE_URL": "postgresql://app:Url-Secret-51@db.example.com/app_prod",
    "STG_DATABASE_URL": "postgresql://app:Url-Secret-52@db.example.com/app_stg",
    "DB_HUMAN_CONSENT": "Consent-Secret-53",
    "LADDER_REPORT_KEY": "Report-Key-Secret-54-0123456789abcdef",
    "AWS_SECRET_ACCESS_KEY": "Aws-Secret-55",
    "PGPASSWORD": "Pg-Secret-56",
}


@pytest.fixture
def secret_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def assert_scrubbed(environment: str) -> None:
    leaked = [name for name, value in SECRETS.items() if value in environment]
    assert not leaked, leaked
    assert "PATH=" in environment


def test_postgresql_tools_see_none_of_the_callers_secrets(tiers: Tiers, tmp_path: Path, secret_shell: None) -> None:
    target = target_for(tiers.settings, Tier.PROD)
    spy = tmp_path / "spy"
    spy.mkdir()
    log = tmp_path / "env.log"
    real = require_bindir(tiers.settings.values)
    (spy / "psql").write_text(f'#!/bin/sh\nenv >> {log}\nexec {real}/psql "$@"\n')
    (spy / "psql").chmod(0o755)
    proc = run_tool(spy, "psql", ["-X", "-At", "-d", tool_conninfo(target), "-c", "SELECT 42"], target, read_only=True)
    assert proc.stdout.strip() == b"42"
    seen = log.read_text()
    assert_scrubbed(seen)
    assert "PGPASSFILE=" in seen and "PGAPPNAME=guarded-db-tools" in seen  # what the tools set themselves


def test_the_embedded_server_cannot_read_the_callers_secrets(tmp_path: Path, secret_shell: None) -> None:
    """The attack: a superuser of INT (the embedded cluster) runs a program as the server and reads its
    environment, where PROD's URL used to be."""
    project = tmp_path / "clone"
    project.mkdir()
    settings = make_settings(project, EMBEDDED_PG_PORT=str(free_port()), APP_NAME="scrub")
    cluster = EmbeddedCluster.from_settings(settings)
    try:
        with connect(cluster.ensure_database(Tier.INT), autocommit=True) as conn:
            conn.execute("CREATE TEMP TABLE seen (line text)")
            conn.execute("COPY seen FROM PROGRAM 'env' WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')")
            row = conn.execute("SELECT string_agg(line, E'\\n') FROM seen").fetchone()
        assert row is not None
        assert_scrubbed(str(row[0]))
    finally:
        cluster.stop()


def test_a_killed_runs_passfile_is_removed_by_the_next_run(tiers: Tiers, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()} | {"TMPDIR": str(scratch)}
    kill_at("backup:dumping", ["db.backup", "--env", "prod"], env, tmp_path)  # pg_dump running: passfile in place
    private = scratch / f"dbguard-{os.geteuid()}"
    (left,) = private.glob("pgpass-*/pgpass")  # the kill left it (mode 0600, in a 0700 folder)
    assert tiers.prod.password in left.read_text()  # type: ignore[operator]
    proc = invoke_cli("db.backup", "--env", "prod", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not left.exists() and not left.parent.exists()  # the next run removed it...
    assert [p.name for p in private.iterdir()] == [".lock"]  # ...and left none of its own


def test_private_folders_go_on_every_exit_path_and_a_killed_ones_with_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError), private_folder("refresh") as folder:
        private_file(folder, "send.sql", "salted")
        raise RuntimeError("a failure in the middle")
    assert not folder.exists()

    script = (
        "import sys, time\n"
        "from dbguard.cluster.private_files import private_file, private_folder\n"
        "with private_folder('refresh') as folder:\n"
        "    private_file(folder, 'send.sql', 'salted')\n"
        "    print(folder, flush=True)\n"
        "    time.sleep(120)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], env=os.environ | {"TMPDIR": str(tmp_path)}, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    held = Path(child.stdout.readline().strip())
    assert (held / "send.sql").exists()
    assert sweep() == [] and held.exists()  # a live run's folder is never swept
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert held.exists()  # a kill runs no clean-up...
    with private_folder("pgpass"):
        assert not held.exists()  # ...the next run's does


def test_a_private_root_that_is_not_private_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = private_root()
    root.chmod(0o755)
    with pytest.raises(Refused, match="is not this user's own with mode 0700"):
        private_folder("pgpass").__enter__()
