"""Roles survive the other tasks (issue 13 item 5): a reset, a restore, a refresh and the ladder's clone keep
the ownership matrix's owners, grants and policies, and a replaced database keeps its database-level grants."""

from __future__ import annotations

import pytest
from dbguard.backup.restore import restore_task
from dbguard.cli import commands
from dbguard.guard.tiers import Tier
from dbguard.refresh.staging import refresh_task
from dbguard.roles.apply import roles_task
from dbguard.roles.drift import check_roles
from dbguard.seeding import reset

from tests.support.setup import Tiers, robot, run
from tests.test_refresh import fill
from tests.test_roles import finding, grants, migrate


def component_roles(tier: Tier) -> tuple[str, ...]:
    return tuple(f"app_{tier.value}_{r}" for r in ("app", "worker", "app_login", "worker_login"))


TABLES = ("users", "projects", "tasks", "comments")


def apply_roles(tiers: Tiers, tier: Tier) -> None:
    confirm = {"confirm": tiers.names[Tier.PROD]} if tier is Tier.PROD else {}
    result = run(tiers.settings, "roles", tier.value, robot(), roles_task, **confirm)
    assert result.code == 0, result.text


def ok(result) -> None:  # type: ignore[no-untyped-def]
    assert result.code == 0, result.text


def privileges(tiers: Tiers, tier: Tier) -> str:
    """What each component role may do on each table, and the row-level security flags: comparable across servers
    and tiers (each tier's roles carry its name: app_<tier>_app is written app_T_app)."""
    cells = " UNION ALL ".join(
        f"SELECT '{r} {t} ' || concat_ws(',', "
        + ", ".join(
            f"CASE WHEN has_table_privilege('{r}', '{t}', '{p}') THEN '{p}' END"
            for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
        )
        + ") AS x"
        for r in component_roles(tier)
        for t in TABLES
    )
    rls = "SELECT relname || ' rls ' || relrowsecurity::text || relforcerowsecurity::text FROM pg_class "
    rls += f"WHERE relname IN {TABLES!r}"
    policies = (
        "SELECT 'policy ' || tablename || ' ' || policyname || ' ' || roles::text || ' ' || qual FROM pg_policies"
    )
    policies += " WHERE policyname = 'dbguard_own_rows'"
    found = tiers.sql(
        tier, f"SELECT string_agg(x, E'\\n' ORDER BY x) FROM ({cells} UNION ALL {rls} UNION ALL {policies}) s"
    )
    return found.replace(f"app_{tier.value}_", "app_T_")


@pytest.fixture
def stg(tiers: Tiers) -> Tiers:
    migrate(tiers, Tier.STG)
    apply_roles(tiers, Tier.STG)
    # a database-level grant of the team's own, and PUBLIC's CONNECT taken away: the swap must carry both
    tiers.local.psql(
        "postgres", "DO $$ BEGIN CREATE ROLE team_analyst NOLOGIN; EXCEPTION WHEN duplicate_object THEN END $$"
    )
    db = tiers.names[Tier.STG]
    tiers.sql(Tier.STG, f"REVOKE CONNECT ON DATABASE {db} FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO team_analyst")
    return tiers


def database_acl(tiers: Tiers, tier: Tier) -> str:
    return tiers.sql(
        tier,
        "SELECT string_agg(a::text, ',' ORDER BY a::text) FROM pg_database, unnest(datacl) a "
        "WHERE datname = current_database()",
    )


def no_drift(tiers: Tiers, tier: Tier) -> None:
    found = check_roles(tiers.settings)
    assert finding(found, tier, "match the ownership matrix").ok, found
    assert finding(found, tier, "own nothing").ok, found


def test_a_stg_reset_keeps_the_grants_policies_and_database_grants(stg: Tiers) -> None:
    before, acl = grants(stg, Tier.STG), database_acl(stg, Tier.STG)
    assert "team_analyst=c/" in acl and "app_stg_worker=c/" in acl
    ok(run(stg.settings, "reset", "stg", robot(), lambda ctx: reset.reset_task(ctx, seed=False)))
    assert stg.local.psql(stg.names[Tier.STG] + "__previous", "SELECT 1") == "1"  # it really was swapped
    assert grants(stg, Tier.STG) == before
    assert database_acl(stg, Tier.STG) == acl
    no_drift(stg, Tier.STG)


def test_an_int_reset_in_place_keeps_the_grants(tiers: Tiers) -> None:
    migrate(tiers, Tier.INT)
    apply_roles(tiers, Tier.INT)
    before, acl = privileges(tiers, Tier.INT), database_acl(tiers, Tier.INT)
    assert "app_T_worker users SELECT\n" in before
    ok(run(tiers.settings, "reset", "int", robot(), lambda ctx: reset.reset_task(ctx, seed=False)))
    assert privileges(tiers, Tier.INT) == before and database_acl(tiers, Tier.INT) == acl
    owners = "SELECT string_agg(DISTINCT pg_get_userbyid(relowner), ',') FROM pg_class WHERE relname IN "
    assert tiers.sql(Tier.INT, owners + f"{TABLES!r}") == "app_int_migrator"
    no_drift(tiers, Tier.INT)


def test_a_reset_of_a_database_without_roles_adds_none(tiers: Tiers) -> None:
    migrate(tiers, Tier.STG)
    ok(run(tiers.settings, "reset", "stg", robot(), lambda ctx: reset.reset_task(ctx, seed=False)))
    assert "app_stg_migrator" not in grants(tiers, Tier.STG)


def test_restores_keep_the_grants(stg: Tiers) -> None:
    migrate(stg, Tier.INT)
    apply_roles(stg, Tier.INT)
    for tier in (Tier.STG, Tier.INT):  # STG: built aside and swapped (undo point); INT: swapped, old one dropped
        before, acl = grants(stg, tier), database_acl(stg, tier)
        ok(run(stg.settings, "backup", tier.value, robot(), commands.backup))
        ok(run(stg.settings, "restore", tier.value, robot(), lambda ctx: restore_task(ctx, "latest")))
        assert grants(stg, tier) == before, tier
        assert database_acl(stg, tier) == acl, tier
        no_drift(stg, tier)


def test_a_refresh_gives_stg_the_same_permissions_as_prod(tiers: Tiers) -> None:
    fill(tiers, Tier.PROD, seed_value=41, scenario="minimal")
    fill(tiers, Tier.STG, seed_value=42, scenario="minimal")
    apply_roles(tiers, Tier.PROD)
    apply_roles(tiers, Tier.STG)
    before = privileges(tiers, Tier.STG)
    assert before == privileges(tiers, Tier.PROD)
    assert "app_T_worker users SELECT\n" in before + "\n"
    assert "app_T_app_login tasks SELECT,INSERT,UPDATE,DELETE" in before
    ok(run(tiers.settings, "refresh-staging", "stg", robot(), refresh_task))
    assert privileges(tiers, Tier.STG) == privileges(tiers, Tier.PROD) == before
    no_drift(tiers, Tier.STG)


def test_the_ladders_clone_of_stg_has_stgs_grants(stg: Tiers) -> None:
    from dbguard.guard.policy import CLONE
    from dbguard.ladder.rungs import _clone, _scratch_on

    from tests.support.setup import cleared

    clearance = cleared(stg.settings, "ladder", Tier.INT)
    source = clearance.db(CLONE)
    query = (
        "SELECT string_agg(format('%s %s %s', r, t, has_table_privilege(r, t, 'INSERT')), ', ' ORDER BY r, t) "
        "FROM unnest(ARRAY['app_stg_app', 'app_stg_worker']) r, unnest(ARRAY['users', 'tasks']) t"
    )
    with _scratch_on(source, source.dbname, "ladder") as clone:
        _clone(stg.settings, source, clone)
        with clone.connect(read_only=True) as conn:
            row = conn.execute(query).fetchone()
            policy = conn.execute(
                "SELECT roles::text FROM pg_policies WHERE policyname = 'dbguard_own_rows'"
            ).fetchone()
    assert row is not None and row[0] == stg.sql(Tier.STG, query)
    assert "app_stg_worker users f" in row[0] and "app_stg_worker tasks t" in row[0]
    assert policy == ("{app_stg_app}",)
