"""Issue 10's side doors, each attack reproduced as it was run, each now refused with PROD unchanged.

Two servers as in every test (INT/STG on one, PROD with a password and TLS on another). PROD is
configured as the tools want it: PROD_DATABASE_URL is a read-only role, PROD writes take the write
role whose password only PROD_WRITE_PASSWORD_COMMAND prints. Each test names the attack it replays;
on the code before the fix each of them reached PROD (or STG with PROD's data).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg
import pytest
from dbguard.cli.runner import EXIT_OK, EXIT_REFUSED
from dbguard.errors import Refused
from dbguard.guard.tiers import Tier

from tests.support.cli import cli_environment, invoke_cli, module_argv
from tests.support.clusters import OWNER, ThrowawayCluster
from tests.support.project import FIXTURE_ROOT, PROJECT
from tests.support.setup import (
    PROD_OWNER_PASSWORD,
    Tiers,
    grant_reader,
    human,
    robot,
    run,
    stamp_url,
    state_values,
)


def env_for(tiers: Tiers, tmp_path: Path, **extra: str) -> dict[str, str]:
    return state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()} | extra


def one_refusal(proc: subprocess.CompletedProcess[str], expected: str) -> str:
    """The one error line of a refused CLI run (exit 2, no traceback, no secret)."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_REFUSED, text
    assert "Traceback" not in text and PROD_OWNER_PASSWORD not in text
    (line,) = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert expected in line, line
    return line


def write_marker(ctx):  # type: ignore[no-untyped-def]
    """A body that writes through its clearance, so a bypassed guard leaves evidence."""
    with ctx.target.connect() as conn:
        conn.execute("CREATE TABLE side_door (id int)")
    return 0


def has_marker(server: ThrowawayCluster, dbname: str) -> bool:
    return server.psql(dbname, "SELECT to_regclass('public.side_door') IS NOT NULL") == "t"


def seed_prod(tiers: Tiers) -> None:
    """PROD at head with data, written as its owner (around the tools)."""
    from dbguard.migrations.schema import raw, sa_connection, upgrade
    from dbguard.seeding.runner import make_plan, seed_database

    with sa_connection(tiers.target(Tier.PROD)) as conn, conn.begin():
        upgrade(tiers.settings, conn, "head")
        seed_database(raw(conn), make_plan(PROJECT, "minimal"))


def prod_count(tiers: Tiers, table: str = "users") -> int:
    return int(tiers.sql(Tier.PROD, f"SELECT count(*) FROM {table}"))


# -- 2. identity: every connection reaches the database whose stamp was checked ------------------------
@pytest.fixture(scope="module")
def both_servers_role(local_server: ThrowawayCluster, prod_server: ThrowawayCluster) -> str:
    """One role name and password valid on both servers (local: trust; PROD: the password), as in the attack."""
    name = "lb_owner"
    for server, password in ((local_server, ""), (prod_server, PROD_OWNER_PASSWORD)):
        clause = f" PASSWORD '{password}'" if password else ""
        server.psql(
            "postgres",
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN "
            f"CREATE ROLE {name} LOGIN SUPERUSER{clause}; END IF; END $$",
        )
    return name


def test_a_host_list_with_load_balancing_never_reaches_prod(
    tiers: Tiers, tmp_path: Path, both_servers_role: str
) -> None:
    """Attack: STG_DATABASE_URL with host=a,b and load_balance_hosts=random, PROD's server holding a database
    of STG's name stamped STG: `db.seed --env stg --append` inserted into PROD in 2 of 10 runs."""
    stg = tiers.names[Tier.STG]
    tiers.prod.create_database(stg)
    stamp_url(tiers.prod.owner_url(stg), Tier.STG, stg)  # the stamp reads alike on both servers
    url = (
        f"postgresql://{both_servers_role}:{PROD_OWNER_PASSWORD}@/{stg}?host=127.0.0.1,127.0.0.1"
        f"&port={tiers.local.port},{tiers.prod.port}&load_balance_hosts=random&sslmode=prefer"
    )
    settings = tiers.settings.with_values(STG_DATABASE_URL=url)
    for _ in range(12):  # each connection on the old code went to either server, one in two
        result = run(settings, "seed", "stg", robot(), write_marker)
        assert result.code == EXIT_REFUSED and not result.ran
        assert "names several servers (host is a list)" in result.stderr
    assert not has_marker(tiers.prod, stg) and not has_marker(tiers.local, stg)
    proc = invoke_cli("db.seed", "--env", "stg", "--append", env=env_for(tiers, tmp_path, STG_DATABASE_URL=url))
    line = one_refusal(proc, "every connection must reach the one server whose tier stamp was checked")
    assert PROD_OWNER_PASSWORD not in line
    for spelling, message in (
        (
            f"postgresql://postgres@/{stg}?host={tiers.local.socket_dir}&port={tiers.local.port}&load_balance_hosts=random",
            "asks for load_balance_hosts",
        ),
        (
            f"postgresql://postgres@/{stg}?host={tiers.local.socket_dir}&port={tiers.local.port}"
            "&target_session_attrs=read-write",
            "asks for target_session_attrs",
        ),
        (f"postgresql://postgres@/{stg}?service=elsewhere", "reads its connection from a service file"),
    ):
        result = run(tiers.settings.with_values(STG_DATABASE_URL=spelling), "seed", "stg", robot(), write_marker)
        assert result.code == EXIT_REFUSED and message in result.stderr


def test_every_connection_is_pinned_to_the_database_whose_stamp_was_read(tiers: Tiers) -> None:
    """The pin: a Cleared handle's later connections are checked against the server and database the stamp came
    from; one that reaches another (here: a handle re-aimed at PROD's server) is stopped before it is used."""
    from dataclasses import replace

    from dbguard.errors import Failed
    from dbguard.guard.config import target_for
    from dbguard.guard.door import authorize

    clearance = authorize(tiers.settings, "seed", Tier.STG, target_for(tiers.settings, Tier.STG), robot())
    stg = clearance.target
    assert stg.pin is not None and stg.pin.database_oid is not None
    with stg.connect() as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (tiers.names[Tier.STG],)
    elsewhere = replace(stg, params=tiers.target(Tier.PROD).params)  # same handle, another server
    with pytest.raises(Failed, match="reached another server than the one whose tier stamp was checked"):
        elsewhere.connect()
    sibling = replace(stg, params={**stg.params, "dbname": tiers.names[Tier.INT]})  # same server, other database
    with pytest.raises(Failed, match="reached another database"):
        sibling.connect()
    restoring = authorize(tiers.settings, "restore", Tier.STG, target_for(tiers.settings, Tier.STG), robot()).target
    with restoring.scratch("probe") as made:  # the run's own replacement: after the swap the pin follows it
        with made.connect() as conn:
            conn.execute("CREATE TABLE swapped_in (i int)")
        restoring.swap_in(made, keep_old_as=None, wait_seconds=0, out=None)
    with restoring.connect() as conn:
        assert conn.execute("SELECT to_regclass('swapped_in') IS NOT NULL").fetchone() == (True,)


@pytest.mark.parametrize(
    "spelling",
    [
        "host=db.example.com&hostaddr=127.0.0.1",
        "host=127.1",
        "host=2130706433",
        "host=0x7f.0.0.1",
        "host=::ffff:127.0.0.1",
        "host=localhost.",
    ],
)
def test_identity_folds_hostaddr_and_every_numeric_spelling(tiers: Tiers, spelling: str) -> None:
    """Attack: an STG URL reaching PROD's database through `hostaddr=` or `127.1` passed the "tiers are different
    databases" check, which compared `host` text only."""
    url = f"postgresql://app:x@/{tiers.names[Tier.PROD]}?{spelling}&port={tiers.prod.port}"
    settings = tiers.settings.with_values(STG_DATABASE_URL=url)
    result = run(settings, "seed", "stg", robot(), write_marker)
    assert result.code == EXIT_REFUSED and not result.ran
    where = f"local:{tiers.prod.port}/{tiers.names[Tier.PROD]}"
    assert f"STG_DATABASE_URL and PROD_DATABASE_URL both point at {where}: tiers must never share" in result.stderr


def test_is_local_judges_the_address_libpq_connects_to() -> None:
    """Attack: `host=localhost&hostaddr=<remote>` counted as local, so a remote PROD needed no TLS and a remote
    STG passed as a safe refresh target."""
    from dbguard.guard.config import prod_tls_finding
    from dbguard.guard.targets import parse_database_url

    remote = parse_database_url(
        "postgresql://app:x@/app_prod?host=localhost&hostaddr=10.20.30.40", tier=Tier.PROD, source="PROD_DATABASE_URL"
    )
    assert not remote.is_local and not prod_tls_finding(remote).ok
    assert remote.identity() == ("10.20.30.40", 5432, "app_prod")
    for local in ("127.1", "::ffff:127.0.0.1", "2130706433", "/var/run/postgresql", "localhost"):
        assert parse_database_url(f"postgresql://a@/db?host={local}", tier=Tier.STG, source="X").is_local, local


def test_an_unstamped_prod_database_reached_through_stg_is_never_stamped_or_reset(tiers: Tiers, tmp_path: Path) -> None:
    """Attack: an unstamped PROD database (200 users) reached through an STG URL via `hostaddr` was stamped STG
    without any confirmation, then reset: 200 users -> 0."""
    orphan = tiers.names[Tier.PROD] + "_orphan"  # a PROD database no PROD_DATABASE_URL names, so unstamped
    tiers.prod.create_database(orphan)
    tiers.prod.psql(orphan, "CREATE TABLE users (id int); INSERT INTO users SELECT generate_series(1, 200)")
    via_hostaddr = (
        f"postgresql://{OWNER}:{PROD_OWNER_PASSWORD}@db.internal/{tiers.names[Tier.PROD]}"
        f"?hostaddr=127.0.0.1&port={tiers.prod.port}&sslmode=require"
    )
    env = env_for(tiers, tmp_path, STG_DATABASE_URL=via_hostaddr)
    one_refusal(invoke_cli("db.stamp", "--env", "stg", env=env), "tiers must never share a database")
    # the same database under a name no check can fold: the data it holds stops the stamp
    orphan_url = via_hostaddr.replace(f"/{tiers.names[Tier.PROD]}?", f"/{orphan}?")
    env = env_for(tiers, tmp_path, STG_DATABASE_URL=orphan_url)
    one_refusal(
        invoke_cli("db.stamp", "--env", "stg", env=env),
        f"stamp '{orphan}' as STG although it holds rows (in public.users) is allowed only at an interactive terminal",
    )
    one_refusal(invoke_cli("db.reset", "--env", "stg", "--no-seed", env=env), "has no tier stamp")
    assert tiers.prod.psql(orphan, "SELECT count(*) FROM users") == "200"
    assert tiers.prod.psql(orphan, "SELECT to_regclass('dbguard.tier_stamp') IS NULL") == "t"
    # a human at a terminal who types the name may stamp it (a STG they filled themselves, say)
    settings = tiers.settings.with_values(STG_DATABASE_URL=orphan_url)
    from dbguard.guard.stamp_task import stamp_task

    assert run(settings, "stamp", "stg", human(orphan), stamp_task).code == EXIT_OK
    assert tiers.prod.psql(orphan, "SELECT tier FROM dbguard.tier_stamp") == "stg"


# -- 1. credentials: PROD's reads cannot write, PROD's writes need a credential nobody stores -----------
def test_a_prod_read_through_a_role_that_can_write_is_refused(tiers: Tiers) -> None:
    """Attack: PROD_DATABASE_URL with `options=-c default_transaction_read_only=off` (or injected `BEGIN READ
    WRITE`) wrote to PROD through a read-only operation: the read-only session was only a setting."""
    owner_off = tiers.prod.owner_url(tiers.names[Tier.PROD]) + "&options=-c%20default_transaction_read_only%3Doff"
    settings = tiers.settings.with_values(PROD_DATABASE_URL=owner_off)
    for operation in ("backup", "sanitize-check"):
        result = run(settings, operation, "prod", robot(), write_marker)
        assert result.code == EXIT_REFUSED and not result.ran
        assert f"PROD_DATABASE_URL's role can write to PROD: '{OWNER}' is a superuser" in result.stderr
        assert "invoke db.prod-reader --dry-run" in result.stderr
    assert not has_marker(tiers.prod, tiers.names[Tier.PROD])


def test_the_read_only_role_refuses_every_write_whatever_the_session_asks(tiers: Tiers) -> None:
    """Through the real read path (a read-only grant), with the URL's own options turning the session default
    off and `BEGIN READ WRITE`: the server refuses the role."""
    from dbguard.cluster.pgtools import require_bindir
    from dbguard.errors import Failed

    seed_prod(tiers)
    url = tiers.urls[Tier.PROD] + "&options=-c%20default_transaction_read_only%3Doff"
    settings = tiers.settings.with_values(PROD_DATABASE_URL=url)

    def attack(ctx):  # type: ignore[no-untyped-def]
        with ctx.target.connect(autocommit=True) as conn:
            for statement in (
                "BEGIN READ WRITE; UPDATE dbguard.tier_stamp SET tier = 'stg'",
                "BEGIN READ WRITE; DELETE FROM users",
                "BEGIN READ WRITE; CREATE TABLE side_door (id int)",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
                conn.execute("ROLLBACK")
        script = "COMMIT; BEGIN READ WRITE; CREATE TABLE side_door (i int); UPDATE dbguard.tier_stamp SET tier = 'stg'"
        with pytest.raises(Failed, match="permission denied"):
            ctx.target.run_tool(
                require_bindir(ctx.settings.values), "psql", ["-X", "-v", "ON_ERROR_STOP=1", "-c", script]
            )
        return 0

    assert run(settings, "backup", "prod", robot(), attack).code == EXIT_OK
    assert tiers.sql(Tier.PROD, "SELECT tier FROM dbguard.tier_stamp") == "prod"
    assert prod_count(tiers) > 0 and not has_marker(tiers.prod, tiers.names[Tier.PROD])


def test_doctor_proves_the_reader_cannot_write_and_never_calls_a_writer_read_only(tiers: Tiers) -> None:
    """Attack: with `options=-c default_transaction_read_only=off` in PROD's URL, db.doctor still reported PROD's
    sessions read-only. Now it judges the role (catalog) and tries to write (rolled back)."""
    from dbguard.reports.doctor import run_checks

    check = "PROD_DATABASE_URL's role cannot write to PROD (catalog checked, writes tried)"
    (good,) = [f for f in run_checks(tiers.settings).findings if f.check == check]
    assert good.ok and "the server refused every one" in good.message
    owner_off = tiers.prod.owner_url(tiers.names[Tier.PROD]) + "&options=-c%20default_transaction_read_only%3Doff"
    report = run_checks(tiers.settings.with_values(PROD_DATABASE_URL=owner_off))
    (bad,) = [f for f in report.findings if f.check == check]
    assert not bad.ok and bad.required and "is a superuser" in bad.message
    assert "the server allowed: DELETE FROM" in bad.message and "CREATE SCHEMA dbguard_write_probe" in bad.message
    assert tiers.sql(Tier.PROD, "SELECT to_regnamespace('dbguard_write_probe') IS NULL") == "t"  # rolled back
    assert not [f for f in report.findings if "sessions" in f.check and f.ok]  # nothing calls PROD read-only


def test_prod_writes_take_a_write_credential_that_is_never_stored(tiers: Tiers) -> None:
    """An agent that holds only PROD_DATABASE_URL has no way to write: the write credential is a user name
    plus a password typed at a terminal or printed by a configured command at the moment of use."""
    db = tiers.names[Tier.PROD]
    without = tiers.settings.with_values(PROD_WRITE_PASSWORD_COMMAND=None)
    agent = robot(agent="claude-code", consent=db)  # consent and the typed name: still no credential
    result = run(without, "migrate", "prod", agent, write_marker, confirm=db)
    assert result.code == EXIT_REFUSED and not result.ran
    assert "a PROD write needs the PROD write password, and this run has no terminal to type it at" in result.stderr
    result = run(without.with_values(PROD_WRITE_USER=None), "migrate", "prod", agent, write_marker, confirm=db)
    assert result.code == EXIT_REFUSED and "PROD_WRITE_USER, the role that owns PROD's tables, and it is not set" in (
        result.stderr
    )
    stored = tiers.settings.with_values(PROD_WRITE_PASSWORD=PROD_OWNER_PASSWORD)
    result = run(stored, "migrate", "prod", robot(), write_marker, confirm=db)
    assert result.code == EXIT_REFUSED and "PROD_WRITE_PASSWORD is set" in result.stderr
    assert PROD_OWNER_PASSWORD not in result.text
    same = tiers.settings.with_values(PROD_WRITE_USER="app")
    result = run(same, "migrate", "prod", robot(), write_marker, confirm=db)
    assert result.code == EXIT_REFUSED and "PROD_WRITE_USER and PROD_DATABASE_URL both use 'app'" in result.stderr
    failing = tiers.settings.with_values(PROD_WRITE_PASSWORD_COMMAND="false")
    result = run(failing, "migrate", "prod", robot(), write_marker, confirm=db)
    assert result.code == 1 and "PROD_WRITE_PASSWORD_COMMAND failed (exit 1); its output is not shown" in result.stderr
    wrong = tiers.settings.with_values(PROD_WRITE_PASSWORD_COMMAND="echo Not-The-Owner-Password")
    result = run(wrong, "migrate", "prod", robot(), write_marker, confirm=db)
    assert result.code == EXIT_REFUSED and f"PROD refused the write credential of '{OWNER}'" in result.stderr
    assert "Not-The-Owner-Password" not in result.text
    assert not has_marker(tiers.prod, db)

    typed: list[str] = []

    def type_password(question: str) -> str:
        typed.append(question)
        return PROD_OWNER_PASSWORD

    at_terminal = human(db)
    object.__setattr__(at_terminal, "secret_prompt", type_password)

    def who(ctx):  # type: ignore[no-untyped-def]
        with ctx.target.connect() as conn:
            return 0 if conn.execute("SELECT current_user").fetchone() == (OWNER,) else 1

    assert run(without, "migrate", "prod", at_terminal, who).code == EXIT_OK
    assert typed == [f"Password of '{OWNER}' (the PROD write credential) for '{db}': "]
    assert run(tiers.settings, "migrate", "prod", robot(), who, confirm=db).code == EXIT_OK  # the command's
    dry = run(without, "migrate", "prod", robot(), lambda ctx: 0, confirm=db, dry_run=True)
    assert dry.code == EXIT_OK  # a dry run asks for no credential


def test_prod_reader_makes_a_role_that_cannot_write(tiers: Tiers, tmp_path: Path) -> None:
    """db.prod-reader: the SQL on --dry-run (no password in it), the role made with the write credential by a
    human, then accepted by the guard and proven by db.doctor."""
    from dbguard.guard.prod_reader import prod_reader_task
    from dbguard.reports.doctor import run_checks

    db = tiers.names[Tier.PROD]
    secret = "Fresh-Reader-pw-31"
    url = f"postgresql://fresh_reader:{secret}@127.0.0.1:{tiers.prod.port}/{db}?sslmode=require"
    settings = tiers.settings.with_values(PROD_DATABASE_URL=url)
    refused = run(settings, "backup", "prod", robot(), lambda ctx: 0)
    assert refused.code == EXIT_REFUSED and "wrong or missing password for user 'fresh_reader'" in refused.stderr
    proc = invoke_cli("db.prod-reader", "--dry-run", env=env_for(tiers, tmp_path, PROD_DATABASE_URL=url))
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert 'CREATE ROLE "fresh_reader" NOSUPERUSER' in proc.stdout and "PASSWORD '***'" in proc.stdout
    assert "default_transaction_read_only = on" in proc.stdout and secret not in proc.stdout + proc.stderr
    one_refusal(
        invoke_cli("db.prod-reader", env=env_for(tiers, tmp_path, PROD_DATABASE_URL=url)),
        "allowed only at an interactive terminal",
    )
    made = run(settings, "prod-reader", "prod", human(db), prod_reader_task)
    assert made.code == EXIT_OK, made.text
    assert "'fresh_reader' can only read" in made.stdout and secret not in made.text
    assert run(settings, "backup", "prod", robot(), lambda ctx: 0).code == EXIT_OK
    check = "PROD_DATABASE_URL's role cannot write to PROD (catalog checked, writes tried)"
    (finding,) = [f for f in run_checks(settings).findings if f.check == check]
    assert finding.ok, finding.message


# -- 4. PROD-destructive operations: interactive only, the name typed, consent for agents ---------------
def test_a_prod_downgrade_by_flag_is_refused(tiers: Tiers, tmp_path: Path) -> None:
    """Attack: `db.migrate --env prod --to base --confirm app_prod` (no terminal, not an agent, the ladder passed)
    dropped every PROD table."""
    from dbguard.guard.connect import connect
    from dbguard.ladder.gate import MigrationFiles, read_prod_facts, record_pass

    seed_prod(tiers)
    with connect(tiers.target(Tier.PROD), read_only=True) as conn:  # the gate is open for these files
        record_pass(tiers.settings, MigrationFiles.on_disk(tiers.settings), read_prod_facts(conn))
    db, users = tiers.names[Tier.PROD], prod_count(tiers)
    env = env_for(tiers, tmp_path)
    line = one_refusal(
        invoke_cli("db.migrate", "--env", "prod", "--to", "base", "--confirm", db, env=env),
        f"downgrade PROD '{db}' to base is allowed only at an interactive terminal",
    )
    assert "run it yourself in a terminal" in line
    assert prod_count(tiers) == users and tiers.sql(Tier.PROD, "SELECT version_num FROM alembic_version") == "0002"
    assert not list((tmp_path / "backups").glob("prod-*.dump"))  # refused before the backup, before anything
    from dbguard.migrations.migrate import migrate_task

    at_terminal = human(db)
    result = run(tiers.settings, "migrate", "prod", at_terminal, lambda ctx: migrate_task(ctx, "0001"))
    assert result.code == EXIT_OK, result.text
    assert at_terminal._prompts[-1] == f"Type the database name '{db}' to downgrade PROD '{db}' to 0001: "  # type: ignore[attr-defined]
    assert tiers.sql(Tier.PROD, "SELECT version_num FROM alembic_version") == "0001"


def fake_backups(folder: Path, database: str, count: int, *, tier: str = "prod") -> list[Path]:
    """Backup files with manifests (retention reads names and manifests only), oldest first."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        path = folder / f"{tier.lower()}-{database}-2026010{i + 1}T000000000Z.dump"
        path.write_bytes(b"PGDMP fake")
        manifest = {"tier": tier, "database": database, "reason": "manual", "verified_at": None}
        if i == 1:
            manifest["verified_at"] = "2026-01-02T01:00:00+00:00"
        if i == 2:
            manifest["reason"] = "before migrate to 0002"
        Path(str(path) + ".json").write_text(json.dumps(manifest))
        made.append(path)
    return made


def test_an_agent_cannot_delete_prod_backups(tiers: Tiers, tmp_path: Path) -> None:
    """Attack: an agent ran `db.prune-backups --keep 1 --yes` and deleted six PROD backups, the one taken before a
    PROD change among them."""
    db = tiers.names[Tier.PROD]
    made = fake_backups(tmp_path / "backups", db, 7)
    env = env_for(tiers, tmp_path) | {"CLAUDECODE": "1"}
    proc = invoke_cli("db.prune-backups", "--keep", "1", "--yes", env=env)
    one_refusal(proc, "delete 4 PROD backup(s) of")
    assert all(p.exists() for p in made)
    for caller in (robot(), robot(agent="codex", consent=db)):
        proc_result = run(tiers.settings, "prune-backups", "prod", caller, prune)
        assert proc_result.code == EXIT_REFUSED and "allowed only at an interactive terminal" in proc_result.stderr
    assert all(p.exists() for p in made)
    at_terminal = human(db)
    result = run(tiers.settings, "prune-backups", "prod", at_terminal, prune)
    assert result.code == EXIT_OK, result.text
    assert f"keeping {made[1].name}: the newest verified PROD backup" in result.stdout
    assert f"keeping {made[2].name}: taken before migrate to 0002, the latest PROD write" in result.stdout
    assert [p.exists() for p in made] == [False, True, True, False, False, False, True]


def prune(ctx):  # type: ignore[no-untyped-def]
    from dbguard.backup.retention import prune_task

    return prune_task(ctx.settings, ctx.out, keep=1, yes=True, caller=ctx.caller)


def test_a_manifest_tier_in_capitals_is_prod(tiers: Tiers, tmp_path: Path) -> None:
    """Attack: a manifest saying "PROD" (capitals) passed as not-PROD: restored into STG, pruned as STG's."""
    from dbguard.backup.files import Backup, list_backups, read_manifest

    (path,) = fake_backups(tmp_path / "backups", "app_prod", 1, tier="stg")
    manifest = json.loads(Path(str(path) + ".json").read_text()) | {"tier": "PROD"}
    Path(str(path) + ".json").write_text(json.dumps(manifest))
    backup = Backup(path, read_manifest(path))
    assert backup.tier == "prod"
    assert [b.path for b in list_backups(tmp_path / "backups", "prod")] == [path]
    assert list_backups(tmp_path / "backups", "stg") == []
    assert Backup(path, {"tier": " Prod "}).tier == "prod" and Backup(path, {"tier": "production"}).tier == "prod"
    proc = invoke_cli("db.restore", "--env", "stg", "--from", path.name, env=env_for(tiers, tmp_path))
    one_refusal(proc, "is a PROD backup: restoring it into STG copies real people's data there unsanitized")


def test_prod_data_into_a_lower_tier_needs_a_human(tiers: Tiers, tmp_path: Path) -> None:
    """Attack: an agent pulled raw PROD data into STG with `--allow-prod-data` alone."""
    from dbguard.backup.dump import take_backup
    from dbguard.backup.restore import restore_task

    from tests.support.setup import cleared

    seed_prod(tiers)
    made = take_backup(tiers.settings, cleared(tiers.settings, "backup", Tier.PROD).target, None)
    before = tiers.sql(Tier.STG, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    env = env_for(tiers, tmp_path) | {"CLAUDECODE": "1"}
    proc = invoke_cli("db.restore", "--env", "stg", "--from", made.path.name, "--allow-prod-data", env=env)
    one_refusal(proc, "asked for by an automated agent (claude-code); it needs a human's consent")
    db = tiers.names[Tier.PROD]
    for caller in (robot(), human(db, agent="cursor-agent")):
        result = run(
            tiers.settings,
            "restore",
            "stg",
            caller,
            lambda ctx: restore_task(ctx, made.path.name, allow_prod_data=True),
        )
        assert result.code == EXIT_REFUSED and not list(tiers.settings.backups_dir.glob("stg-*.dump"))
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == before


def test_re_stamping_prod_is_interactive_only(tiers: Tiers, tmp_path: Path) -> None:
    """Attack: `db.stamp --env prod --force --confirm <name>` re-stamped a PROD database (a copy's stamp) from a
    script: PROD's stamp is the one unlock that could open it to resets."""
    db = tiers.names[Tier.PROD]
    tiers.sql(Tier.PROD, "UPDATE dbguard.tier_stamp SET database_name = 'app_prod_old'")
    proc = invoke_cli("db.stamp", "--env", "prod", "--force", "--confirm", db, env=env_for(tiers, tmp_path))
    assert proc.returncode == EXIT_REFUSED
    assert tiers.sql(Tier.PROD, "SELECT database_name FROM dbguard.tier_stamp") == "app_prod_old"


# -- consent an agent gives itself --------------------------------------------------------------------
def agent_shell(command: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`command` in a bash started like an agent's (CLAUDECODE=1 in its environment, no consent), the way an
    agent's shell runs more than one command (so bash stays the tools' parent)."""
    return subprocess.run(
        ["bash", "-c", command + "; exit $?"],
        cwd=FIXTURE_ROOT,
        env=cli_environment(env) | {"CLAUDECODE": "1"},
        text=True,
        capture_output=True,
        timeout=300,
        input=stdin,
        check=False,
    )


@pytest.fixture
def empty_prod(tiers: Tiers) -> tuple[Tiers, str]:
    """A second, empty and unstamped database on PROD's server, PROD_DATABASE_URL pointing at it."""
    fresh = tiers.names[Tier.PROD] + "_fresh"
    tiers.prod.create_database(fresh)
    grant_reader(tiers.prod, fresh)
    tiers.urls[Tier.PROD] = tiers.prod.tcp_url(fresh, sslmode="require")
    return tiers, fresh


def invoke_line(*args: str) -> str:
    return " ".join([*(f"'{a}'" for a in module_argv("invoke")), *args])


def test_consent_set_by_the_agent_for_one_command_does_not_count(empty_prod, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Attack: `DB_HUMAN_CONSENT=app_prod invoke ...` as a command prefix passed the consent check."""
    tiers, fresh = empty_prod
    proc = agent_shell(
        f"DB_HUMAN_CONSENT={fresh} " + invoke_line("db.stamp", "--env", "prod", "--confirm", fresh),
        env_for(tiers, tmp_path),
    )
    line = one_refusal(proc, "it needs a human's consent")
    assert "DB_HUMAN_CONSENT was set for this one command, not in the agent's environment" in line
    assert tiers.prod.psql(fresh, "SELECT to_regclass('dbguard.tier_stamp') IS NULL") == "t"


def test_env_minus_the_agent_marker_is_still_an_agent(empty_prod, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Attack: `env -u CLAUDECODE invoke ...` made the agent look like a script (which needs no consent)."""
    tiers, fresh = empty_prod
    proc = agent_shell(
        "env -u CLAUDECODE " + invoke_line("db.stamp", "--env", "prod", "--confirm", fresh), env_for(tiers, tmp_path)
    )
    one_refusal(proc, "asked for by an automated agent (claude-code); it needs a human's consent")
    assert tiers.prod.psql(fresh, "SELECT to_regclass('dbguard.tier_stamp') IS NULL") == "t"


def test_a_fake_terminal_with_the_name_piped_in_is_no_human(tiers: Tiers, tmp_path: Path) -> None:
    """Attack: `script -qec ...` with the name piped in passed the interactive-only check (and, with
    `env -u CLAUDECODE`, the agent check)."""
    db = tiers.names[Tier.PROD]
    made = fake_backups(tmp_path / "backups", db, 4)
    command = invoke_line("db.prune-backups", "--keep", "1", "--yes")
    proc = agent_shell(
        f"printf '%s\\n' {db} | env -u CLAUDECODE script -qec \"{command}\" /dev/null", env_for(tiers, tmp_path)
    )
    assert proc.returncode == EXIT_REFUSED and "it needs a human's consent" in proc.stdout + proc.stderr
    assert all(p.exists() for p in made)
    # no agent anywhere, only the pseudo-terminal: the name fed in before the question is discarded
    proc = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        cwd=FIXTURE_ROOT,
        env=cli_environment(env_for(tiers, tmp_path)),
        input=f"{db}\n",
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == EXIT_REFUSED, proc.stdout + proc.stderr
    assert f"the confirmation '' does not match the database name '{db}'" in proc.stdout
    assert all(p.exists() for p in made)


def test_the_wrappers_environments_decide_who_is_asking() -> None:
    from dbguard.guard.caller import detect_caller

    agent = {"CLAUDECODE": "1", "PATH": "/bin"}
    caller = detect_caller({"PATH": "/bin"}, stdin_tty=True, stdout_tty=True, wrappers=[{"PATH": "/bin"}, agent])
    assert caller.agent == "claude-code"
    prefixed = detect_caller(
        {**agent, "DB_HUMAN_CONSENT": "app_prod"}, stdin_tty=False, stdout_tty=False, wrappers=[agent]
    )
    assert prefixed.consent is None and "for this one command" in prefixed.consent_note
    given = {**agent, "DB_HUMAN_CONSENT": "app_prod"}
    assert detect_caller(given, stdin_tty=False, stdout_tty=False, wrappers=[given, given]).consent == "app_prod"


# -- masking: any password spelling is refused or masked whole -------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:Canary@99Pw@127.0.0.1/x_stg",
        "postgresql://postgres:Canary/99Pw@127.0.0.1/x_stg",
        "postgresql://postgres:Canary%zzPw@127.0.0.1/x_stg",
    ],
)
def test_a_raw_special_character_in_a_password_is_one_line_showing_none_of_it(url: str) -> None:
    """Attack: a password with a raw `@` was printed half-masked (`postgres:***@Canary@99Pw@127.0.0.1`)."""
    from dbguard.guard.masking import mask_text
    from dbguard.guard.targets import parse_database_url

    with pytest.raises(Refused) as err:
        parse_database_url(url, tier=Tier.STG, source="STG_DATABASE_URL")
    line = err.value.one_line()
    assert "'@', '/' or '%' in its user name or password that is not percent-encoded" in line
    assert "Canary" not in line and "99Pw" not in line
    assert "Canary" not in mask_text(f"could not connect: {url} failed") and "99Pw" not in mask_text(url)


def test_a_percent_encoded_unicode_password_works_and_is_masked() -> None:
    from dbguard.guard.masking import mask_text
    from dbguard.guard.targets import parse_database_url

    target = parse_database_url(
        "postgresql://u:Ca%40n%3Ary%2F%25%C3%A9-Pw@h/db_stg", tier=Tier.STG, source="STG_DATABASE_URL"
    )
    assert target.password == "Ca@n:ry/%é-Pw"
    assert target.masked() == "postgresql://u:***@h:5432/db_stg"
    assert mask_text("FATAL: for Ca@n:ry/%é-Pw and Ca%40n%3Ary%2F%25%C3%A9-Pw") == "FATAL: for *** and ***"


def test_sslpassword_never_reaches_a_tools_argv(tiers: Tiers) -> None:
    """Attack: `sslpassword=` in a URL was put on pg_dump's command line."""
    from dbguard.cluster.pgtools import tool_conninfo
    from dbguard.guard.targets import Target, parse_database_url

    with pytest.raises(Refused) as err:
        parse_database_url(
            "postgresql://u@h/db_prod?sslmode=verify-full&sslpassword=Key-Pass-77",
            tier=Tier.PROD,
            source="PROD_DATABASE_URL",
        )
    assert "sets sslpassword" in err.value.one_line() and "Key-Pass-77" not in err.value.one_line()
    forged = Target(Tier.PROD, {"host": "h", "dbname": "d", "sslpassword": "Key-Pass-77", "options": "-c x=y"}, "X")
    argv = tool_conninfo(forged)
    assert "Key-Pass-77" not in argv and "options" not in argv


def test_every_new_refusal_is_in_the_troubleshooting_page() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text()
    for fragment in (
        "names several servers",
        "asks for load_balance_hosts",
        "asks for target_session_attrs",
        "reads its connection from a service file",
        "sets sslpassword",
        "that is not percent-encoded",
        "reached another server than the one whose tier stamp was checked",
        "role can write to PROD",
        "a PROD write needs the PROD write password",
        "PROD_WRITE_USER, the role that owns PROD's tables",
        "PROD_WRITE_PASSWORD is set",
        "both use",
        "PROD_WRITE_PASSWORD_COMMAND failed",
        "PROD refused the write credential",
        "although it holds rows",
        "downgrade PROD",
        "PROD backup(s) of",
        "copy the unsanitized data of PROD",
        "was set for this one command",
        "stop and ask a human",
        "could still write after the grants",
    ):
        assert fragment in page, fragment
