"""Seeding benchmark: the runner on the 'load' scenarios against the naive way, interleaved rounds.

The example (the taskboard fixture, the template's example schema): the runner's 1,070,000 rows against
what a seed script usually looks like: Faker with default settings, one call per value, SQLAlchemy ORM
objects, `session.add_all`, `commit`, on a 2% sample of the same tables (it is that slow). The shapes
fixture (a recipe manager: uuid keys, a foreign-key cycle, a partitioned table, enums, arrays, a
second schema): the runner's rate on its 1,465,000 rows. Rounds alternate: runner, naive, shapes,
runner, naive, shapes, ... (after one untimed warm-up of each); the fastest run of each side is reported
(on a busy machine the fastest is the one least disturbed by others) beside the median.

    python -m bench.seed_bench [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from datetime import UTC, datetime, timedelta

from dbguard.migrations.schema import APP_SCHEMAS, drop_app_schemas, raw, sa_connection, upgrade
from dbguard.project import load_project
from dbguard.seeding.runner import make_plan, seed_database, table_digests
from dbguard.settings import Settings, load_settings
from faker import Faker
from psycopg import sql
from sqlalchemy.orm import Session
from tests.support.project import FIXTURE_ROOT, PROJECT, SHAPES_ROOT

from bench.common import Timer, machine, scratch_database

SAMPLE = 0.02


def rebuild(settings: Settings, target, extra_schemas: tuple[str, ...] = ()) -> None:  # type: ignore[no-untyped-def]
    with sa_connection(target) as conn, conn.begin():
        drop_app_schemas(conn)
        for schema in extra_schemas:  # the app's other schemas, where a reset does not drop them yet
            if schema not in APP_SCHEMAS:
                raw(conn).execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        upgrade(settings, conn, "head")


def runner_seed(settings: Settings, target, seed: int) -> tuple[int, float, dict[str, str]]:  # type: ignore[no-untyped-def]
    project = settings.project
    schemas = tuple({t.schema for t in project.metadata.sorted_tables if t.schema})
    rebuild(settings, target, schemas)
    plan = make_plan(project, "load", seed=seed)
    with sa_connection(target) as conn:
        with Timer() as timer, conn.begin():
            seed_database(raw(conn), plan)
        digests = table_digests(raw(conn), project)
    return sum(plan.counts.values()), timer.seconds, digests


def naive_seed(settings: Settings, target, counts: dict[str, int]) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    from taskboard.models import TASK_STATUSES, Comment, Project, Task, User

    fake = Faker()
    Faker.seed(1)
    rnd = random.Random(1)
    now = datetime.now(UTC)
    rebuild(settings, target)
    with sa_connection(target) as conn, Timer() as timer, Session(bind=conn, expire_on_commit=False) as session:
        users = [
            User(
                email=f"{i}.{fake.email()}",
                full_name=fake.name(),
                phone=fake.phone_number(),
                address=fake.address(),
                last_login_ip=fake.ipv4_public(),
                preferences={"theme": rnd.choice(["light", "dark"])},
                created_at=fake.date_time_between("-2y", tzinfo=UTC),
            )
            for i in range(counts["users"])
        ]
        session.add_all(users)
        session.commit()
        user_ids = [u.id for u in users]
        projects = [
            Project(
                owner_id=rnd.choice(user_ids),
                name=fake.catch_phrase(),
                description=fake.paragraph(),
                created_at=fake.date_time_between("-2y", tzinfo=UTC),
            )
            for _ in range(counts["projects"])
        ]
        session.add_all(projects)
        session.commit()
        project_ids = [p.id for p in projects]
        tasks = [
            Task(
                project_id=rnd.choice(project_ids),
                assignee_id=rnd.choice(user_ids),
                title=fake.sentence(),
                status=rnd.choice(TASK_STATUSES),
                priority=rnd.randint(1, 4),
                due_date=fake.date_this_year(),
                created_at=now - timedelta(days=rnd.randint(0, 700)),
            )
            for _ in range(counts["tasks"])
        ]
        session.add_all(tasks)
        session.commit()
        task_ids = [t.id for t in tasks]
        comments = [
            Comment(
                task_id=rnd.choice(task_ids),
                author_id=rnd.choice(user_ids),
                body=fake.paragraph(),
                created_at=fake.date_time_between("-2y", tzinfo=UTC),
            )
            for _ in range(counts["comments"])
        ]
        session.add_all(comments)
        session.commit()
    return sum(counts.values()), timer.seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each side (after one warm-up)")
    rounds = max(1, parser.parse_args().rounds)
    settings = load_settings(FIXTURE_ROOT)
    shapes = load_settings(SHAPES_ROOT).with_values(EMBEDDED_PG_DIR=str(settings.path("EMBEDDED_PG_DIR")))
    load_project(SHAPES_ROOT)  # puts the shapes app on sys.path
    sample = {t: max(1, round(n * SAMPLE)) for t, n in make_plan(PROJECT, "load").counts.items()}
    ours, naive, shaped = [], [], []
    digests: dict[str, list[dict[str, str]]] = {"example": [], "shapes": []}
    print(f"machine: {machine()}; load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with scratch_database(settings, "bench_seed_int") as target, scratch_database(shapes, "bench_seed_shapes") as s:
        for round_ in range(rounds + 1):  # round 0 warms the caches and is not counted
            rows, seconds, digest = runner_seed(settings, target, seed=7)
            naive_rows, naive_seconds = naive_seed(settings, target, sample)
            shape_rows, shape_seconds, shape_digest = runner_seed(shapes, s, seed=7)
            if round_:
                ours.append(seconds)
                naive.append(naive_seconds)
                shaped.append(shape_seconds)
                digests["example"].append(digest)
                digests["shapes"].append(shape_digest)

    def line(name: str, count: int, times: list[float], what: str) -> float:
        runs = ", ".join(f"{x:.2f}" for x in times)
        fastest, middle = min(times), statistics.median(times)
        print(
            f"{name}: {count:,} rows ({what}) in {fastest:.2f}s (fastest; median {middle:.2f}s; runs: {runs}) "
            f"= {count / fastest:,.0f} rows/s (median {count / middle:,.0f})"
        )
        return count / fastest

    runner_rate = line("runner ", rows, ours, "'load', seed 7")
    naive_rate = line("naive  ", naive_rows, naive, f"Faker defaults + ORM add_all/commit, {SAMPLE:.0%} sample")
    medians = (rows / statistics.median(ours)) / (naive_rows / statistics.median(naive))
    print(f"ratio  : {runner_rate / naive_rate:.1f}x (fastest against fastest; {medians:.1f}x median against median)")
    line("shapes ", shape_rows, shaped, "'load', seed 7")
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    deterministic = all(all(d == runs_[0] for d in runs_) for runs_ in digests.values())
    print(f"deterministic: {'yes' if deterministic else 'NO'} (per-table md5 equal across the runs, both schemas)")
    return 0 if deterministic else 1


if __name__ == "__main__":
    sys.exit(main())
