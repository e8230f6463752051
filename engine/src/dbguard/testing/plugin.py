"""pytest plugin for apps built on dbguard (entry point `dbguard`; pytest loads it by itself).

What an app's tests get, in pytest-postgresql's pattern (a template built once, cloned per test):
- the forced-INT rule: the run refuses to start when INT is STG's or PROD's database, or stamped
  otherwise, and every task started under pytest is forced to INT (dbguard.guard.forced_int);
- `dbguard_settings`: the app's settings, read as the tools read them;
- `db_target`: a database of its own for each test, cloned from a template migrated to head once
  per run, on INT's server, stamped INT, dropped afterwards;
- `db_session`: a SQLAlchemy Session on it; `seeded_session`: the same on a clone of a second
  template that also holds the `minimal` scenario of the app's seed modules.

The plugin is inert in a folder that is no dbguard project (no [tool.dbguard] table).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dbguard.errors import OpsError, Refused
from dbguard.settings import Settings, load_settings

if TYPE_CHECKING:
    from dbguard.guard.cleared import Cleared

_clones = itertools.count(1)


def _project_root(config: pytest.Config) -> Path | None:
    from dbguard.project import find_root

    try:
        return find_root(Path(config.rootpath))
    except Refused:
        return None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to start when the configured INT database is STG's or PROD's, or stamped otherwise."""
    from dbguard.guard.forced_int import check_test_database

    root = _project_root(session.config)
    if root is None:
        return
    try:
        check_test_database(load_settings(root))
    except OpsError as exc:
        pytest.exit(f"refusing to run the tests: {exc.one_line()}", returncode=3)


@pytest.fixture(scope="session")
def dbguard_settings(pytestconfig: pytest.Config) -> Settings:
    """The app's settings, as `invoke` reads them (.env, then the real environment)."""
    root = _project_root(pytestconfig)
    if root is None:
        pytest.skip("not a dbguard project: no [tool.dbguard] table in pyproject.toml")
    return load_settings(root)


@dataclass(frozen=True)
class Template:
    """A database migrated (and maybe seeded) once per run, cloned for each test."""

    server: Cleared  # INT, as the guard cleared it for the test databases ('test-databases' row)
    db: Cleared  # the template itself, a scratch database on INT's server


def _template(settings: Settings, scenario: str | None) -> Iterator[Template]:
    """A database at head (and seeded with `scenario`) on INT's server, for clones; dropped at the end."""
    from dbguard.guard.config import target_for
    from dbguard.guard.door import UNATTENDED, authorize
    from dbguard.guard.stamp import write_stamp
    from dbguard.guard.tiers import Tier
    from dbguard.migrations.schema import raw, upgrade
    from dbguard.seeding.runner import make_plan, seed_database

    server = authorize(settings, "test-databases", Tier.INT, target_for(settings, Tier.INT), UNATTENDED).target
    with server.scratch("tmpl" if scenario is None else "tmplseed") as made:
        with made.sa_connection() as migrating:
            upgrade(settings, migrating, "head")  # Alembic's own transactions: autocommit blocks run too
            if scenario is not None:
                with migrating.begin():
                    seed_database(raw(migrating), make_plan(settings.project, scenario))
        with made.connect() as conn:
            write_stamp(conn, Tier.INT, made.dbname)
        yield Template(server, made)


@pytest.fixture(scope="session")
def dbguard_template(dbguard_settings: Settings) -> Iterator[Template]:
    yield from _template(dbguard_settings, None)


@pytest.fixture(scope="session")
def dbguard_seeded_template(dbguard_settings: Settings) -> Iterator[Template]:
    yield from _template(dbguard_settings, "minimal")


def _clone(template: Template) -> Iterator[Cleared]:
    from dbguard.guard.stamp import write_stamp
    from dbguard.guard.tiers import Tier

    with template.server.scratch(f"t{next(_clones)}", template=template.db) as made:
        with made.connect() as conn:
            write_stamp(conn, Tier.INT, made.dbname)
        yield made


@pytest.fixture
def db_target(dbguard_template: Template) -> Iterator[Cleared]:
    """A fresh INT database at head for this test (a `dbguard.guard.targets.Target`, cleared by the guard)."""
    yield from _clone(dbguard_template)


@pytest.fixture
def seeded_target(dbguard_seeded_template: Template) -> Iterator[Cleared]:
    """A fresh INT database at head holding the `minimal` scenario of the app's seed modules."""
    yield from _clone(dbguard_seeded_template)


@pytest.fixture
def db_session(db_target: Cleared) -> Iterator[object]:
    """A SQLAlchemy ORM Session on this test's own database."""
    from sqlalchemy.orm import Session

    with db_target.sa_connection() as conn, Session(bind=conn) as session:
        yield session


@pytest.fixture
def seeded_session(seeded_target: Cleared) -> Iterator[object]:
    """A SQLAlchemy ORM Session on this test's own seeded database."""
    from sqlalchemy.orm import Session

    with seeded_target.sa_connection() as conn, Session(bind=conn) as session:
        yield session
