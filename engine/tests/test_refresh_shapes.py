"""db.refresh-staging on the shapes fixture (the recipe manager): its UNIQUE username classified `name`, as the
issue's app had it, is refused up front; with `username` rules the refresh copies every shape (uuid keys, the
cycle, a second schema, a partitioned table, a table with no key) and keeps every constraint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from dbguard.guard.tiers import Tier
from dbguard.migrations.schema import drop_app_schemas, raw, sa_connection, upgrade
from dbguard.seeding.runner import make_plan, seed_database
from dbguard.settings import Settings

from tests.support.cli import invoke_cli
from tests.support.clusters import ThrowawayCluster
from tests.support.project import SHAPES_ROOT
from tests.support.setup import Tiers, make_tiers, state_values

USERNAMES = '[tables.users]\nusername = "username"\n[tables.social_accounts]\nhandle = "username"\n'


@pytest.fixture
def shapes(tmp_path: Path, local_server: ThrowawayCluster, prod_server: ThrowawayCluster) -> tuple[Tiers, Settings]:
    tiers = make_tiers(tmp_path / "tiers", local_server, prod_server)
    settings = replace(tiers.settings, root=SHAPES_ROOT)
    for tier, scenario in ((Tier.PROD, "demo"), (Tier.STG, None)):
        with sa_connection(tiers.target(tier)) as conn, conn.begin():
            drop_app_schemas(conn, settings.project.metadata)
            upgrade(settings, conn, "head")
            if scenario:
                seed_database(raw(conn), make_plan(settings.project, scenario, seed=5))
    return tiers, settings


def env_of(tiers: Tiers, tmp_path: Path, **extra: str) -> dict[str, str]:
    return state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()} | extra


def test_the_shapes_app_refresh_refused_with_a_name_username_then_copied_with_username(
    shapes: tuple[Tiers, Settings], tmp_path: Path
) -> None:
    tiers, _ = shapes
    policy = tmp_path / "policy.toml"
    policy.write_text(USERNAMES.replace('"username"', '"name"'))  # the app: a name fake on usernames
    env = env_of(tiers, tmp_path, SANITIZE_POLICY=str(policy))
    proc = invoke_cli("db.sanitize-check", env=env, cwd=SHAPES_ROOT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "public.users.username: rule 'name' would break UNIQUE uq_users_username (username) -> use 'username'" in (
        proc.stderr
    )
    assert "public.social_accounts.handle: rule 'name' would break UNIQUE" in proc.stderr
    policy.write_text(USERNAMES)
    proc = invoke_cli("db.refresh-staging", env=env, cwd=SHAPES_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tables = [
        "users",
        "recipes",
        "ingredients",
        "recipe_ingredients",
        "recipe_bookmarks",
        "social_accounts",
        "kitchen.meal_plans",
        "cooking_log",
        "alembic_version",
    ]
    for table in tables:  # the second schema and the partitioned table (rows in its partitions) included
        count = f"SELECT count(*) FROM {table}"
        assert tiers.sql(Tier.STG, count) == tiers.sql(Tier.PROD, count), table
    assert int(tiers.sql(Tier.STG, "SELECT count(*) FROM cooking_log")) > 0
    assert tiers.sql(Tier.STG, "SELECT count(DISTINCT tableoid) FROM cooking_log") == tiers.sql(
        Tier.PROD, "SELECT count(DISTINCT tableoid) FROM cooking_log"
    )
    q = "SELECT count(*) || ' ' || count(DISTINCT username) || ' ' || count(DISTINCT api_token) FROM users"
    assert tiers.sql(Tier.STG, q) == tiers.sql(Tier.PROD, q)  # unique, non-null, as many
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM users WHERE username !~ '^[a-z]+_[a-z]+_[0-9a-f]{10}$'") == "0"
    shape = "SELECT string_agg(DISTINCT char_length(api_token)::text, ',') FROM users"
    assert tiers.sql(Tier.STG, shape) == tiers.sql(Tier.PROD, shape)  # tokens as long as PROD's
    stg_users = set(tiers.sql(Tier.STG, "SELECT string_agg(username || ' ' || api_token, ',') FROM users").split(","))
    prod_users = tiers.sql(Tier.PROD, "SELECT string_agg(username || ' ' || api_token, ',') FROM users").split(",")
    assert not stg_users & set(prod_users)
    constraints = (
        "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint k JOIN pg_namespace n ON "
        "n.oid = k.connamespace WHERE convalidated AND contype IN ('c', 'u', 'f', 'p') AND nspname <> 'dbguard'"
    )
    assert tiers.sql(Tier.STG, constraints) == tiers.sql(Tier.PROD, constraints)  # the CHECK on email included
