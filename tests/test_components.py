"""The example's two components, each through its own role (`invoke db.roles` applied to the test's database):
the app sees and changes only its user's projects (row-level security), the worker reads tasks and users,
keeps its own queue and can do nothing else."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from dbguard.cli.console import Output
from dbguard.cli.runner import TaskContext, run_task
from dbguard.guard.caller import Caller
from dbguard.guard.cleared import Cleared
from dbguard.guard.tiers import Tier
from dbguard.migrations.migrate import migrate_task
from dbguard.roles.apply import roles_task
from dbguard.roles.names import role_names
from dbguard.runtime import AppDatabase, act_as, open_app_database
from dbguard.settings import Settings
from sqlalchemy import CursorResult, Engine, Result, func, select, text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session

from app.__main__ import add_task
from app.models import NotificationJob, Project, User
from app.worker import Job, enqueue, work_batch

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = add_task.__module__.split(".")[0]  # the app's package: `python -m <package>`, `python -m <package>.worker`
ROBOT = Caller(interactive=False, ci=True, agent=None, consent=None)
# The login roles are server-wide and shared by every test run on this server: one password for all of them,
# so parallel runs never change it under each other (the test servers trust local connections anyway).
LOGIN_PASSWORD = "app-tests-login-password"
INSUFFICIENT_PRIVILEGE = "42501"


@dataclass
class Components:
    settings: Settings
    owner: Engine  # the tier URL's user: set-up and checks
    app: AppDatabase
    worker: AppDatabase
    ann: int  # two users, each with one project
    bob: int
    ann_project: int
    bob_project: int


def roles_settings(base: Settings, target: Cleared, tmp: Path) -> Settings:
    return base.with_values(
        INT_DATABASE_URL=target.url(),
        INT_APP_DATABASE_PASSWORD=LOGIN_PASSWORD,
        INT_WORKER_DATABASE_PASSWORD=LOGIN_PASSWORD,
        AUDIT_LOG=str(tmp / "audit.jsonl"),
        BACKUP_DIR=str(tmp / "backups"),
    )


def apply_roles(settings: Settings) -> None:
    """`invoke db.roles --env int` on the test's database; one run at a time per machine (roles are server-wide)."""
    lock = Path(tempfile.gettempdir()) / "dbguard-app-tests-roles.lock"
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        code = run_task("roles", "int", {}, roles_task, settings=settings, caller=ROBOT, out=Output(None))
    assert code == 0, "db.roles failed on the test database"


@pytest.fixture
def parts(db_target: Cleared, dbguard_settings: Settings, tmp_path: Path) -> Iterator[Components]:
    settings = roles_settings(dbguard_settings, db_target, tmp_path)
    apply_roles(settings)
    owner = db_target.sa_engine()
    with Session(owner) as s, s.begin():
        ann, bob = (
            User(email="ann@example.com", full_name="Ann Lee"),
            User(email="bob@example.com", full_name="Bob Ray"),
        )
        ann.projects, bob.projects = [Project(name="Garden")], [Project(name="Attic")]
        s.add_all([ann, bob])
        s.flush()
        ids = (ann.id, bob.id, ann.projects[0].id, bob.projects[0].id)
    app = open_app_database("app", settings=settings, caller=ROBOT, out=Output(None))
    worker = open_app_database("worker", settings=settings, caller=ROBOT, out=Output(None))
    yield Components(settings, owner, app, worker, *ids)
    for engine in (app.engine, worker.engine, owner):
        engine.dispose()


def rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def refused(exc: pytest.ExceptionInfo[DBAPIError]) -> bool:
    return getattr(exc.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE


def test_each_component_connects_as_its_own_login_role(parts: Components) -> None:
    names = role_names(parts.settings, Tier.INT)
    for db, role in ((parts.app, names.login("app")), (parts.worker, names.login("worker"))):
        with db.engine.connect() as conn:
            assert conn.scalar(text("SELECT current_user")) == role
            flags = conn.execute(
                text("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = user")
            ).one()
            assert not any(flags)
            with pytest.raises(ProgrammingError) as exc:
                conn.execute(text("CREATE TABLE sneaky (id int)"))
            assert refused(exc)


def test_a_user_reads_only_their_own_projects(parts: Components) -> None:
    with parts.app.session(user_id=parts.ann) as s:
        assert s.scalars(select(Project.id)).all() == [parts.ann_project]
        assert s.get(Project, parts.bob_project) is None
    with parts.app.session(user_id=parts.bob) as s:
        assert s.scalars(select(Project.id)).all() == [parts.bob_project]


def test_a_session_that_names_no_user_sees_no_projects(parts: Components) -> None:
    count = select(func.count()).select_from(Project)
    with parts.app.engine.connect() as conn:  # never named a user on this connection
        assert conn.scalar(count) == 0
        conn.rollback()
        act_as(conn, parts.ann)  # named one for a transaction, which then ends:
        assert conn.scalar(count) == 1
        conn.commit()
        assert conn.scalar(count) == 0  # the connection (pooled, reused) forgets the user


def test_a_user_cannot_change_or_delete_another_users_project(parts: Components) -> None:
    with parts.app.session(user_id=parts.ann) as s, s.begin():
        bob = {"id": parts.bob_project}
        assert rowcount(s.execute(text("UPDATE projects SET name = 'Mine now' WHERE id = :id"), bob)) == 0
        assert rowcount(s.execute(text("DELETE FROM projects WHERE id = :id"), bob)) == 0
    with Session(parts.owner) as s:
        assert s.scalar(select(Project.name).where(Project.id == parts.bob_project)) == "Attic"


def test_a_user_cannot_insert_or_hand_over_a_project_owned_by_another(parts: Components) -> None:
    with parts.app.session(user_id=parts.ann) as s:
        s.add(Project(owner_id=parts.bob, name="Planted"))
        with pytest.raises(ProgrammingError) as exc:
            s.flush()
        assert refused(exc) and "row-level security" in str(exc.value)
    with parts.app.session(user_id=parts.ann) as s:
        with pytest.raises(ProgrammingError) as exc:
            s.execute(
                text("UPDATE projects SET owner_id = :bob WHERE id = :id"), {"bob": parts.bob, "id": parts.ann_project}
            )
        assert refused(exc)
    with Session(parts.owner) as s:
        assert s.scalar(select(func.count()).select_from(Project)) == 2
        assert s.scalar(select(Project.owner_id).where(Project.id == parts.ann_project)) == parts.ann


def test_a_user_adds_tasks_only_to_their_own_projects(parts: Components) -> None:
    with parts.app.session(user_id=parts.ann) as s, s.begin():
        assert add_task(s, parts.ann_project, "Dig", assignee_id=parts.bob)
        with pytest.raises(LookupError):
            add_task(s, parts.bob_project, "Sneak in")


def test_tasks_and_comments_belong_to_the_user_through_their_project(parts: Components) -> None:
    """rows_via: a task is the user's when its project is, a comment when its task is; the worker reads every task."""
    with Session(parts.owner) as s, s.begin():
        ids = {}
        for who, project in (("ann", parts.ann_project), ("bob", parts.bob_project)):
            task = s.execute(
                text("INSERT INTO tasks (project_id, title) VALUES (:p, :t) RETURNING id"), {"p": project, "t": who}
            ).scalar_one()
            s.execute(
                text("INSERT INTO comments (task_id, author_id, body) VALUES (:t, :a, 'note')"),
                {"t": task, "a": parts.ann if who == "ann" else parts.bob},
            )
            ids[who] = task
    with parts.app.session(user_id=parts.ann) as s, s.begin():
        assert s.scalars(text("SELECT title FROM tasks")).all() == ["ann"]
        assert s.scalars(text("SELECT task_id FROM comments")).all() == [ids["ann"]]
        bob = {"id": ids["bob"]}
        assert rowcount(s.execute(text("UPDATE tasks SET title = 'mine' WHERE id = :id"), bob)) == 0
        assert rowcount(s.execute(text("DELETE FROM comments WHERE task_id = :id"), bob)) == 0
        with pytest.raises(ProgrammingError) as exc:  # moving her own task into Bob's project
            s.execute(
                text("UPDATE tasks SET project_id = :p WHERE id = :id"), {"p": parts.bob_project, "id": ids["ann"]}
            )
        assert refused(exc) and "row-level security" in str(exc.value)
    with parts.app.session(user_id=parts.ann) as s, s.begin():
        with pytest.raises(ProgrammingError) as exc:  # a comment on Bob's task
            s.execute(
                text("INSERT INTO comments (task_id, author_id, body) VALUES (:t, :a, 'x')"),
                {"t": ids["bob"], "a": parts.ann},
            )
        assert refused(exc)
    with parts.worker.engine.connect() as conn:  # a process serving every user: every task, no user named
        assert sorted(conn.scalars(text("SELECT title FROM tasks"))) == ["ann", "bob"]
    with Session(parts.owner) as s:
        assert s.scalar(text("SELECT title FROM tasks WHERE id = :id"), {"id": ids["bob"]}) == "bob"
        assert s.scalar(text("SELECT count(*) FROM comments")) == 2


def test_the_worker_may_only_read_users_and_tasks_and_keep_its_queue(parts: Components) -> None:
    forbidden = (
        "SELECT * FROM projects",
        "SELECT * FROM comments",
        "INSERT INTO users (email, full_name) VALUES ('eve@example.com', 'Eve')",
        "UPDATE users SET full_name = 'X'",
        "UPDATE tasks SET status = 'done'",
        "DELETE FROM tasks",
    )
    for statement in forbidden:
        with parts.worker.engine.connect() as conn:
            with pytest.raises(ProgrammingError) as exc:
                conn.execute(text(statement))
            assert refused(exc), statement
    with parts.worker.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM users")) == 2
        assert conn.scalar(text("SELECT count(*) FROM notification_jobs")) == 0
    with parts.app.engine.connect() as conn, pytest.raises(ProgrammingError) as exc:
        conn.execute(text("SELECT * FROM notification_jobs"))  # the worker's queue is its own
    assert refused(exc)


def test_the_worker_tells_each_assignee_once(parts: Components) -> None:
    with parts.app.session(user_id=parts.ann) as s, s.begin():
        first = add_task(s, parts.ann_project, "Dig", assignee_id=parts.bob)
        second = add_task(s, parts.ann_project, "Plant", assignee_id=parts.ann)
        add_task(s, parts.ann_project, "Water")  # nobody to tell
    told: list[Job] = []
    with parts.worker.session() as s:
        with s.begin():
            assert enqueue(s) == 2
        with s.begin():
            assert work_batch(s, told.append) == 2
        with s.begin():
            assert enqueue(s) == 0
        with s.begin():
            assert work_batch(s, told.append) == 0
    assert sorted((j.task_id, j.assignee_id, j.email) for j in told) == [
        (first, parts.bob, "bob@example.com"),
        (second, parts.ann, "ann@example.com"),
    ]
    with Session(parts.owner) as s:
        assert s.scalars(select(NotificationJob.state)).all() == ["done", "done"]
    with parts.app.session(user_id=parts.ann) as s, s.begin():  # reassigned: the new assignee is told too
        s.execute(text("UPDATE tasks SET assignee_id = :ann WHERE id = :id"), {"ann": parts.ann, "id": first})
    with parts.worker.session() as s:
        with s.begin():
            assert enqueue(s) == 1
        with s.begin():
            assert work_batch(s, told.append) == 1
    assert (told[-1].task_id, told[-1].assignee_id) == (first, parts.ann)


def test_two_workers_never_claim_the_same_job(parts: Components) -> None:
    with parts.app.session(user_id=parts.ann) as s, s.begin():
        for n in range(6):
            add_task(s, parts.ann_project, f"Task {n}", assignee_id=parts.bob)
    with parts.worker.session() as s, s.begin():
        assert enqueue(s) == 6
    one: list[Job] = []
    two: list[Job] = []
    with parts.worker.session() as s1, parts.worker.session() as s2:
        s1.begin()
        assert work_batch(s1, one.append, batch=4) == 4  # its claim's locks held until it commits
        with s2.begin():
            assert work_batch(s2, two.append, batch=4) == 2  # skips the locked jobs, takes the rest
        s1.commit()
    assert not {j.id for j in one} & {j.id for j in two}
    with Session(parts.owner) as s:
        assert s.scalar(select(func.count()).where(NotificationJob.state == "done")) == 6


def run_entry(module: str, parts: Components, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_DATABASE_URL", "_DATABASE_PASSWORD"))}
    env |= {
        "INT_DATABASE_URL": parts.settings.values["INT_DATABASE_URL"],
        "INT_APP_DATABASE_PASSWORD": LOGIN_PASSWORD,
        "INT_WORKER_DATABASE_PASSWORD": LOGIN_PASSWORD,
        "AUDIT_LOG": parts.settings.values["AUDIT_LOG"],
        "DB_TOOLS_ENV_FILE": "/dev/null",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_one_entry_point_per_component(parts: Components) -> None:
    ann, bob = str(parts.ann), str(parts.bob)
    added = run_entry(
        PACKAGE,
        parts,
        "add-task",
        "--user",
        ann,
        "--project",
        str(parts.ann_project),
        "--title",
        "Prune",
        "--assignee",
        bob,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    other = run_entry(PACKAGE, parts, "add-task", "--user", ann, "--project", str(parts.bob_project), "--title", "X")
    assert other.returncode == 1 and f"no project {parts.bob_project} of yours" in other.stderr
    shown = run_entry(PACKAGE, parts, "summary", "--user", str(parts.ann))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    assert (
        lines[0].startswith("[INT] ") and len(lines) == 2 and lines[1].startswith("Garden") and "open    1" in lines[1]
    )
    nothing = run_entry(PACKAGE, parts, "summary", "--user", str(parts.bob + parts.ann))  # no such user
    assert nothing.returncode == 0 and "has no projects" in nothing.stdout
    worked = run_entry(f"{PACKAGE}.worker", parts, "--once")
    assert worked.returncode == 0, worked.stdout + worked.stderr
    assert "1 notification(s) sent" in worked.stdout and f"told user {parts.bob} about task" in worked.stdout
    assert "bob@example.com" not in worked.stdout  # the address is used, never printed
    audit = Path(parts.settings.values["AUDIT_LOG"]).read_text()
    login = role_names(parts.settings, Tier.INT).login("worker")
    assert '"component": "worker"' in audit and f'"role": "{login}"' in audit


def test_a_table_a_migration_adds_gets_the_matrixs_grants_at_once(parts: Components) -> None:
    """db.migrate on a database db.roles manages: the worker's queue, dropped and made again by its revision,
    belongs to the migrator and is the worker's again without another db.roles."""
    for db in (parts.app, parts.worker):
        db.engine.dispose()
    for to in ("0002", "head"):

        def body(ctx: TaskContext, to: str = to) -> int:
            return migrate_task(ctx, to=to)

        assert (
            run_task("migrate", "int", {"to": to}, body, settings=parts.settings, caller=ROBOT, out=Output(None)) == 0
        )
    with parts.owner.connect() as conn:
        owner = "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'notification_jobs'"
        assert conn.scalar(text(owner)) == role_names(parts.settings, Tier.INT).migrator
    with parts.worker.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM notification_jobs")) == 0
    with parts.app.engine.connect() as conn, pytest.raises(ProgrammingError) as exc:
        conn.execute(text("SELECT count(*) FROM notification_jobs"))
    assert refused(exc)
