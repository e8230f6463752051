"""db.refresh-staging on two real clusters: sanitized inside PROD, strict, consistent, atomic, undoable."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import psycopg
import pytest
from dbguard.guard.tiers import Tier

from tests.support.cli import invoke_cli
from tests.support.clusters import ThrowawayCluster
from tests.support.kill import kill_at, wait_for_no_sessions
from tests.support.project import PROJECT
from tests.support.setup import Tiers, make_tiers, state_values

EMAIL = re.compile(r"^[a-z'-]+\.[a-z'-]+\.[0-9a-f]{10}@example\.(com|net|org)$")


def env_for(tiers: Tiers, tmp_path: Path, **extra: str) -> dict[str, str]:
    return state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()} | extra


def fill(tiers: Tiers, tier: Tier, seed_value: int, scenario: str = "demo") -> None:
    from dbguard.migrations.schema import drop_app_schemas, raw, sa_connection, upgrade
    from dbguard.seeding.runner import make_plan, seed_database

    with sa_connection(tiers.target(tier)) as conn, conn.begin():
        drop_app_schemas(conn)
        upgrade(tiers.settings, conn, "head")
        seed_database(raw(conn), make_plan(PROJECT, scenario, seed=seed_value))


def fingerprint(tiers: Tiers, tier: Tier) -> str:
    return tiers.sql(
        tier, "SELECT md5(string_agg(u::text, ',' ORDER BY id)) || ' ' || (SELECT count(*) FROM tasks) FROM users u"
    )


def values(conn: psycopg.Connection, query: str) -> set[str]:
    return {str(r[0]) for r in conn.execute(query) if r[0] is not None}


@pytest.fixture
def prod_and_stg(tiers: Tiers) -> Tiers:
    fill(tiers, Tier.PROD, seed_value=41)
    fill(tiers, Tier.STG, seed_value=42, scenario="minimal")
    return tiers


def test_refresh_copies_everything_sanitized_and_keeps_the_previous_stg(prod_and_stg: Tiers, tmp_path: Path) -> None:
    tiers = prod_and_stg
    env = env_for(tiers, tmp_path)
    old_stg = fingerprint(tiers, Tier.STG)
    proc = invoke_cli("db.refresh-staging", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified: rows per table equal PROD's snapshot" in proc.stdout
    assert re.search(r"refreshed t\d+_stg from PROD: 5 tables, [\d,]+ rows", proc.stdout)
    for table in ("users", "projects", "tasks", "comments"):
        assert tiers.sql(Tier.STG, f"SELECT count(*) FROM {table}") == tiers.sql(
            Tier.PROD, f"SELECT count(*) FROM {table}"
        )
    assert (
        tiers.sql(Tier.STG, "SELECT tier || ' ' || database_name FROM dbguard.tier_stamp")
        == f"stg {tiers.names[Tier.STG]}"
    )
    assert tiers.sql(Tier.STG, "SELECT version_num FROM alembic_version") == "0002"
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbguard_verify'") == "0"
    for seq in ("users_id_seq", "tasks_id_seq"):
        assert tiers.sql(Tier.STG, f"SELECT last_value FROM {seq}") == tiers.sql(
            Tier.PROD, f"SELECT last_value FROM {seq}"
        )
    # indexes and foreign keys were built after the rows, and hold
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated") == "5"

    # independently of the tool's own scan: no PROD email, name or phone anywhere in STG's text or JSON
    with psycopg.connect(tiers.urls[Tier.PROD]) as prod, psycopg.connect(tiers.urls[Tier.STG]) as stg:
        pii = (
            values(prod, "SELECT email FROM users")
            | values(prod, "SELECT full_name FROM users")
            | values(prod, "SELECT phone FROM users")
        )
        texts: set[str] = set()
        for table, column in stg.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE "
            "table_schema = 'public' AND data_type IN ('text', 'jsonb')"
        ).fetchall():
            texts |= values(stg, f'SELECT "{column}"::text FROM "{table}"')
        assert texts and pii and not (pii & texts)
        assert not any(p in t for p in pii for t in values(stg, "SELECT preferences::text FROM users"))
        fakes = values(stg, "SELECT email FROM users")
        assert all(EMAIL.match(e) for e in fakes), sorted(fakes)[:5]
        assert len(fakes) == len(pii & values(prod, "SELECT email FROM users"))  # still unique, one fake per email
        names = values(stg, "SELECT full_name FROM users")
        assert all(re.match(r"^[A-Z][a-zA-Z'-]+ [A-Z][a-zA-Z'-]+$", n) for n in names)
        assert values(stg, "SELECT preferences::text FROM users") == {"{}"}
        assert all(ip.startswith("10.") for ip in values(stg, "SELECT host(last_login_ip) FROM users"))
        ids_then = values(stg, "SELECT id || ' ' || email FROM users")

    previous = tiers.names[Tier.STG] + "__previous"
    assert (
        tiers.local.psql(
            previous,
            "SELECT md5(string_agg(u::text, ',' ORDER BY id)) || ' ' || (SELECT count(*) FROM tasks) FROM users u",
        )
        == old_stg
    )
    # deterministic: the same source value gives the same fake on the next refresh
    assert invoke_cli("db.refresh-staging", env=env).returncode == 0
    with psycopg.connect(tiers.urls[Tier.STG]) as stg:
        assert values(stg, "SELECT id || ' ' || email FROM users") == ids_then

    undo = invoke_cli("db.refresh-staging", "--undo", env=env)
    assert undo.returncode == 0 and "put the previous STG back" in undo.stdout
    with psycopg.connect(tiers.urls[Tier.STG]) as stg:
        assert values(stg, "SELECT id || ' ' || email FROM users") == ids_then  # the first refresh's copy
    assert invoke_cli("db.refresh-staging", "--undo", env=env).returncode == 0  # and back again


def test_dry_run_and_sanitize_check_copy_nothing(prod_and_stg: Tiers, tmp_path: Path) -> None:
    tiers = prod_and_stg
    env = env_for(tiers, tmp_path)
    before = fingerprint(tiers, Tier.STG)
    proc = invoke_cli("db.refresh-staging", "--dry-run", env=env)
    assert proc.returncode == 0
    assert "public.users" in proc.stdout and "email" in proc.stdout and "free_text" in proc.stdout
    check = invoke_cli("db.sanitize-check", env=env)
    assert check.returncode == 0 and "the policy covers PROD's live schema: 5 tables" in check.stdout
    assert fingerprint(tiers, Tier.STG) == before
    stg = tiers.names[Tier.STG]
    assert tiers.local.psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname LIKE '{stg}\\_\\_%'") == "0"


def test_an_unclassified_prod_column_or_table_stops_the_refresh(prod_and_stg: Tiers, tmp_path: Path) -> None:
    tiers = prod_and_stg
    env = env_for(tiers, tmp_path)
    before = fingerprint(tiers, Tier.STG)
    tiers.sql(Tier.PROD, "ALTER TABLE users ADD COLUMN nickname text; ALTER TABLE tasks ADD COLUMN weight int")
    tiers.sql(Tier.PROD, "CREATE TABLE support_tickets (id bigint PRIMARY KEY, body text)")
    proc = invoke_cli("db.refresh-staging", env=env)
    assert proc.returncode == 2
    assert "tables nobody classified: public.support_tickets" in proc.stderr
    assert "columns nobody classified: public.users.nickname (text)" in proc.stderr
    assert "tasks.weight" not in proc.stderr  # a number may default to keep
    assert fingerprint(tiers, Tier.STG) == before
    assert invoke_cli("db.sanitize-check", env=env).returncode == 2

    policy = tmp_path / "policy.toml"
    policy.write_text('[tables."public.support_tickets"]\nbody = "free_text"\n[tables.users]\nnickname = "null"\n')
    proc = invoke_cli("db.refresh-staging", env=env | {"SANITIZE_POLICY": str(policy)})
    assert proc.returncode == 0, proc.stderr
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM users WHERE nickname IS NOT NULL") == "0"


def test_policy_file_rules_fixed_sql_and_skip(prod_and_stg: Tiers, tmp_path: Path) -> None:
    tiers = prod_and_stg
    tiers.sql(
        Tier.PROD,
        "CREATE TABLE audit_events (id bigint PRIMARY KEY, actor text, kind text, note text, "
        "secret_token text); INSERT INTO audit_events SELECT g, 'User ' || g, 'login', 'hello ' || g, "
        "md5(g::text) FROM generate_series(1, 50) g; CREATE TABLE sessions (id int, token text); "
        "INSERT INTO sessions VALUES (1, 'abc')",
    )
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[tables.audit_events]\nactor = "name"\nkind = "keep"\nnote = "sql:upper(kind)"\n'
        'secret_token = "fixed:redacted"\n[skip]\ntables = ["sessions"]\n'
    )
    proc = invoke_cli("db.refresh-staging", env=env_for(tiers, tmp_path, SANITIZE_POLICY=str(policy)))
    assert proc.returncode == 0, proc.stderr
    assert (
        tiers.sql(Tier.STG, "SELECT DISTINCT kind || ' ' || note || ' ' || secret_token FROM audit_events")
        == "login LOGIN redacted"
    )
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM audit_events WHERE actor LIKE 'User %'") == "0"
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM sessions") == "0"


@pytest.mark.parametrize("point", ["refresh:schema-created", "refresh:rows-copied", "refresh:before-swap"])
def test_a_kill_at_each_step_leaves_stg_intact_and_the_next_run_clean(
    prod_and_stg: Tiers, tmp_path: Path, point: str
) -> None:
    tiers = prod_and_stg
    env = env_for(tiers, tmp_path)
    before = fingerprint(tiers, Tier.STG)
    kill_at(point, ["db.refresh-staging"], env, tmp_path)
    wait_for_no_sessions(tiers.local.psql, tiers.names[Tier.STG])
    assert fingerprint(tiers, Tier.STG) == before
    proc = invoke_cli("db.refresh-staging", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "removed scratch database(s) left by an interrupted run" in proc.stdout
    stg = tiers.names[Tier.STG]
    assert (
        tiers.local.psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname LIKE '{stg}\\_\\_refresh%'")
        == "0"
    )


def test_refresh_while_prod_takes_writes_is_consistent(prod_and_stg: Tiers, tmp_path: Path) -> None:
    tiers = prod_and_stg
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        with psycopg.connect(tiers.owner_url(Tier.PROD), autocommit=True) as conn:
            while not stop.is_set():
                with conn.transaction():
                    uid = conn.execute(
                        "INSERT INTO users (email, full_name) VALUES (gen_random_uuid() || '@x.org', "
                        "'Live Writer') RETURNING id"
                    ).fetchone()[0]  # type: ignore[index]
                    pid = conn.execute(
                        "INSERT INTO projects (owner_id, name) VALUES (%s, 'p') RETURNING id", (uid,)
                    ).fetchone()[0]  # type: ignore[index]
                    conn.execute(
                        "INSERT INTO tasks (project_id, title) SELECT %s, 't' FROM generate_series(1, 5)", (pid,)
                    )
                    conn.execute("DELETE FROM comments WHERE id IN (SELECT id FROM comments ORDER BY random() LIMIT 3)")
                written[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        proc = invoke_cli("db.refresh-staging", env=env_for(tiers, tmp_path))
    finally:
        stop.set()
        thread.join()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert written[0] > 5
    # one moment: every live writer's project has exactly its 5 tasks, and every key holds
    assert (
        tiers.sql(
            Tier.STG,
            "SELECT count(*) FROM (SELECT p.id FROM projects p JOIN tasks t ON t.project_id = p.id "
            "WHERE p.name = 'p' GROUP BY p.id HAVING count(*) <> 5) x",
        )
        == "0"
    )
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated") == "5"


def test_refusals(prod_and_stg: Tiers, tmp_path: Path) -> None:
    tiers = prod_and_stg
    remote_stg = tiers.local.tcp_url(tiers.names[Tier.STG], host="127.0.0.2")
    proc = invoke_cli("db.refresh-staging", env=env_for(tiers, tmp_path, STG_DATABASE_URL=remote_stg))
    assert proc.returncode == 2
    assert "is not a local database" in proc.stderr and "STG_TARGET_IS_SAFE=1" in proc.stderr
    proc = invoke_cli("db.refresh-staging", env=env_for(tiers, tmp_path, STG_DATABASE_URL=tiers.urls[Tier.PROD]))
    assert proc.returncode == 2 and "tiers must never share a database" in proc.stderr
    tiers.sql(Tier.STG, "UPDATE dbguard.tier_stamp SET tier = 'int'")
    proc = invoke_cli("db.refresh-staging", env=env_for(tiers, tmp_path))
    assert proc.returncode == 2 and "is stamped INT, not STG" in proc.stderr
    proc = invoke_cli("db.refresh-staging", "--env", "prod", env=env_for(tiers, tmp_path))
    assert proc.returncode == 2 and "never its target" in proc.stderr


def test_sessions_on_stg_at_swap_time_are_terminated_with_a_message(prod_and_stg: Tiers, tmp_path: Path) -> None:
    tiers = prod_and_stg
    idle = psycopg.connect(tiers.urls[Tier.STG], autocommit=True)
    try:
        proc = invoke_cli("db.refresh-staging", env=env_for(tiers, tmp_path, SWAP_WAIT_SECONDS="0.5"))
        assert proc.returncode == 0, proc.stderr
        assert "waiting up to 0.5s for the sessions on" in proc.stdout
        assert "terminated 1 session(s) still connected to" in proc.stdout
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    finally:
        idle.close()


# the attack of issue 10, item 3: statements smuggled into PROD's copy script through a `sql:` rule, shaped to
# close the COPY the rule used to be pasted into
SMUGGLED = (
    "NULL)::text FROM ONLY public.audit_events t) TO STDOUT; COMMIT; BEGIN READ WRITE; "
    "CREATE TABLE public.pwned (i int); UPDATE dbguard.tier_stamp SET tier = 'stg'; COMMIT; SELECT (NULL"
)


def test_a_sql_rule_smuggling_statements_is_refused_in_one_line_and_prod_is_untouched(
    prod_and_stg: Tiers, tmp_path: Path
) -> None:
    tiers = prod_and_stg
    tiers.sql(
        Tier.PROD,
        "CREATE TABLE audit_events (id bigint PRIMARY KEY, note text); "
        "INSERT INTO audit_events SELECT g, 'note ' || g FROM generate_series(1, 5) g",
    )
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[tables.audit_events]\nnote = "sql:{SMUGGLED}"\n')
    before = fingerprint(tiers, Tier.STG)
    proc = invoke_cli("db.refresh-staging", env=env_for(tiers, tmp_path, SANITIZE_POLICY=str(policy)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "the sql: rule for audit_events.note in policy.toml is not one SQL expression: " in errors[0]
    assert tiers.sql(Tier.PROD, "SELECT to_regclass('public.pwned') IS NULL") == "t"
    assert tiers.sql(Tier.PROD, "SELECT tier FROM dbguard.tier_stamp") == "prod"
    assert fingerprint(tiers, Tier.STG) == before
    stg = tiers.names[Tier.STG]
    assert tiers.local.psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname LIKE '{stg}\\_\\_%'") == "0"


def test_the_sanitizing_key_never_reaches_prods_logs(local_server: ThrowawayCluster, tmp_path: Path) -> None:
    """Issue 10, item 6: a PROD that logs every statement (and every duration, and errors' statements) holds
    neither the salt nor anything derived from it after a refresh; the key travels as a session setting."""
    from dbguard.refresh.expressions import text_seed

    prod = ThrowawayCluster("logging-prod", password="logged-Prod-pw1").start()
    try:
        for setting in (
            "log_statement = 'all'",
            "log_min_duration_statement = 0",
            "log_min_error_statement = 'info'",
            "log_connections = on",
            "log_parameter_max_length = -1",
        ):
            prod.psql("postgres", f"ALTER SYSTEM SET {setting}")
        prod.psql("postgres", "SELECT pg_reload_conf()")
        tiers = make_tiers(tmp_path, local_server, prod, prod_url=prod.tcp_url)
        fill(tiers, Tier.PROD, seed_value=43)
        fill(tiers, Tier.STG, seed_value=44, scenario="minimal")
        salt = "canary-salt-5f0d9c2e7a41"
        proc = invoke_cli("db.refresh-staging", env=env_for(tiers, tmp_path, SANITIZE_SALT=salt))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        log = (prod.base / "log").read_text(errors="replace")
        assert "COPY (" in log and "statement:" in log  # the log really holds every statement
        for secret in (salt, salt.encode().hex(), str(text_seed(salt))):
            assert secret not in log
        assert salt not in proc.stdout + proc.stderr
    finally:
        prod.destroy()
