"""`invoke --list` stays quick: loading the task collection imports no database or data library.

Each task's body (and Alembic, SQLAlchemy, Faker, psycopg with it) is imported only when the task
runs. Checked in a fresh interpreter, by what lands in sys.modules, not by timing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from dbguard.cli.catalog import TASKS

from tests.support.project import FIXTURE_ROOT

HEAVY = ("alembic", "sqlalchemy", "faker", "psycopg")


def imported_after(statement: str) -> set[str]:
    probe = f"import sys\n{statement}\nprint(__import__('json').dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=FIXTURE_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(proc.stdout))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("statement", ["import dbguard.cli.tasks", "from tasks import namespace"])
def test_loading_the_tasks_imports_no_heavy_library(statement: str) -> None:
    modules = imported_after(statement)
    assert "dbguard.cli.tasks" in modules
    assert not heavy_in(modules), heavy_in(modules)


def test_the_task_bodies_module_imports_nothing_heavy_until_a_body_runs() -> None:
    assert not heavy_in(imported_after("import dbguard.cli.commands"))


def test_every_declared_body_resolves() -> None:
    for spec in TASKS:
        assert callable(spec.load_body()), spec.name
