"""db.reset and db.migrate on real PostgreSQL: atomic, locked, backed up, guarded; the alembic CLI too."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from dbguard.cli.runner import EXIT_OK, EXIT_REFUSED
from dbguard.guard.connect import connect
from dbguard.guard.tiers import Tier
from dbguard.migrations import migrate
from dbguard.seeding import reset

from tests.support.cli import invoke_cli
from tests.support.kill import kill_at, wait_for_no_sessions
from tests.support.setup import Tiers, cleared, robot, run, state_values


def env_for(tiers: Tiers, tmp_path: Path, **extra: str) -> dict[str, str]:
    return state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()} | extra


def schema_fingerprint(tiers: Tiers, tier: Tier) -> str:
    """Everything a half-made reset could leave behind: schemas, relations, row counts, revision."""
    return tiers.sql(
        tier,
        """
        SELECT string_agg(x, ' | ' ORDER BY x) FROM (
          SELECT 'schema ' || nspname AS x FROM pg_namespace
                 WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
          UNION ALL SELECT relkind::text || ' ' || relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname IN ('public', 'dbguard')
          UNION ALL SELECT 'users ' || (SELECT count(*) FROM users)::text
          UNION ALL SELECT 'comments ' || (SELECT count(*) FROM comments)::text
          UNION ALL SELECT 'rev ' || version_num FROM alembic_version
          UNION ALL SELECT 'stamp ' || tier || ' ' || database_name FROM dbguard.tier_stamp) s""",
    )


def test_reset_stg_backs_up_rebuilds_through_alembic_keeps_the_stamp_and_seeds(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    proc = invoke_cli("db.reset", "--env", "stg", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # STG's undo point is the database the reset replaced, renamed (issue 15), where it was a dump of it
    previous = tiers.names[Tier.STG] + "__previous"
    assert f"kept as {previous}" in proc.stdout and not list((tmp_path / "backups").glob("stg-*.dump"))
    assert tiers.local.psql(previous, "SELECT tier FROM dbguard.tier_stamp") == "stg"
    assert "schema rebuilt at 0002 through Alembic" in proc.stdout and "seeded 4,440 rows" in proc.stdout
    assert tiers.sql(Tier.STG, "SELECT version_num FROM alembic_version") == "0002"
    assert tiers.sql(Tier.STG, "SELECT tier FROM dbguard.tier_stamp") == "stg"
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM users") == "200"
    proc = invoke_cli("db.reset", "--env", "stg", "--no-seed", env=env)
    assert proc.returncode == 0 and tiers.sql(Tier.STG, "SELECT count(*) FROM users") == "0"
    assert tiers.local.psql(previous, "SELECT count(*) FROM users") == "200"  # the seeded one, set aside
    undo = f"SELECT count(*) FROM pg_database WHERE datname LIKE '{tiers.names[Tier.STG]}\\_\\_undo\\_%'"
    assert tiers.local.psql("postgres", undo) == "1"  # and the one before it (STG_UNDO_KEEP=2)


def test_stg_undo_points_are_kept_listed_dropped_beyond_the_limit_and_put_back(tiers: Tiers, tmp_path: Path) -> None:
    """STG's undo point is the database a reset (restore, refresh) replaced: renamed, listed by db.status with
    its size, the newest STG_UNDO_KEEP kept, and put back by db.restore --env stg --from previous."""
    env = env_for(tiers, tmp_path)
    stg = tiers.names[Tier.STG]
    users = {}
    for seed in ("1", "2", "3"):
        proc = invoke_cli("db.reset", "--env", "stg", "--scenario", "minimal", "--seed", seed, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        users[seed] = tiers.sql(Tier.STG, "SELECT string_agg(email, ',' ORDER BY id) FROM users")
    assert "dropped the undo point" in proc.stdout
    siblings = tiers.local.psql(
        "postgres",
        f"SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname LIKE '{stg}\\_\\_%'",
    ).split(",")
    assert len(siblings) == 2 and siblings[0] == f"{stg}__previous" and siblings[1].startswith(f"{stg}__undo_")
    assert tiers.local.psql(f"{stg}__previous", "SELECT string_agg(email, ',' ORDER BY id) FROM users") == users["2"]
    assert tiers.local.psql(siblings[1], "SELECT string_agg(email, ',' ORDER BY id) FROM users") == users["1"]

    status = invoke_cli("db.status", env=env)
    assert status.returncode == 0, status.stderr
    listed = [line for line in status.stdout.splitlines() if f"{stg}__" in line]
    assert len(listed) == 2 and all("reset" in line and re.search(r"\d B|[kMG]B", line) for line in listed), (
        status.stdout
    )

    proc = invoke_cli("db.restore", "--env", "stg", "--from", "previous", env=env)
    assert proc.returncode == 0 and "put the previous STG back" in proc.stdout, proc.stdout + proc.stderr
    assert tiers.sql(Tier.STG, "SELECT string_agg(email, ',' ORDER BY id) FROM users") == users["2"]
    assert tiers.sql(Tier.STG, "SELECT tier || ' ' || database_name FROM dbguard.tier_stamp") == f"stg {stg}"
    assert invoke_cli("db.restore", "--env", "stg", "--from", "previous", env=env).returncode == 0  # and back
    assert tiers.sql(Tier.STG, "SELECT string_agg(email, ',' ORDER BY id) FROM users") == users["3"]
    proc = invoke_cli("db.restore", "--env", "int", "--from", "previous", env=env)
    assert proc.returncode == 2  # INT keeps no undo point: "previous" is no backup file there


def test_reset_dry_run_touches_nothing(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    assert invoke_cli("db.reset", "--env", "stg", "--scenario", "minimal", env=env).returncode == 0
    before = schema_fingerprint(tiers, Tier.STG)
    proc = invoke_cli("db.reset", "--env", "stg", "--no-seed", "--dry-run", env=env)
    assert proc.returncode == 0
    # STG is rebuilt beside itself, the old one kept as its undo point (issue 15): no drop, no dump
    assert "plan: back up" in proc.stdout and "plan: in a new database: migrate from empty to 0002" in proc.stdout
    assert schema_fingerprint(tiers, Tier.STG) == before
    siblings = f"SELECT count(*) FROM pg_database WHERE datname LIKE '{tiers.names[Tier.STG]}\\_\\_%'"
    assert tiers.local.psql("postgres", siblings) == "1"  # the first reset's undo point, nothing new
    last = json.loads((tmp_path / "logs" / "audit.jsonl").read_text().splitlines()[-1])
    assert last["outcome"] == "dry-run" and last["task"] == "reset"


def test_reset_killed_at_any_step_leaves_the_old_contents_and_the_next_run_succeeds(
    tiers: Tiers, tmp_path: Path
) -> None:
    env = env_for(tiers, tmp_path)
    assert invoke_cli("db.reset", "--env", "stg", "--scenario", "minimal", "--seed", "5", env=env).returncode == 0
    before = schema_fingerprint(tiers, Tier.STG)
    for point in ("reset:schema-dropped", "seed:after-tasks", "reset:before-swap"):  # no dump step any more
        kill_at(point, ["db.reset", "--env", "stg", "--scenario", "demo"], env, tmp_path)
        wait_for_no_sessions(tiers.local.psql, tiers.names[Tier.STG])
        assert schema_fingerprint(tiers, Tier.STG) == before, point
    proc = invoke_cli("db.reset", "--env", "stg", "--scenario", "demo", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list((tmp_path / "backups").glob(".*.partial"))
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM users") == "200"
    assert (
        tiers.sql(
            Tier.STG,
            "SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
        )
        == "2"
    )  # public and dbguard, nothing else


def test_a_second_reset_is_refused_at_once(tiers: Tiers, tmp_path: Path) -> None:
    from dbguard.guard.locks import exclusive

    target = cleared(tiers.settings, "reset", Tier.STG).target
    with exclusive(target, "reset"):
        result = run(tiers.settings, "reset", "stg", robot(), lambda ctx: reset.reset_task(ctx, seed=False))
    assert result.code == EXIT_REFUSED
    assert "another reset, seed, migrate or restore is already running on" in result.stderr
    assert "-> wait for it to finish, then run this again" in result.stderr
    # and two real resets racing: exactly one of them wins, the other is refused, none waits
    env = env_for(tiers, tmp_path)
    codes: list[int] = []

    def go() -> None:
        codes.append(invoke_cli("db.reset", "--env", "stg", "--scenario", "demo", "--scale", "20", env=env).returncode)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) in ([0, 0], [0, 2])  # both may succeed one after the other if they never overlapped


def test_reset_prod_is_refused_whatever_the_flags(tiers: Tiers, tmp_path: Path) -> None:
    db = tiers.names[Tier.PROD]
    for extra in ([], ["--no-seed"], ["--dry-run"]):
        proc = invoke_cli("db.reset", "--env", "prod", *extra, env=env_for(tiers, tmp_path, DB_HUMAN_CONSENT=db))
        assert proc.returncode == 2 and "reset on PROD is not allowed: PROD is never reset" in proc.stderr


def test_migrate_shows_pending_then_upgrades_and_downgrades_with_backups_on_stg(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    proc = invoke_cli("db.migrate", "--env", "stg", "--to", "0001", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "upgrade base -> 0001" in proc.stdout and "upgraded" in proc.stdout
    assert tiers.sql(Tier.STG, "SELECT version_num FROM alembic_version") == "0001"
    proc = invoke_cli("db.migrate", "--env", "stg", env=env)
    assert "upgrade 0001 -> 0002" in proc.stdout and "users.address" in proc.stdout
    proc = invoke_cli("db.migrate", "--env", "stg", "--to", "0001", env=env)
    assert proc.returncode == 0 and "downgrade 0002 -> 0001" in proc.stdout
    assert (
        tiers.sql(
            Tier.STG,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'address'",
        )
        == "0"
    )
    assert len(list((tmp_path / "backups").glob("stg-*.dump"))) == 3
    proc = invoke_cli("db.migrate", "--env", "stg", "--to", "0001", env=env)
    assert proc.returncode == 0 and "already at 0001; nothing to migrate" in proc.stdout
    proc = invoke_cli("db.migrate", "--env", "stg", "--to", "abc123", env=env)
    assert proc.returncode == 2 and "unknown revision 'abc123'" in proc.stderr and "alembic history" in proc.stderr


def test_migrate_runs_with_lock_timeout_and_fails_cleanly_when_blocked(tiers: Tiers, tmp_path: Path) -> None:
    """A migration waiting on a lock gives up after MIGRATION_LOCK_TIMEOUT instead of queueing traffic."""
    import psycopg

    env = env_for(tiers, tmp_path, MIGRATION_LOCK_TIMEOUT="300ms")
    assert invoke_cli("db.migrate", "--env", "int", "--to", "0001", env=env).returncode == 0
    with psycopg.connect(tiers.urls[Tier.INT]) as holder:
        holder.execute("LOCK TABLE users IN ACCESS SHARE MODE")  # an open transaction reading users
        proc = invoke_cli("db.migrate", "--env", "int", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "lock timeout" in proc.stderr
    assert tiers.sql(Tier.INT, "SELECT version_num FROM alembic_version") == "0001"


def test_prod_migrate_needs_a_passing_ladder_for_these_files(tiers: Tiers, tmp_path: Path) -> None:
    db = tiers.names[Tier.PROD]
    result = run(tiers.settings, "migrate", "prod", robot(), migrate.migrate_task, confirm=db)
    assert result.code == EXIT_REFUSED
    assert (
        "PROD migrations need a passing ladder for exactly these migration files: the ladder has never passed"
        in result.stderr
        and "nox -s migrations" in result.stderr
    )
    assert tiers.sql(Tier.PROD, "SELECT to_regclass('public.alembic_version') IS NULL") == "t"

    from dbguard.guard.connect import connect
    from dbguard.ladder.gate import MigrationFiles, read_prod_facts, record_pass

    with connect(tiers.target(Tier.PROD), read_only=True) as conn:  # a pass for these files and this PROD
        record_pass(tiers.settings, MigrationFiles.on_disk(tiers.settings), read_prod_facts(conn))
    result = run(tiers.settings, "migrate", "prod", robot(), migrate.migrate_task, confirm=db)
    assert result.code == EXIT_OK, result.text
    assert tiers.sql(Tier.PROD, "SELECT version_num FROM alembic_version") == "0002"
    assert list(Path(tiers.settings.get("BACKUP_DIR")).glob("prod-*.dump"))


def test_plain_alembic_cli_goes_through_the_guard(tiers: Tiers, tmp_path: Path) -> None:
    from tests.support.cli import run_module

    env = env_for(tiers, tmp_path)

    def alembic(*args: str):  # type: ignore[no-untyped-def]
        return run_module("alembic", *args, env=env)

    proc = alembic("-x", "env=stg", "upgrade", "head")
    assert proc.returncode == 0, proc.stderr
    assert tiers.sql(Tier.STG, "SELECT version_num FROM alembic_version") == "0002"
    assert list((tmp_path / "backups").glob("stg-*.dump"))  # the same backup-first step as db.migrate
    proc = alembic("-x", "env=prod", "upgrade", "head")
    assert proc.returncode == 2 and "needs the database name typed" in proc.stdout + proc.stderr
    proc = alembic("-x", "env=prod", "-x", f"confirm={tiers.names[Tier.PROD]}", "upgrade", "head")
    assert proc.returncode == 2 and "the ladder has never passed" in proc.stdout + proc.stderr
    audit = [json.loads(line) for line in (tmp_path / "logs" / "audit.jsonl").read_text().splitlines()]
    assert [(a["task"], a["tier"], a["outcome"]) for a in audit] == [
        ("migrate", "stg", "started"),
        ("migrate", "stg", "ok"),
        ("migrate", "prod", "refused"),  # no name typed: refused by the guard, one line
        ("migrate", "prod", "started"),  # the guard let it through; the ladder's gate (in the body) refused it
        ("migrate", "prod", "refused"),
    ]
    with connect(tiers.target(Tier.PROD), read_only=True) as conn:
        assert conn.execute("SELECT to_regclass('public.alembic_version')").fetchone() == (None,)
