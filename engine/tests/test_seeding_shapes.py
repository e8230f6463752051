"""Seeding any schema: the shapes fixture (uuid keys made by the client and by the server, a composite key, a
table with no primary key, a foreign-key cycle, a self-reference, a second schema, enums, timestamps and times
without time zone, jsonb, arrays, a generated column, a partitioned table, UNIQUE personal columns) on real
PostgreSQL, and the failures a seed can meet, each blamed on the right party."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from dbguard.cli.runner import EXIT_FAILED, EXIT_OK
from dbguard.guard.tiers import Tier
from dbguard.migrations.schema import drop_app_schemas, raw, sa_connection, upgrade
from dbguard.seeding import reset, runner
from dbguard.seeding.api import Fakes
from dbguard.seeding.copy_types import CONVERTERS, TIMESTAMP, TIMESTAMPTZ, converters_for, settled
from dbguard.seeding.factories import create
from dbguard.seeding.keys import KeySpace, uuid_keys
from dbguard.seeding.runner import make_plan, seed_database, table_digests
from dbguard.settings import Settings
from psycopg import sql

from tests.support.clusters import ThrowawayCluster
from tests.support.project import SHAPES_ROOT
from tests.support.setup import Tiers, make_tiers, robot, run

UUID_V4 = "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"


@pytest.fixture(scope="module")
def shapes(
    tmp_path_factory: pytest.TempPathFactory, local_server: ThrowawayCluster, prod_server: ThrowawayCluster
) -> Iterator[tuple[Tiers, Settings]]:
    """One stamped tier set for the module, with settings for the shapes app."""
    tiers = make_tiers(tmp_path_factory.mktemp("shapes"), local_server, prod_server)
    yield tiers, replace(tiers.settings, root=SHAPES_ROOT)


def fresh(settings: Settings, tiers: Tiers, scenario: str | None, seed: int = 1) -> dict[str, str]:
    """INT rebuilt from empty at head (the second schema too), seeded with `scenario`; its table digests."""
    project = settings.project
    with sa_connection(tiers.target(Tier.INT)) as conn:
        with conn.begin():
            drop_app_schemas(conn, project.metadata)
            upgrade(settings, conn, "head")
            if scenario:
                seed_database(raw(conn), make_plan(project, scenario, seed=seed))
        return table_digests(raw(conn), project)


def counts(tiers: Tiers, tables: list[str]) -> dict[str, int]:
    return {t: int(tiers.sql(Tier.INT, f"SELECT count(*) FROM {t}")) for t in tables}


def test_every_shape_is_seeded_and_the_same_seed_gives_the_same_rows(shapes: tuple[Tiers, Settings]) -> None:
    tiers, settings = shapes
    first = fresh(settings, tiers, "demo", seed=3)
    other = fresh(settings, tiers, "demo", seed=4)
    second = fresh(settings, tiers, "demo", seed=3)
    assert first == second
    assert all(first[t] != other[t] for t in first), "every table depends on the seed"

    wanted = settings.project.scenarios["demo"]
    assert counts(tiers, list(wanted)) == wanted  # a second schema, a plain Table and a partitioned one included
    q = tiers.sql
    assert q(Tier.INT, "SELECT count(DISTINCT tableoid) FROM cooking_log") == "3"  # 2024, 2025 and 2026
    assert q(Tier.INT, f"SELECT count(*) FROM users WHERE id::text !~ '{UUID_V4}'") == "0"
    assert q(Tier.INT, f"SELECT count(*) FROM recipes WHERE id::text !~ '{UUID_V4}'") == "0"  # made for the module
    assert int(q(Tier.INT, "SELECT count(*) FROM users WHERE favorite_recipe_id IS NOT NULL")) > 50  # the cycle
    assert int(q(Tier.INT, "SELECT count(*) FROM users WHERE invited_by_id IS NOT NULL")) > 20  # the self-reference
    assert q(Tier.INT, "SELECT count(*) FROM recipes WHERE total_minutes <> prep_minutes + cook_minutes") == "0"
    assert int(q(Tier.INT, "SELECT count(*) FROM recipes WHERE cardinality(tags) > 0")) > 100
    assert q(Tier.INT, "SELECT count(DISTINCT difficulty) FROM recipes") == "3"  # an enum
    # timestamp without time zone: the seed API's aware moments stored as their UTC wall time
    assert (
        q(Tier.INT, "SELECT max(created_at) <= '2026-01-01 00:00' AND min(created_at) > '2023-12-31' FROM users") == "t"
    )

    metadata = settings.project.metadata
    keys = q(Tier.INT, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 AND convalidated")
    assert int(keys) == sum(len(t.foreign_key_constraints) for t in metadata.sorted_tables)  # all rebuilt, validated
    indexes = {i.name for t in metadata.sorted_tables for i in t.indexes}
    found = set(q(Tier.INT, "SELECT indexname FROM pg_indexes WHERE schemaname IN ('public', 'kitchen')").split())
    assert indexes <= found
    partition_indexes = q(
        Tier.INT, "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'cooking_log_%' AND indexdef LIKE '%(user_id)'"
    )
    assert partition_indexes == "4"  # the partitioned index was built again for every partition
    # sequences follow the seeded numbers, in the second schema and behind a partitioned table
    added = q(
        Tier.INT,
        "INSERT INTO kitchen.meal_plans (user_id, recipe_id, plan_date, meal_time, servings) "
        "SELECT author_id, id, '2026-01-02', '12:30', 2 FROM recipes LIMIT 1 RETURNING id",
    )
    assert added.splitlines()[0] == str(wanted["kitchen.meal_plans"] + 1)
    logged = q(
        Tier.INT,
        "INSERT INTO cooking_log (cooked_on, user_id, recipe_id) SELECT '2025-05-05', author_id, id FROM recipes "
        "LIMIT 1 RETURNING id",
    )
    assert logged.splitlines()[0] == str(wanted["cooking_log"] + 1)


def test_a_table_made_in_a_second_process_is_the_same(
    shapes: tuple[Tiers, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The largest table (recipe_ingredients: a composite key over uuid recipes, by f.size and f.nth) made in a
    forked process gives the same rows as made in this one."""
    tiers, settings = shapes
    from dbguard.seeding import offload

    monkeypatch.setattr(offload, "AVAILABLE", False)
    in_process = fresh(settings, tiers, "demo", seed=6)
    monkeypatch.setattr(offload, "AVAILABLE", True)
    monkeypatch.setattr(offload, "MIN_ROWS", 100)
    assert offload.worth_offloading(make_plan(settings.project, "demo").counts) == "recipe_ingredients"
    assert fresh(settings, tiers, "demo", seed=6) == in_process


def test_append_continues_every_key_and_waits_for_the_cycle(shapes: tuple[Tiers, Settings]) -> None:
    tiers, settings = shapes
    fresh(settings, tiers, "demo", seed=3)
    wanted = settings.project.scenarios["demo"]

    def append(seed: int) -> None:
        result = run(
            settings,
            "seed",
            "int",
            robot(),
            lambda ctx: reset.seed_task(ctx, scenario="demo", seed_value=seed, append=True),
        )
        assert result.code == EXIT_OK, result.text

    append(3)  # the same seed again: the new rows are numbered past the old ones, so no key repeats
    assert counts(tiers, list(wanted)) == {t: 2 * n for t, n in wanted.items()}
    cycle = (
        "SELECT condeferrable, convalidated FROM pg_constraint WHERE conname = 'fk_users_favorite_recipe_id_recipes'"
    )
    assert tiers.sql(Tier.INT, cycle) == "f|t"  # dropped while users were loaded, added back (validated) after recipes

    tiers.sql(Tier.INT, "ALTER TABLE users ALTER CONSTRAINT fk_users_favorite_recipe_id_recipes DEFERRABLE")
    append(5)  # a deferrable key is deferred, then checked once recipes are in
    assert counts(tiers, list(wanted)) == {t: 3 * n for t, n in wanted.items()}
    assert tiers.sql(Tier.INT, cycle) == "t|t"
    assert (
        tiers.sql(
            Tier.INT,
            "SELECT count(*) FROM users u LEFT JOIN recipes r ON r.id = u.favorite_recipe_id "
            "WHERE u.favorite_recipe_id IS NOT NULL AND r.id IS NULL",
        )
        == "0"
    )


def test_a_scenario_references_rows_it_does_not_seed(
    shapes: tuple[Tiers, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables left out of a scenario (reference data, rows seeded before) are referenced by the keys they hold."""
    tiers, settings = shapes
    fresh(settings, tiers, "minimal", seed=2)
    from recipes.seeds import SCENARIOS  # type: ignore[import-not-found]

    monkeypatch.setitem(SCENARIOS, "more", {"recipes": 30, "recipe_ingredients": 60, "cooking_log": 40})
    result = run(
        settings, "seed", "int", robot(), lambda ctx: reset.seed_task(ctx, scenario="more", seed_value=9, append=True)
    )
    assert result.code == EXIT_OK, result.text
    assert counts(tiers, ["users", "ingredients", "recipes", "cooking_log"]) == {
        "users": 3,
        "ingredients": 10,
        "recipes": 34,
        "cooking_log": 46,
    }
    authors = tiers.sql(Tier.INT, "SELECT count(DISTINCT author_id) FROM recipes")
    assert authors == "3"  # the three users seeded before (uuid keys read back), none made up


def test_a_table_in_another_schema_is_named_with_its_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    from dbguard.errors import Refused
    from dbguard.project import load_project

    project = load_project(SHAPES_ROOT)
    monkeypatch.setitem(project.load("scenarios"), "unqualified", {"users": 2, "meal_plans": 3})
    with pytest.raises(Refused) as refused:
        make_plan(project, "unqualified")
    assert "names tables the models do not have: meal_plans (name it kitchen.meal_plans)" in refused.value.one_line()


def test_an_engine_fault_is_never_blamed_on_the_seed_module(
    shapes: tuple[Tiers, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's quoted failure: the runner's own `max(id)` on a uuid key was reported as the module's fault."""
    tiers, settings = shapes
    fresh(settings, tiers, None)

    def old_sequence_step(conn, table, columns):  # type: ignore[no-untyped-def]
        conn.execute(sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(table)))  # what the runner used to run

    monkeypatch.setattr(runner, "set_sequences", old_sequence_step)
    result = run(settings, "seed", "int", robot(), lambda ctx: reset.seed_task(ctx, scenario="minimal"))
    assert result.code == EXIT_FAILED
    line = result.stderr.strip().splitlines()[-1]
    assert "the seed runner failed on table users, a fault in dbguard and not in recipes/seeds/users.py" in line
    assert "function max(uuid) does not exist" in line
    assert "fix recipes/seeds" not in line and "Traceback" not in result.text
    assert counts(tiers, ["users", "recipes"]) == {"users": 0, "recipes": 0}


def test_a_seed_modules_own_faults_name_the_module(
    shapes: tuple[Tiers, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiers, settings = shapes
    fresh(settings, tiers, None)
    from recipes.seeds import recipes as recipe_seeds  # type: ignore[import-not-found]
    from recipes.seeds import users as user_seeds  # type: ignore[import-not-found]

    original_user, original_recipe = user_seeds.Users.row, recipe_seeds.Recipes.row

    def same_username(self, f, id):  # type: ignore[no-untyped-def]
        return {**original_user(self, f, id), "username": "chef"}

    monkeypatch.setattr(user_seeds.Users, "row", same_username)
    result = run(settings, "seed", "int", robot(), lambda ctx: reset.seed_task(ctx, scenario="minimal"))
    assert result.code == EXIT_FAILED
    assert "seed module recipes/seeds/users.py broke a constraint on table users" in result.stderr
    assert "-> fix recipes/seeds/users.py" in result.stderr

    def own_uuid(self, f, id):  # type: ignore[no-untyped-def]
        return {**original_user(self, f, id), "id": uuid.uuid5(uuid.NAMESPACE_URL, f"user/{id}")}

    monkeypatch.setattr(user_seeds.Users, "row", own_uuid)
    result = run(settings, "seed", "int", robot(), lambda ctx: reset.seed_task(ctx, scenario="minimal"))
    assert result.code == EXIT_FAILED
    assert (
        "seed module recipes/seeds/users.py made a bad row for table users: row 1: its key id is UUID(" in result.stderr
    )
    assert "make the key with it, or leave it out -> fix recipes/seeds/users.py" in result.stderr

    monkeypatch.setattr(user_seeds.Users, "row", original_user)

    def with_generated(self, f, id):  # type: ignore[no-untyped-def]
        return {**original_recipe(self, f, id), "total_minutes": 5}

    monkeypatch.setattr(recipe_seeds.Recipes, "row", with_generated)
    result = run(settings, "seed", "int", robot(), lambda ctx: reset.seed_task(ctx, scenario="minimal"))
    assert result.code == EXIT_FAILED
    assert (
        "seed module recipes/seeds/recipes.py made a bad row for table recipes: column(s) total_minutes of table "
        "recipes are generated by the server: leave them out -> fix recipes/seeds/recipes.py" in result.stderr
    )
    assert counts(tiers, ["users"]) == {"users": 0}


def test_unique_helpers_hold_for_a_million_rows() -> None:
    n = 1_000_000
    f = Fakes(7, "users", {"users": KeySpace("users", 1, n, "id", uuid_keys(7, "users"))})
    usernames = {f.unique_username(i) for i in range(1, n + 1)}
    emails = {f.unique_email(i) for i in range(1, n + 1)}
    tokens = {f.token(i) for i in range(1, n + 1)}
    keys = {f.key(i) for i in range(1, n + 1)}
    assert len(usernames) == len(emails) == len(tokens) == len(keys) == n
    assert re.fullmatch(r"[a-z0-9._]+_\d+", f.unique_username(12))
    assert re.fullmatch(r"[a-z'.-]+\.[a-z'.-]+\.12@[a-z.]+", f.unique_email(12))
    assert re.fullmatch(r"[0-9a-f]{32}", f.token(12)) and len(f.token(12, length=20)) == 20
    assert all(re.fullmatch(UUID_V4, str(f.key(i))) for i in (1, 2, n))
    again = Fakes(7, "users", {"users": KeySpace("users", 1, n, "id", uuid_keys(7, "users"))})
    assert again.unique_username(99) == Fakes(7, "users", {}).unique_username(99)  # the same seed, the same value
    with pytest.raises(ValueError, match="16 to 48 hex digits"):
        f.token(1, length=8)


def test_datetimes_are_stored_as_the_column_type_wants() -> None:
    aware = datetime(2025, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert CONVERTERS[TIMESTAMP](aware) == datetime(2025, 6, 1, 10, 0)  # timestamp: UTC wall time, naive
    naive = datetime(2025, 6, 1, 12, 0)
    assert CONVERTERS[TIMESTAMPTZ](naive) == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)  # timestamptz: taken as UTC
    assert CONVERTERS[TIMESTAMPTZ](aware) is aware and CONVERTERS[TIMESTAMP](naive) is naive
    # converted row by row only where the first row's value is not what COPY takes as it is
    oids = [TIMESTAMPTZ, TIMESTAMP, TIMESTAMPTZ]
    kept = settled(oids, converters_for(oids), (aware, aware, None))
    assert [i for i, _ in kept] == [1, 2]  # an aware value for timestamptz needs nothing; None says nothing
    assert [i for i, _ in settled(oids, converters_for(oids), (naive, naive, naive))] == [0, 2]


def test_factories_reference_uuid_keys_and_fill_plain_tables(shapes: tuple[Tiers, Settings]) -> None:
    tiers, settings = shapes
    fresh(settings, tiers, "minimal", seed=2)
    project = settings.project
    users = set(tiers.sql(Tier.INT, "SELECT id FROM users").split())
    with sa_connection(tiers.target(Tier.INT)) as conn, conn.begin():
        made = create(raw(conn), "recipes", 2, project=project, title="Lentil soup")
        marks = create(raw(conn), "recipe_bookmarks", 3, project=project)
        more = create(raw(conn), "users", 2, project=project)
    assert [r["title"] for r in made] == ["Lentil soup", "Lentil soup"]
    assert all(re.fullmatch(UUID_V4, str(r["id"])) for r in made)
    assert all(r["total_minutes"] == r["prep_minutes"] + r["cook_minutes"] for r in made)  # as stored
    assert {str(r["author_id"]) for r in made} <= users
    assert len(marks) == 3 and {str(m["user_id"]) for m in marks} <= users  # a table with no key: as made
    assert len({u["email"] for u in more} | {u for u in tiers.sql(Tier.INT, "SELECT email FROM users").split()}) == 5
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM recipes") == "6"
