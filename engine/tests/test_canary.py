"""A canary password in every URL; every task run, allowed and refused; the canary found nowhere.

The PROD write password (what PROD_WRITE_PASSWORD_COMMAND prints for PROD writes) is a second canary.

Not in stdout or stderr, the audit log, backup manifests or any file the tools write, exception
texts (DB_TOOLS_DEBUG=1 would print tracebacks), or the argv of any child process: every
PostgreSQL binary the tools start is a wrapper that records its argv and environment keys.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

from dbguard.guard.tiers import Tier

from tasks import namespace
from tests.conftest import PROD_OWNER_PASSWORD, PROD_PASSWORD
from tests.support.cli import invoke_cli
from tests.support.project import PROJECT
from tests.support.setup import Tiers, state_values

CANARY = PROD_PASSWORD  # the PROD cluster's real password; INT and STG carry it too (their trust auth ignores it)


def wrapper_bindir(real: Path, folder: Path, log: Path) -> Path:
    folder.mkdir()
    log.touch()
    os.chmod(log, 0o666)
    for tool in real.iterdir():
        if os.access(tool, os.X_OK) and tool.is_file():
            script = folder / tool.name
            script.write_text(
                f'#!/bin/sh\nprintf "%s\\n" "{tool.name} $*" >> {log}\n'
                f'env | grep -q "^PGPASSWORD=" && echo "PGPASSWORD-IN-ENV {tool.name}" >> {log}\n'
                f'exec {tool} "$@"\n'
            )
            script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def test_the_canary_password_appears_nowhere(tiers: Tiers, tmp_path: Path) -> None:
    from dbguard.migrations.schema import raw, sa_connection, upgrade
    from dbguard.seeding.runner import make_plan, seed_database

    with sa_connection(tiers.target(Tier.PROD)) as conn, conn.begin():  # PROD with data, so refreshes copy rows
        upgrade(tiers.settings, conn, "head")
        seed_database(raw(conn), make_plan(PROJECT, "minimal"))

    def with_canary(url: str) -> str:
        return url.replace("postgresql://postgres@", f"postgresql://postgres:{CANARY}@")

    urls = {
        Tier.INT: with_canary(tiers.urls[Tier.INT]),
        Tier.STG: with_canary(tiers.urls[Tier.STG]),
        Tier.PROD: tiers.urls[Tier.PROD],
    }
    assert all(CANARY in u for u in urls.values())
    log = tmp_path / "argv.log"
    bindir = wrapper_bindir(tiers.local.bindir, tmp_path / "bin", log)
    env = (
        state_values(tmp_path)
        | {t.url_variable: u for t, u in urls.items()}
        | {"PG_BINDIR": str(bindir), "DB_TOOLS_DEBUG": "1", "SANITIZE_POLICY": str(tmp_path / "none.toml")}
    )
    prod_db = tiers.names[Tier.PROD]
    email = tiers.sql(Tier.PROD, "SELECT email FROM users ORDER BY id LIMIT 1")
    sqlite_file = tmp_path / "old-app.db"
    with closing(sqlite3.connect(sqlite_file)) as lite, lite:
        lite.execute("CREATE TABLE users (id integer PRIMARY KEY, email text, full_name text)")
        lite.execute("INSERT INTO users VALUES (1, 'lite@example.com', 'Lite User')")
    wrong_prod = tiers.urls[Tier.PROD].replace(CANARY, CANARY + "-wrong")
    runs: list[tuple[list[str], dict[str, str]]] = [
        (["db.status"], {}),
        (["db.status", "--env", "prod"], {}),
        (["db.doctor"], {}),
        (["db.up"], {}),
        (["db.down", "--dry-run"], {}),
        (["db.stamp", "--env", "stg", "--dry-run"], {}),
        (["db.stamp", "--env", "prod", "--confirm", "nope"], {}),
        (["db.prod-reader", "--dry-run"], {}),
        (["db.prod-reader"], {}),
        (["db.migrate", "--env", "int"], {}),
        (["db.migrate", "--env", "stg"], {}),
        (["db.migrate", "--env", "prod", "--confirm", prod_db], {}),
        (["db.migrate", "--env", "prod", "--dry-run"], {}),
        (["db.migrate", "--env", "stg", "--to", "zzz"], {}),
        (["db.seed", "--env", "int", "--scenario", "minimal"], {}),
        (["db.seed", "--env", "prod"], {}),
        (["db.reset", "--env", "stg", "--scenario", "minimal"], {}),
        (["db.reset", "--env", "prod"], {}),
        (["db.fill-standin", "--confirm", prod_db], {}),  # a real PROD: refused before it is opened
        (["db.revision", "-m", "nothing", "--dry-run"], {}),
        (["db.backup", "--env", "int"], {}),
        (["db.backup", "--env", "stg"], {}),
        (["db.backup", "--env", "prod"], {}),
        (["db.backups"], {}),
        (["db.verify", "latest", "--deep"], {}),
        (["db.restore", "--env", "stg", "--dry-run"], {}),
        (["db.restore", "--env", "stg"], {}),
        (["db.restore", "--env", "prod", "--confirm", prod_db], {}),
        (["db.prune-backups", "--keep", "1"], {}),
        (["db.sanitize-check"], {}),
        (["db.refresh-staging", "--dry-run"], {}),
        (["db.refresh-staging"], {}),
        (["db.refresh-staging", "--undo"], {}),
        (["db.ownership"], {}),
        (["db.roles", "--env", "int"], {"INT_APP_DATABASE_PASSWORD": CANARY, "INT_WORKER_DATABASE_PASSWORD": CANARY}),
        (["db.roles", "--env", "prod", "--dry-run"], {}),
        (["db.roles", "--env", "prod", "--confirm", prod_db], {}),  # no login passwords for PROD: refused
        (["db.export-user", "--env", "prod", "--user", email, "--out", str(tmp_path / "user.tar")], {}),
        (["db.export-user", "--env", "prod", "--user", email, "--dry-run"], {}),
        (["db.import-user", "--env", "stg", "--from", str(tmp_path / "user.tar"), "--as", "canary@example.com"], {}),
        (["db.import-user", "--env", "prod", "--from", str(tmp_path / "user.tar"), "--confirm", prod_db], {}),
        (["db.import-sqlite", "--env", "int", "--from", str(sqlite_file)], {}),  # INT holds rows: refused
        (["db.import-sqlite", "--env", "prod", "--from", str(sqlite_file), "--confirm", prod_db], {}),
        (["db.backup", "--env", "prod"], {"PROD_DATABASE_URL": wrong_prod}),
        (["db.status"], {"PROD_DATABASE_URL": wrong_prod}),
        (["db.stamp", "--env", "stg"], {"STG_DATABASE_URL": "mysql://u:" + CANARY + "@h/x"}),
        (["db.stamp", "--env", "stg"], {"STG_DATABASE_URL": "postgresql://u:" + CANARY + "@h:bad/x"}),
        (["db.audit", "--verify"], {}),
        (["db.ladder"], {}),
    ]
    covered = {args[0].removeprefix("db.") for args, _ in runs}
    assert covered >= {name.replace("_", "-") for name in namespace.collections["db"].tasks}, (
        "a task lacks a canary run"
    )
    outputs = []
    codes = []
    for args, extra in runs:
        proc = invoke_cli(*args, env=env | extra)
        outputs.append(proc.stdout + proc.stderr)
        codes.append(proc.returncode)
        assert "Traceback" not in proc.stdout + proc.stderr, args
    assert 0 in codes and 2 in codes  # allowed and refused runs both happened
    assert (tmp_path / "user.tar").is_file()  # PROD's export really ran
    argv = log.read_text()
    assert "pg_dump" in argv and "pg_restore" in argv and "psql" in argv  # the wrappers really were used
    for secret in (CANARY, PROD_OWNER_PASSWORD):
        leaks = [text for text in outputs if secret in text]
        assert not leaks, leaks[0][:500]
        assert secret not in argv
    assert "PGPASSWORD-IN-ENV" not in argv
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != log and path.suffix != ".dump":
            for secret in (CANARY, PROD_OWNER_PASSWORD):
                assert secret.encode() not in path.read_bytes(), f"a password in {path}"
