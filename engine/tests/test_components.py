"""The app connects as its component (dbguard.runtime + dbguard.roles): each component's process holds
connections as its own login role, on the database the guard cleared, and can do exactly what the
taskboard fixture's ownership matrix grants it (tasks: app and worker write; users, comments: the worker
reads; projects: the app's, row-owned by owner_id)."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from dbguard.cli.console import Output
from dbguard.guard.tiers import Tier
from dbguard.runtime import act_as, open_app_database
from dbguard.settings import Settings
from rich.console import Console
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from tests.support.components import LOGIN_PASSWORD, given_passwords, ready, with_passwords
from tests.support.setup import Tiers, base_environ, robot

APP_LOGIN, WORKER_LOGIN = "app_stg_app_login", "app_stg_worker_login"  # STG's: each tier has its own roles


def output() -> tuple[Output, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, width=200, no_color=True, soft_wrap=True)
    return Output(None, console, console), buf


def as_process(settings: Settings, **environ: str) -> Settings:
    """The app's process: a plain environment holding `environ` and the PROD login passwords it was given."""
    return replace(settings, environ=base_environ() | given_passwords(settings) | environ)


def refused(statement: str, conn) -> bool:  # type: ignore[no-untyped-def]
    with pytest.raises(ProgrammingError) as exc:
        conn.execute(text(statement))
    conn.rollback()
    return getattr(exc.value.orig, "sqlstate", None) == "42501"


def test_each_component_holds_its_own_login_role_and_only_the_matrixs_privileges(tiers: Tiers) -> None:
    settings = as_process(ready(tiers, Tier.STG), APP_ENV="stg")
    out, buf = output()
    worker = open_app_database("worker", settings=settings, caller=robot(), out=out)
    app = open_app_database("app", settings=settings, caller=robot(), out=out)
    assert worker.target.user == WORKER_LOGIN and "***" in worker.target.masked()
    with worker.engine.connect() as conn:
        assert conn.scalar(text("SELECT current_user")) == WORKER_LOGIN
        assert conn.scalar(text("SELECT current_database()")) == tiers.names[Tier.STG]
        assert conn.scalar(text("SELECT count(*) FROM users")) == 0  # a reader
        conn.execute(text("UPDATE tasks SET status = 'done' WHERE false"))  # a writer of tasks
        conn.rollback()
        assert refused("INSERT INTO users (email, full_name) VALUES ('eve@example.com', 'Eve')", conn)
        assert refused("SELECT * FROM projects", conn)
        assert refused("CREATE TABLE sneaky (id int)", conn)
    with app.engine.connect() as conn:
        assert conn.scalar(text("SELECT current_user")) == APP_LOGIN
        conn.execute(text("INSERT INTO users (email, full_name) VALUES ('ann@example.com', 'Ann')"))
        conn.commit()
        assert refused("DROP TABLE comments", conn)
    audit = settings.audit_log.read_text()
    assert f'"role": "{WORKER_LOGIN}"' in audit and f'"role": "{APP_LOGIN}"' in audit
    assert LOGIN_PASSWORD not in buf.getvalue() + audit


def test_row_level_security_keeps_each_user_to_their_own_projects(tiers: Tiers) -> None:
    settings = as_process(ready(tiers, Tier.STG), APP_ENV="stg")
    tiers.sql(
        Tier.STG,
        "INSERT INTO users (id, email, full_name) OVERRIDING SYSTEM VALUE "
        "VALUES (1, 'a@x.org', 'A'), (2, 'b@x.org', 'B');"
        "INSERT INTO projects (owner_id, name) VALUES (1, 'A1'), (2, 'B1')",
    )
    app = open_app_database("app", settings=settings, caller=robot(), out=output()[0])
    with app.session(user_id=1) as s, s.begin():
        assert s.execute(text("SELECT name FROM projects")).scalars().all() == ["A1"]
        assert s.execute(text("UPDATE projects SET name = 'mine' WHERE owner_id = 2")).rowcount == 0  # type: ignore[attr-defined]
        assert s.execute(text("DELETE FROM projects WHERE owner_id = 2")).rowcount == 0  # type: ignore[attr-defined]
    with app.engine.connect() as conn:
        act_as(conn, 1)
        with pytest.raises(ProgrammingError, match="row-level security"):
            conn.execute(text("INSERT INTO projects (owner_id, name) VALUES (2, 'planted')"))
        conn.rollback()
        assert conn.scalar(text("SELECT count(*) FROM projects")) == 0  # no user named: no rows
    assert tiers.sql(Tier.STG, "SELECT string_agg(name, ',' ORDER BY name) FROM projects") == "A1,B1"


def test_a_database_without_its_roles_is_refused_with_the_fix(tiers: Tiers) -> None:
    settings = as_process(with_passwords(tiers.settings), APP_ENV="stg")
    out, buf = output()
    with pytest.raises(SystemExit) as exc:
        open_app_database("app", settings=settings, caller=robot(), out=out)
    assert exc.value.code == 2
    text_ = buf.getvalue()
    assert "invoke db.roles --env stg" in text_ and "Traceback" not in text_ and LOGIN_PASSWORD not in text_


def test_a_component_the_app_does_not_list_is_refused(tiers: Tiers) -> None:
    settings = as_process(ready(tiers, Tier.STG), APP_ENV="stg")
    out, buf = output()
    with pytest.raises(SystemExit) as exc:
        open_app_database("mailer", settings=settings, caller=robot(), out=out)
    assert exc.value.code == 2
    assert "'mailer' is not one of the components (app, worker)" in buf.getvalue()
    assert "add it to [tool.dbguard] components" in buf.getvalue()


def test_on_prod_a_component_logs_in_with_its_own_password_never_the_owners(tiers: Tiers) -> None:
    name = tiers.names[Tier.PROD]
    made = ready(tiers, Tier.PROD)  # db.roles on PROD: the write credential, the typed name
    # the app's process holds no PROD write credential: the guard reads PROD through the read-only role
    settings = as_process(made, APP_ENV="prod", ALLOW_PROD_DATABASE=name).with_values(
        PROD_WRITE_USER=None, PROD_WRITE_PASSWORD_COMMAND=None
    )
    app = open_app_database("app", settings=settings, caller=robot(), out=output()[0])
    with app.engine.connect() as conn:  # TLS and a password: the PROD test server takes nothing else
        assert conn.scalar(text("SELECT current_user")) == "app_prod_app_login"
        assert conn.scalar(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")) is True
    missing = settings.with_values(PROD_APP_DATABASE_PASSWORD=None)
    out, buf = output()
    with pytest.raises(SystemExit):
        open_app_database("app", settings=missing, caller=robot(), out=out)
    assert "PROD_APP_DATABASE_PASSWORD is not set" in buf.getvalue()
    wrong = settings.with_values(PROD_APP_DATABASE_PASSWORD="not-the-Password-1")
    out, buf = output()
    with pytest.raises(SystemExit):
        open_app_database("app", settings=wrong, caller=robot(), out=out)
    shown = buf.getvalue()
    assert "wrong or missing password" in shown and "invoke db.roles --env prod" in shown
    assert "not-the-Password-1" not in shown and LOGIN_PASSWORD not in shown


def test_a_prod_login_password_in_the_env_file_is_refused(tiers: Tiers) -> None:
    """PROD's component passwords come from the real environment only: one in .env (values, not environ) is
    refused by name, and never shown."""
    name = tiers.names[Tier.PROD]
    made = ready(tiers, Tier.PROD)
    process = as_process(made, APP_ENV="prod", ALLOW_PROD_DATABASE=name)
    in_file = replace(process, environ={k: v for k, v in process.environ.items() if not k.endswith("_PASSWORD")})
    assert in_file.values.get("PROD_APP_DATABASE_PASSWORD") == LOGIN_PASSWORD
    out, buf = output()
    with pytest.raises(SystemExit) as exc:
        open_app_database("app", settings=in_file, caller=robot(), out=out)
    assert exc.value.code == 2
    shown = buf.getvalue()
    assert "PROD_APP_DATABASE_PASSWORD is set in .env" in shown and "real environment only" in shown
    assert LOGIN_PASSWORD not in shown and "Traceback" not in shown
