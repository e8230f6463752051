"""The example app's own tests, on dbguard's pytest plugin: each test gets its own INT database,
cloned from a template migrated (and seeded) once per run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dbguard.guard.targets import Target
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.__main__ import summary
from app.models import Comment, Project, Task, User
from seeds.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent


def test_a_user_owns_a_project_with_tasks(db_session: Session) -> None:
    ann = User(email="ann@example.com", full_name="Ann Lee")
    project = Project(owner=ann, name="Garden")
    project.tasks = [Task(title="Dig", status="done"), Task(title="Plant"), Task(title="Water")]
    db_session.add(project)
    db_session.flush()
    assert summary(db_session, 5) == [("Garden", "Ann Lee", 2, 1)]


def test_each_test_starts_from_an_empty_database(db_session: Session) -> None:
    assert db_session.scalar(select(func.count()).select_from(User)) == 0


def test_the_minimal_seed_fills_every_table(seeded_session: Session) -> None:
    for model in (User, Project, Task, Comment):
        count = seeded_session.scalar(select(func.count()).select_from(model))
        assert count == SCENARIOS["minimal"][model.__tablename__]


def test_the_entry_point_is_refused_on_a_database_without_its_roles(seeded_target: Target, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_DATABASE_URL", "_DATABASE_PASSWORD"))}
    env |= {
        "INT_DATABASE_URL": seeded_target.url(),
        "INT_APP_DATABASE_PASSWORD": "app-tests-login-password",
        "APP_ENV": "prod",  # ignored: under pytest the app is forced to INT
        "AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "DB_TOOLS_ENV_FILE": "/dev/null",
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "app", "summary", "--user", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("[INT] ") and seeded_target.dbname in lines[0]
    # the login roles are server-wide: missing (a new server) or there without grants on this database
    assert "has no component roles applied yet" in proc.stderr or "component cannot connect as" in proc.stderr
    assert "-> invoke db.roles --env int" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert '"task": "app-connect"' in (tmp_path / "audit.jsonl").read_text()
