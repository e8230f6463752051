"""Shared fixtures: throwaway clusters (INT/STG server, PROD server with password and TLS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dbguard.errors import OpsError
from dbguard.guard.caller import AGENT_PREFIXES, AGENT_VARIABLES, CONSENT_VARIABLE
from dbguard.guard.forced_int import check_test_database
from dbguard.settings import load_settings

from tests.support.clusters import ThrowawayCluster
from tests.support.project import FIXTURE_ROOT, PROJECT
from tests.support.setup import PROD_OWNER_PASSWORD, PROD_PASSWORD, Tiers, make_tiers

__all__ = ["PROD_OWNER_PASSWORD", "PROD_PASSWORD"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to start when the configured INT database is STG's or PROD's, or stamped otherwise."""
    try:
        check_test_database(load_settings(FIXTURE_ROOT))
    except OpsError as exc:
        pytest.exit(f"refusing to run the tests: {exc.one_line()}", returncode=3)


@pytest.fixture(autouse=True)
def _no_agent_markers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite behaves the same under a coding agent, in CI, or at a terminal."""
    import os

    for name, _ in AGENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for prefix, _ in AGENT_PREFIXES:
        for key in [k for k in os.environ if k.startswith(prefix)]:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv(CONSENT_VARIABLE, raising=False)
    monkeypatch.delenv("AWS_EXECUTION_ENV", raising=False)


@pytest.fixture(scope="session")
def local_server() -> Iterator[ThrowawayCluster]:
    """The INT/STG server: Unix socket and TCP on 127.0.0.1, trust authentication."""
    cluster = ThrowawayCluster("local", listen=("127.0.0.1", "127.0.0.2")).start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def prod_server() -> Iterator[ThrowawayCluster]:
    """The PROD server: a separate cluster demanding a password and TLS, listening on 127.0.0.1 and 127.0.0.2;
    `app` is the tools' read-only role, `app_owner` the write role."""
    cluster = ThrowawayCluster(
        "prod", password=PROD_PASSWORD, owner_password=PROD_OWNER_PASSWORD, tls=True, listen=("127.0.0.1", "127.0.0.2")
    ).start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def tiers(tmp_path: Path, local_server: ThrowawayCluster, prod_server: ThrowawayCluster) -> Tiers:
    """Fresh stamped INT, STG and PROD databases for one test."""
    return make_tiers(tmp_path, local_server, prod_server)


@pytest.fixture
def int_target(tiers: Tiers):  # type: ignore[no-untyped-def]
    """The INT test database, migrated to head and empty."""
    from dbguard.guard.tiers import Tier
    from dbguard.migrations.schema import sa_connection, upgrade

    target = tiers.target(Tier.INT)
    with sa_connection(target) as conn, conn.begin():
        upgrade(tiers.settings, conn, "head")
    return target


@pytest.fixture
def seeded(tiers: Tiers, int_target):  # type: ignore[no-untyped-def]
    """INT at head, seeded with the 'minimal' scenario by the seed modules; yields an ORM session on it.

    This is how an app's own tests use the seed modules as factories: the rows are there, realistic
    and the same on every run, and `dbguard.seeding.factories.create` adds more where a test needs them.
    """
    from dbguard.migrations.schema import raw, sa_connection
    from dbguard.seeding.runner import make_plan, seed_database
    from sqlalchemy.orm import Session

    with sa_connection(int_target) as conn:
        with conn.begin():
            seed_database(raw(conn), make_plan(PROJECT, "minimal", seed=1))
        with Session(bind=conn) as session:
            yield session
