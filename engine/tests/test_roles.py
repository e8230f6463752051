"""db.roles and the doctor's role checks on real PostgreSQL: the taskboard fixture's ownership matrix
(users, comments: app writes, worker reads; tasks: both write; projects: app only, row-owned by owner_id)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from dbguard.backup.restore import restore_task
from dbguard.cli import commands
from dbguard.guard.config import Finding
from dbguard.guard.connect import connect
from dbguard.guard.tiers import Tier
from dbguard.migrations.schema import sa_connection, upgrade
from dbguard.roles.apply import roles_task
from dbguard.roles.drift import check_roles
from dbguard.roles.urls import component_target, component_url
from dbguard.settings import Settings

from tests.support.setup import Tiers, human, robot, run

MIGRATOR, APP, WORKER = "app_stg_migrator", "app_stg_app", "app_stg_worker"
APP_LOGIN, WORKER_LOGIN = "app_stg_app_login", "app_stg_worker_login"


def migrate(tiers: Tiers, tier: Tier) -> None:
    with sa_connection(tiers.target(tier)) as conn, conn.begin():
        upgrade(tiers.settings, conn, "head")


def roles(settings: Settings, env: str = "stg", **kwargs: object):  # type: ignore[no-untyped-def]
    return run(settings, "roles", env, robot(), roles_task, **kwargs)


ACL = (
    "CREATE OR REPLACE FUNCTION pg_temp.sorted_acl(aclitem[]) RETURNS text LANGUAGE sql AS "
    "$$ SELECT coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest($1) a), '-') $$; "
)


def grants(tiers: Tiers, tier: Tier) -> str:
    """Every owner, ACL (its entries in order), row-level security flag and policy of the app's tables, and the
    database's ACL."""
    return tiers.sql(
        tier,
        ACL
        + """SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
             SELECT c.relname || ' owner=' || pg_get_userbyid(c.relowner) || ' acl=' || pg_temp.sorted_acl(c.relacl)
                    || ' rls=' || c.relrowsecurity::text || c.relforcerowsecurity::text AS x
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')
             UNION ALL SELECT 'policy ' || tablename || ' ' || policyname || ' ' || roles::text || ' ' || qual
               FROM pg_policies
             UNION ALL SELECT 'schema public owner=' || pg_get_userbyid(nspowner)
                    || ' acl=' || pg_temp.sorted_acl(nspacl) FROM pg_namespace WHERE nspname = 'public'
             UNION ALL SELECT 'database acl=' || pg_temp.sorted_acl(datacl) FROM pg_database
              WHERE datname = current_database()
             UNION ALL SELECT 'default ' || defaclobjtype::text || ' ' || pg_temp.sorted_acl(defaclacl)
               FROM pg_default_acl) s""",
    )


def roles_on_server(tiers: Tiers) -> str:
    return tiers.local.psql(
        "postgres",
        "SELECT string_agg(rolname || ' login=' || rolcanlogin || ' in=' || "
        "ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE m.member = r.oid)::text, ', ' ORDER BY rolname) FROM pg_roles r "
        "WHERE rolname LIKE 'app\\_%'",
    )


def finding(found: list[Finding], tier: Tier, check: str) -> Finding:
    return next(f for f in found if tier in f.tiers and check in f.check)


@pytest.fixture
def stg(tiers: Tiers) -> Tiers:
    """STG at head, with the taskboard's roles applied."""
    migrate(tiers, Tier.STG)
    result = roles(tiers.settings)
    assert result.code == 0, result.text
    return tiers


def privilege(tiers: Tier | Tiers, role: str, table: str, what: str) -> bool:
    assert isinstance(tiers, Tiers)
    return tiers.sql(Tier.STG, f"SELECT has_table_privilege('{role}', '{table}', '{what}')") == "t"


def test_roles_on_stg_give_each_component_exactly_the_matrix_then_doctor_shows_no_drift(stg: Tiers) -> None:
    assert "owner=app_stg_migrator" in grants(stg, Tier.STG)
    for table in ("users", "projects", "tasks", "comments"):
        assert (
            stg.sql(Tier.STG, f"SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = '{table}'") == MIGRATOR
        )
        for what in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            assert privilege(stg, APP, table, what)
            assert privilege(stg, APP_LOGIN, table, what)  # through its group role
    assert privilege(stg, WORKER, "users", "SELECT") and not privilege(stg, WORKER, "users", "INSERT")
    assert not privilege(stg, WORKER, "users", "DELETE") and not privilege(stg, WORKER, "comments", "UPDATE")
    assert privilege(stg, WORKER, "tasks", "UPDATE") and privilege(stg, WORKER_LOGIN, "tasks", "INSERT")
    assert not privilege(stg, WORKER, "projects", "SELECT")
    for role in (APP, WORKER, APP_LOGIN, WORKER_LOGIN):
        assert not privilege(stg, role, "users", "TRUNCATE")
        assert stg.sql(Tier.STG, f"SELECT has_schema_privilege('{role}', 'public', 'CREATE')") == "f"
    rls = "SELECT relrowsecurity::text || relforcerowsecurity::text FROM pg_class WHERE relname = 'projects'"
    assert stg.sql(Tier.STG, rls) == "truefalse"  # not forced: the owner keeps every row (roles/plan.py)
    stg.sql(Tier.STG, "ALTER TABLE projects FORCE ROW LEVEL SECURITY")
    assert "row-level security: no force" in roles(stg.settings).text
    assert stg.sql(Tier.STG, rls) == "truefalse"
    own_rows = "SELECT roles::text FROM pg_policies WHERE policyname = 'dbguard_own_rows'"
    assert stg.sql(Tier.STG, own_rows) == "{app_stg_app}"
    assert "app_stg_app_login login=true in={app_stg_app}" in roles_on_server(stg)
    assert "app_stg_worker login=false in={}" in roles_on_server(stg)
    saved = min((stg.settings.backups_dir / "roles").iterdir())  # STG's state saved before the first run
    text = saved.read_text()
    assert "CREATE ROLE postgres" in text and "CREATE TABLE public.users" in text  # roles, then the schema
    assert "TABLE public.users TO app_stg_worker" not in text  # the state before db.roles: no table grant yet
    later = max((stg.settings.backups_dir / "roles").iterdir()).read_text()  # saved before the second run
    assert "GRANT SELECT ON TABLE public.users TO app_stg_worker;" in later
    for path in (saved, saved.parent, stg.settings.backups_dir):
        assert path.stat().st_mode & 0o077 == 0, path

    found = check_roles(stg.settings)
    assert finding(found, Tier.STG, "match the ownership matrix").ok, found
    assert finding(found, Tier.STG, "own nothing").ok, found
    assert not [f for f in found if Tier.INT in f.tiers and "match" in f.check]  # INT has no roles applied


def test_roles_again_changes_nothing(stg: Tiers) -> None:
    before = grants(stg, Tier.STG), roles_on_server(stg)
    again = roles(stg.settings)
    assert again.code == 0 and "nothing to change" in again.text, again.text
    assert again.contexts[0].facts["changes"] == 0
    assert (grants(stg, Tier.STG), roles_on_server(stg)) == before


def test_dry_run_shows_the_difference_and_changes_nothing(tiers: Tiers) -> None:
    migrate(tiers, Tier.STG)
    # roles of earlier tests
    tiers.local.psql("postgres", "DROP ROLE IF EXISTS app_stg_app_login, app_stg_worker_login")
    before = grants(tiers, Tier.STG), roles_on_server(tiers)
    result = roles(tiers.settings, dry_run=True)
    assert result.code == 0, result.text
    assert "+ DELETE, INSERT, SELECT, UPDATE" in result.text and "create (LOGIN)" in result.text
    assert "nothing was changed" in result.text
    assert (grants(tiers, Tier.STG), roles_on_server(tiers)) == before
    assert not (tiers.settings.backups_dir / "roles").exists()


def test_doctor_reports_drift_and_db_roles_repairs_it(stg: Tiers) -> None:
    stg.sql(Tier.STG, f"GRANT DELETE ON users TO {WORKER}; REVOKE UPDATE ON tasks FROM {WORKER}")
    drift = finding(check_roles(stg.settings), Tier.STG, "match the ownership matrix")
    assert not drift.ok and not drift.required
    assert "app_stg_worker table public.users - DELETE" in drift.message
    assert "app_stg_worker table public.tasks + UPDATE" in drift.message
    assert drift.fix == "invoke db.roles --env stg"
    assert roles(stg.settings).code == 0
    assert finding(check_roles(stg.settings), Tier.STG, "match the ownership matrix").ok
    assert not privilege(stg, WORKER, "users", "DELETE") and privilege(stg, WORKER, "tasks", "UPDATE")


def test_a_component_role_that_owns_a_table_or_may_create_fails_the_doctor(stg: Tiers) -> None:
    stg.sql(Tier.STG, f"ALTER TABLE comments OWNER TO {WORKER}")
    owns = finding(check_roles(stg.settings), Tier.STG, "own nothing")
    assert not owns.ok and owns.required and "app_stg_worker: owns" in owns.message
    stg.sql(Tier.STG, f"ALTER TABLE comments OWNER TO {MIGRATOR}; GRANT CREATE ON SCHEMA public TO {APP}")
    creates = finding(check_roles(stg.settings), Tier.STG, "own nothing")
    assert not creates.ok and "may create in schema public" in creates.message
    assert "app_stg_app_login: may create in schema public" in creates.message  # through its group role
    stg.sql(Tier.STG, f"REVOKE CREATE ON SCHEMA public FROM {APP}")
    stg.local.psql("postgres", f"ALTER ROLE {WORKER_LOGIN} CREATEROLE")
    try:
        powers = finding(check_roles(stg.settings), Tier.STG, "own nothing")
        assert not powers.ok and "app_stg_worker_login: is CREATEROLE" in powers.message
        assert roles(stg.settings).code == 0  # db.roles takes the attribute away again
        assert finding(check_roles(stg.settings), Tier.STG, "own nothing").ok
    finally:
        stg.local.psql("postgres", f"ALTER ROLE {WORKER_LOGIN} NOCREATEROLE")


def test_row_level_security_lets_the_app_see_only_the_users_own_projects(stg: Tiers) -> None:
    settings = stg.settings.with_values(STG_APP_DATABASE_PASSWORD="a-1", STG_WORKER_DATABASE_PASSWORD="w-1")
    stg.sql(
        Tier.STG,
        "INSERT INTO users (email, full_name) VALUES ('a@example.com', 'A'), ('b@example.com', 'B');"
        "INSERT INTO projects (owner_id, name) SELECT id, 'of ' || full_name FROM users",
    )
    ids = dict(
        (name, int(i))
        for name, i in (
            row.split("|")
            for row in stg.sql(Tier.STG, "SELECT string_agg(full_name || '|' || id, ',') FROM users").split(",")
        )
    )
    with connect(component_target(settings, Tier.STG, "app")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP_LOGIN,)
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (0,)  # no user set: no rows
        conn.execute("SELECT set_config('dbguard.user_id', %s, false)", (str(ids["A"]),))
        assert conn.execute("SELECT name FROM projects").fetchall() == [("of A",)]
        assert conn.execute("UPDATE projects SET name = 'x' WHERE owner_id = %s", (ids["B"],)).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # WITH CHECK: not into B's name
            conn.execute("INSERT INTO projects (owner_id, name) VALUES (%s, 'planted')", (ids["B"],))
    with (
        connect(component_target(settings, Tier.STG, "worker")) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("INSERT INTO users (email, full_name) VALUES ('w@example.com', 'W')")
    assert stg.sql(Tier.STG, "SELECT string_agg(name, ',' ORDER BY name) FROM projects") == "of A,of B"


def test_login_passwords_come_from_the_tier_variable_and_never_show(tiers: Tiers) -> None:
    migrate(tiers, Tier.STG)
    secret = "Worker-Pass-7c1d"
    settings = tiers.settings.with_values(STG_WORKER_DATABASE_PASSWORD=secret)
    result = roles(settings)
    assert result.code == 0, result.text
    assert secret not in result.text and "password from STG_WORKER_DATABASE_PASSWORD" in result.text
    verifier = tiers.local.psql("postgres", f"SELECT rolpassword FROM pg_authid WHERE rolname = '{WORKER_LOGIN}'")
    assert verifier.startswith("SCRAM-SHA-256$") and secret not in verifier
    assert "nothing to change" in roles(settings).text  # the same password: unchanged
    url = component_url(settings, Tier.STG, "worker")
    assert WORKER_LOGIN in url and secret in url
    assert "app_stg_app_login has no password from STG_APP_DATABASE_PASSWORD" in result.text
    rotated = roles(settings.with_values(STG_WORKER_DATABASE_PASSWORD=secret + "x"))
    assert "password from STG_WORKER_DATABASE_PASSWORD" in rotated.text
    assert (
        tiers.local.psql("postgres", f"SELECT rolpassword FROM pg_authid WHERE rolname = '{WORKER_LOGIN}'") != verifier
    )


def test_prod_roles_need_the_typed_name_and_save_the_state_first(tiers: Tiers, tmp_path: Path) -> None:
    with sa_connection(tiers.target(Tier.PROD)) as conn, conn.begin():
        upgrade(tiers.settings, conn, "head")
    refused = roles(tiers.settings, "prod")
    assert refused.code == 2 and not refused.ran
    db = tiers.names[Tier.PROD]
    before = tiers.prod.psql(db, "SELECT string_agg(relname || coalesce(relacl::text, ''), ',') FROM pg_class")
    planned = roles(tiers.settings, "prod", dry_run=True)
    assert planned.code == 0 and "+ SELECT" in planned.text and "nothing was changed" in planned.text, planned.text
    assert tiers.prod.psql(db, "SELECT string_agg(relname || coalesce(relacl::text, ''), ',') FROM pg_class") == before
    done = roles(tiers.settings, "prod", confirm=db)
    assert done.code == 0, done.text
    assert list((tiers.settings.backups_dir / "roles").glob(f"prod-{db}-roles-*.sql"))
    # the tools' read-only role reads every table, every row of the row-owned one too
    assert tiers.prod.psql(db, "SELECT has_table_privilege('app', 'projects', 'SELECT')") == "t"
    assert (
        tiers.prod.psql(db, "SELECT roles::text FROM pg_policies WHERE policyname = 'dbguard_reader_all_rows'")
        == "{app}"
    )
    assert finding(check_roles(tiers.settings), Tier.PROD, "match the ownership matrix").ok
    # PROD's backups still read every row through the read-only role, past row-level security
    tiers.sql(Tier.PROD, "INSERT INTO users (email, full_name) VALUES ('a@example.com', 'A')")
    tiers.sql(Tier.PROD, "INSERT INTO projects (owner_id, name) SELECT id, 'p' FROM users")
    backup = run(tiers.settings, "backup", "prod", robot(), commands.backup)
    assert backup.code == 0, backup.text
    (dump,) = (tiers.settings.backups_dir).glob("prod-*.dump")
    rows = json.loads(dump.with_suffix(dump.suffix + ".json").read_text())["rows"]
    assert {k.split(".")[-1]: v for k, v in rows.items()}["projects"] == 1, rows
    # restored on another server (INT's), without PROD's roles: db.roles' policies stay behind
    restored = run(
        tiers.settings, "restore", "int", human(db), lambda ctx: restore_task(ctx, dump.name, allow_prod_data=True)
    )
    assert restored.code == 0, restored.text
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM projects") == "1"
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM pg_policies") == "0"


def test_a_change_the_server_refuses_is_one_line_and_nothing_is_kept(tiers: Tiers) -> None:
    migrate(tiers, Tier.INT)  # INT: no state to save first, so the refusal comes from the changes themselves
    tiers.local.psql("postgres", "DO $$ BEGIN CREATE ROLE weak LOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
    db = tiers.names[Tier.INT]
    tiers.sql(  # may connect and read the tier stamp, may not create roles
        Tier.INT,
        f"GRANT CONNECT ON DATABASE {db} TO weak; GRANT USAGE ON SCHEMA dbguard TO weak; "
        "GRANT SELECT ON ALL TABLES IN SCHEMA dbguard TO weak",
    )
    weak = tiers.settings.with_values(INT_DATABASE_URL=tiers.local.socket_url(db).replace("postgres@", "weak@"))
    before = grants(tiers, Tier.INT)
    result = roles(weak, "int")
    assert result.code == 1 and "the server refused a change (" in result.text and "nothing was changed" in result.text
    assert "CREATEROLE" in result.text and "Traceback" not in result.text and "DB_TOOLS_DEBUG" not in result.text
    assert grants(tiers, Tier.INT) == before


def test_two_tiers_on_one_server_never_share_or_touch_each_others_roles(tiers: Tiers) -> None:
    """Roles are server-wide: STG's db.roles beside another tier (INT here; a STG beside PROD alike) makes
    only app_stg_* roles, never changes the other tier's passwords or memberships, and reaches none of its
    tables."""
    for tier in (Tier.INT, Tier.STG):
        migrate(tiers, tier)
    int_settings = tiers.settings.with_values(
        INT_APP_DATABASE_PASSWORD="int-App-1", INT_WORKER_DATABASE_PASSWORD="int-W-1"
    )
    assert roles(int_settings, "int").code == 0

    def int_roles() -> str:
        return tiers.local.psql(
            "postgres",
            "SELECT string_agg(rolname || ':' || coalesce(rolpassword, '') || ':' || ARRAY(SELECT g.rolname "
            "FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = a.oid)::text, ',' "
            "ORDER BY rolname) FROM pg_authid a WHERE rolname LIKE 'app\\_int\\_%' OR rolname = current_user",
        )

    before = int_roles()
    stg_settings = tiers.settings.with_values(
        STG_APP_DATABASE_PASSWORD="stg-App-2", STG_WORKER_DATABASE_PASSWORD="stg-W-2"
    )
    assert roles(stg_settings, "stg").code == 0
    assert int_roles() == before  # INT's roles, their passwords and memberships: untouched
    owner = "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relname = 'users'"
    assert tiers.sql(Tier.INT, owner) == "app_int_migrator" and tiers.sql(Tier.STG, owner) == "app_stg_migrator"
    reach = "SELECT has_table_privilege('{}', 'users', 'SELECT')"
    assert tiers.sql(Tier.INT, reach.format("app_stg_app")) == "f"
    assert tiers.sql(Tier.INT, reach.format("app_stg_migrator")) == "f"
    assert tiers.sql(Tier.STG, reach.format("app_int_worker")) == "f"


def test_a_components_session_idle_in_a_transaction_is_ended_by_the_server(tiers: Tiers) -> None:
    """A worker that opened a transaction and hung holds its locks no longer than COMPONENT_IDLE_TIMEOUT."""
    import time

    migrate(tiers, Tier.STG)
    settings = tiers.settings.with_values(
        STG_APP_DATABASE_PASSWORD="a-1", STG_WORKER_DATABASE_PASSWORD="w-1", COMPONENT_IDLE_TIMEOUT="1s"
    )
    result = roles(settings)
    assert result.code == 0 and "idle_in_transaction_session_timeout: " in result.text, result.text
    assert "-> 1s" in result.text  # from none on a new server, from another value where a test set one
    config = "SELECT array_to_string(rolconfig, ',') FROM pg_roles WHERE rolname = 'app_stg_worker_login'"
    assert tiers.local.psql("postgres", config) == "idle_in_transaction_session_timeout=1s"
    conn = connect(component_target(settings, Tier.STG, "worker"))
    try:
        conn.execute("SELECT count(*) FROM users")  # a transaction opened (psycopg's default) and left idle
        time.sleep(2.0)
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    assert "nothing to change" in roles(settings).text
    again = roles(tiers.settings.with_values(STG_APP_DATABASE_PASSWORD="a-1", STG_WORKER_DATABASE_PASSWORD="w-1"))
    assert "idle_in_transaction_session_timeout: 1s -> 60s" in again.text  # the default
    assert tiers.local.psql("postgres", config) == "idle_in_transaction_session_timeout=60s"
