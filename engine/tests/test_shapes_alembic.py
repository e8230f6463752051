"""pytest-alembic's built-in tests on the template's example app and the fixture apps (issue 12 item 7).

Its documented fixtures hand `migrations/env.py` an Engine (dbguard.migrations.alembic_env accepts one) and
the app's settings; the Engine is on a throwaway database of the test cluster, stamped INT, made for each
test: never a configured tier.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import alembic.config
import pytest
from dbguard.guard.connect import connect
from dbguard.guard.stamp import read_stamp
from dbguard.guard.targets import parse_database_url
from dbguard.guard.tiers import Tier
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine, create_engine

from tests.support.clusters import ThrowawayCluster
from tests.support.project import FIXTURE_ROOT, PROJECTS, SHAPES_ROOT, TEMPLATE_ROOT
from tests.support.setup import make_settings, stamp_url

__all__ = [  # collected here, run once per app
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]

APPS = {"example": TEMPLATE_ROOT, "shapes": SHAPES_ROOT, "taskboard": FIXTURE_ROOT, "lending": PROJECTS / "lending"}
_made = iter(range(1, 1_000_000))


@pytest.fixture(params=sorted(APPS))
def app_root(request: pytest.FixtureRequest) -> Path:
    return APPS[request.param]


@pytest.fixture
def alembic_config(app_root: Path, tmp_path: Path) -> alembic.config.Config:
    """The app's own alembic.ini and migrations; env.py gets the app's settings (its metadata) from here."""
    config = alembic.config.Config(str(app_root / "alembic.ini"))
    config.attributes["settings"] = replace(make_settings(tmp_path), root=app_root)
    return config


@pytest.fixture
def alembic_engine(app_root: Path, local_server: ThrowawayCluster) -> Iterator[Engine]:
    """A new database on the test cluster, stamped INT, for one test; dropped afterwards."""
    name = f"alembic_{app_root.name}_{next(_made)}_int"
    local_server.create_database(name)
    url = local_server.socket_url(name)
    stamp_url(url, Tier.INT, name)
    with connect(parse_database_url(url, tier=Tier.INT, source="test")) as conn:
        stamp = read_stamp(conn)
    assert stamp is not None and stamp.tier is Tier.INT, "pytest-alembic runs on an INT database only"
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        yield engine
    finally:
        engine.dispose()
        local_server.psql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
