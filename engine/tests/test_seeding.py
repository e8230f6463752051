"""Seed modules and the seed runner on real PostgreSQL: scenarios, determinism, refusals, factories."""

from __future__ import annotations

import pytest
from dbguard.cli.runner import EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from dbguard.errors import Refused
from dbguard.guard.connect import connect
from dbguard.guard.tiers import Tier
from dbguard.migrations.schema import raw, sa_connection
from dbguard.seeding.factories import create
from dbguard.seeding.runner import make_plan, seed_database, table_digests
from sqlalchemy import func, select
from taskboard.models import Comment, Project, Task, User
from taskboard.seeds.scenarios import SCENARIOS

from tests.support.project import FIXTURE_ROOT, PROJECT
from tests.support.setup import Tiers, robot, run


def seed_fresh(target, scenario: str, seed: int, scale: float = 1.0) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from dbguard.migrations.schema import drop_app_schemas, upgrade
    from dbguard.settings import load_settings

    with sa_connection(target) as conn:
        with conn.begin():
            drop_app_schemas(conn)
            upgrade(load_settings(FIXTURE_ROOT), conn, "head")
            seed_database(raw(conn), make_plan(PROJECT, scenario, seed=seed, scale=scale))
        return table_digests(raw(conn), PROJECT)


def test_same_seed_gives_identical_tables_byte_for_byte(tiers: Tiers) -> None:
    target = tiers.target(Tier.INT)
    first = seed_fresh(target, "demo", seed=7)
    second = seed_fresh(target, "demo", seed=7)
    other = seed_fresh(target, "demo", seed=8)
    assert first == second
    assert all(first[t] != other[t] for t in first)


def test_scale_multiplies_row_counts_and_foreign_keys_hold(tiers: Tiers) -> None:
    target = tiers.target(Tier.INT)
    seed_fresh(target, "minimal", seed=3, scale=10)
    with connect(target) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SCENARIOS["minimal"]}  # type: ignore[index]
        # foreign keys were rebuilt and validated after the bulk load
        fks = conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated").fetchone()
        indexes = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).fetchone()
        nextval = conn.execute("SELECT nextval(pg_get_serial_sequence('users', 'id'))").fetchone()
    assert counts == {t: n * 10 for t, n in SCENARIOS["minimal"].items()}
    from taskboard.models import Base

    tables = Base.metadata.sorted_tables
    expected_fks = sum(len(t.foreign_key_constraints) for t in tables)
    expected_indexes = sum(len(t.indexes) + 1 + sum(1 for c in t.columns if c.unique) for t in tables)
    assert fks == (expected_fks,) and indexes == (expected_indexes,)
    assert nextval == (31,)  # sequences follow the seeded ids


def test_plan_refusals() -> None:
    with pytest.raises(Refused, match="unknown scenario 'huge': the scenarios are demo, load, minimal"):
        make_plan(PROJECT, "huge")
    for scale in (0, -2):
        with pytest.raises(Refused, match="scale must be a positive number"):
            make_plan(PROJECT, "demo", scale=scale)
    assert sum(make_plan(PROJECT, "load").counts.values()) >= 1_000_000


def test_seed_task_refusals(tiers: Tiers, int_target) -> None:  # type: ignore[no-untyped-def]
    from dbguard.seeding import reset

    def seed_body(**kw):  # type: ignore[no-untyped-def]
        return lambda ctx: reset.seed_task(ctx, **kw)

    result = run(tiers.settings, "seed", "prod", robot(), seed_body())
    assert result.code == EXIT_REFUSED and "PROD is never seeded: no flag opens it" in result.stderr

    result = run(tiers.settings, "seed", "int", robot(), seed_body(scenario="nope"))
    assert result.code == EXIT_REFUSED and "unknown scenario 'nope'" in result.stderr

    assert run(tiers.settings, "seed", "int", robot(), seed_body(scenario="minimal")).code == EXIT_OK
    result = run(tiers.settings, "seed", "int", robot(), seed_body(scenario="minimal"))
    assert result.code == EXIT_REFUSED
    assert "already holds rows (in users, projects, tasks, comments) -> pass --append" in result.stderr
    result = run(tiers.settings, "seed", "int", robot(), seed_body(scenario="minimal", append=True, seed_value=2))
    assert result.code == EXIT_OK
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users") == str(2 * SCENARIOS["minimal"]["users"])
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM comments c JOIN tasks t ON t.id = c.task_id") == str(
        2 * SCENARIOS["minimal"]["comments"]
    )

    with sa_connection(int_target) as conn, conn.begin():
        from dbguard.migrations.schema import downgrade

        downgrade(tiers.settings, conn, "0001")
    result = run(tiers.settings, "seed", "int", robot(), seed_body(append=True))
    assert result.code == EXIT_REFUSED
    assert "the schema is not at head: pending revision(s) 0002 -> invoke db.migrate --env int" in result.stderr


def test_a_broken_seed_module_names_itself_and_leaves_the_database_as_it_was(
    tiers: Tiers,
    int_target,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from dbguard.seeding import reset
    from taskboard.seeds import tasks

    def bad_row(self, f, id):  # type: ignore[no-untyped-def]
        return {**original(self, f, id), "priority": 9}  # violates ck_tasks_priority

    original = tasks.Tasks.row
    monkeypatch.setattr(tasks.Tasks, "row", bad_row)
    result = run(tiers.settings, "seed", "int", robot(), lambda ctx: reset.seed_task(ctx, scenario="minimal"))
    assert result.code == EXIT_FAILED
    assert "seed module taskboard/seeds/tasks.py broke a constraint on table tasks" in result.stderr
    assert "ck_tasks_priority" in result.stderr and "the database was left as it was before the seed" in result.stderr
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users") == "0"  # users were seeded first, then rolled back
    assert (
        tiers.sql(
            Tier.INT, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        == "10"
    )
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == "5"


def test_seeded_fixture_and_factories(seeded) -> None:  # type: ignore[no-untyped-def]
    session = seeded
    assert session.scalar(select(func.count()).select_from(User)) == SCENARIOS["minimal"]["users"]
    task = session.scalars(select(Task).order_by(Task.id)).first()
    assert task is not None and task.project.owner.email.endswith(
        f".{task.project.owner.id}@" + task.project.owner.email.split("@")[1]
    )
    conn = session.connection()
    users = create(raw(conn), "users", 2, project=PROJECT, full_name="Ann Lee")
    assert [u["full_name"] for u in users] == ["Ann Lee", "Ann Lee"] and users[0]["email"] != users[1]["email"]
    comments = create(raw(conn), "comments", 3, project=PROJECT)
    assert {c["author_id"] for c in comments} <= {u.id for u in session.scalars(select(User))} | {
        u["id"] for u in users
    }
    assert session.scalar(select(func.count()).select_from(Comment)) == SCENARIOS["minimal"]["comments"] + 3
    assert session.scalar(select(func.count()).select_from(Project)) == SCENARIOS["minimal"]["projects"]


def test_a_table_made_in_a_second_process_is_identical_and_its_errors_are_named(
    tiers: Tiers,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from dbguard.seeding import offload

    target = tiers.target(Tier.INT)
    monkeypatch.setattr(offload, "AVAILABLE", False)
    in_process = seed_fresh(target, "demo", seed=5)
    monkeypatch.setattr(offload, "AVAILABLE", True)
    monkeypatch.setattr(offload, "MIN_ROWS", 100)
    assert offload.worth_offloading(make_plan(PROJECT, "demo").counts) == "comments"
    assert seed_fresh(target, "demo", seed=5) == in_process

    from taskboard.seeds import comments

    original = comments.Comments.row

    def bad_row(self, f, id):  # type: ignore[no-untyped-def]
        if id > 5:  # the first rows are fine: the failure happens in the second process
            raise ValueError("no body for this comment")
        return original(self, f, id)

    monkeypatch.setattr(comments.Comments, "row", bad_row)
    from dbguard.seeding import reset

    tiers.sql(Tier.INT, "TRUNCATE users, projects, tasks, comments")
    result = run(tiers.settings, "seed", "int", robot(), lambda ctx: reset.seed_task(ctx, scenario="demo"))
    assert result.code == EXIT_FAILED
    assert (
        "seed module taskboard/seeds/comments.py made a bad row for table comments: row 6: ValueError: no body for "
        "this comment" in result.stderr
    )
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users") == "0"
