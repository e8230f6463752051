"""dbguard.runtime: the app's own connection passes the guard once, for the tier its process runs on, and
connects as its component's login role (engine/tests/test_components.py has the roles' side)."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest
from dbguard.cli.console import Output
from dbguard.guard.tiers import Tier
from dbguard.runtime import open_app_database
from dbguard.settings import Settings
from rich.console import Console
from sqlalchemy import text

from tests.support.components import given_passwords, ready
from tests.support.setup import Tiers, base_environ, human, robot


def output() -> tuple[Output, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, width=200, no_color=True, soft_wrap=True)
    return Output(None, console, console), buf


def process(tiers: Tiers, *ready_tiers: Tier, **environ: str) -> Settings:
    """The tiers' settings as seen by a process started with `environ` (the real environment), after
    `ready_tiers` were migrated and given their component roles."""
    settings = tiers.settings
    for tier in ready_tiers:
        settings = ready(tiers, tier)
    return replace(settings, environ=base_environ() | given_passwords(settings) | environ)


def test_the_app_gets_its_tiers_database_with_one_badge_and_one_audit_line(tiers: Tiers) -> None:
    out, buf = output()
    settings = process(tiers, Tier.STG, APP_ENV="stg")
    db = open_app_database("worker", settings=settings, caller=robot(), out=out)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT current_database()")).scalar() == tiers.names[Tier.STG]
    assert db.tier is Tier.STG
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[STG] ")
    lines = settings.audit_log.read_text().splitlines()
    audit = [a for a in map(json.loads, lines) if a["task"] == "app-connect"]  # after db.roles' own lines
    assert [(a["task"], a["tier"], a["outcome"], a["args"]["component"]) for a in audit] == [
        ("app-connect", "stg", "started", "worker"),
        ("app-connect", "stg", "ok", "worker"),
    ]
    assert audit[0]["run"] == audit[1]["run"]


def test_prod_is_refused_to_a_process_nobody_allowed(tiers: Tiers) -> None:
    out, buf = output()
    settings = process(tiers, APP_ENV="prod")
    with pytest.raises(SystemExit) as exc:
        open_app_database(settings=settings, caller=robot(), out=out)
    assert exc.value.code == 2
    assert "app-connect on PROD needs the database name typed; this run is non-interactive" in buf.getvalue()


def test_prod_opens_for_an_allowed_process_or_a_human_who_types_its_name(tiers: Tiers) -> None:
    name = tiers.names[Tier.PROD]
    allowed = process(tiers, Tier.PROD, APP_ENV="prod", ALLOW_PROD_DATABASE=name)
    db = open_app_database(settings=allowed, caller=robot(), out=output()[0])
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT current_database()")).scalar() == name
    typed = replace(allowed, environ=base_environ() | given_passwords(allowed) | {"USE_PROD_DATABASE": "1"})
    assert open_app_database(settings=typed, caller=human(name), out=output()[0]).tier is Tier.PROD


def test_an_agent_needs_a_humans_consent_even_when_prod_is_allowed(tiers: Tiers) -> None:
    name = tiers.names[Tier.PROD]
    settings = process(tiers, APP_ENV="prod", ALLOW_PROD_DATABASE=name)
    out, buf = output()
    with pytest.raises(SystemExit):
        open_app_database(settings=settings, caller=robot(agent="claude-code"), out=out)
    assert "needs a human's consent" in buf.getvalue()


def test_under_pytest_the_app_is_forced_to_int(tiers: Tiers) -> None:
    settings = process(tiers, Tier.INT, APP_ENV="prod", PYTEST_CURRENT_TEST="x")
    db = open_app_database(settings=settings, caller=robot(), out=output()[0])
    assert db.tier is Tier.INT
