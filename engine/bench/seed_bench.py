"""Seeding benchmark: the project's runner on the 'load' scenario against the naive way.

The naive way is what a seed script usually looks like: Faker with default settings, one call
per value, SQLAlchemy ORM objects, `session.add_all`, `commit`. Both run in this one process on
the embedded cluster; the naive way on a 2% sample of the same tables (it is that slow).

    python -m bench.seed_bench
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta

from dbguard.migrations.schema import drop_app_schemas, raw, sa_connection, upgrade
from dbguard.seeding.runner import make_plan, seed_database, table_digests
from dbguard.settings import load_settings
from faker import Faker
from sqlalchemy.orm import Session
from taskboard.models import TASK_STATUSES, Comment, Project, Task, User
from tests.support.project import FIXTURE_ROOT, PROJECT

from bench.common import Timer, machine, scratch_database

SAMPLE = 0.02


def runner_seed(settings, target, seed: int):  # type: ignore[no-untyped-def]
    plan = make_plan(PROJECT, "load", seed=seed)
    with sa_connection(target) as conn:
        with conn.begin():
            drop_app_schemas(conn)
            upgrade(settings, conn, "head")
        with Timer() as timer, conn.begin():
            seed_database(raw(conn), plan)
        digests = table_digests(raw(conn), PROJECT)
    return sum(plan.counts.values()), timer.seconds, digests


def naive_seed(settings, target, counts: dict[str, int]):  # type: ignore[no-untyped-def]
    fake = Faker()
    Faker.seed(1)
    rnd = random.Random(1)
    now = datetime.now(UTC)
    with sa_connection(target) as conn:
        with conn.begin():
            drop_app_schemas(conn)
            upgrade(settings, conn, "head")
        with Timer() as timer, Session(bind=conn, expire_on_commit=False) as session:
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
    settings = load_settings(FIXTURE_ROOT)
    with scratch_database(settings, "bench_seed_int") as target:
        rows, seconds, digests = runner_seed(settings, target, seed=7)
        _rows2, seconds2, digests2 = runner_seed(settings, target, seed=7)
        sample = {t: max(1, round(n * SAMPLE)) for t, n in make_plan(PROJECT, "load").counts.items()}
        naive_rows, naive_seconds = naive_seed(settings, target, sample)
    best = min(seconds, seconds2)
    runner_rate, naive_rate = rows / best, naive_rows / naive_seconds
    print(f"machine: {machine()}")
    print(
        f"runner : {rows:,} rows ('load', seed 7) in {best:.2f}s (runs: {seconds:.2f}s, {seconds2:.2f}s) "
        f"= {runner_rate:,.0f} rows/s"
    )
    print(
        f"naive  : {naive_rows:,} rows (Faker defaults + ORM add_all/commit, {SAMPLE:.0%} sample) in "
        f"{naive_seconds:.2f}s = {naive_rate:,.0f} rows/s"
    )
    print(f"ratio  : {runner_rate / naive_rate:.1f}x")
    deterministic = digests == digests2
    print(f"deterministic: {'yes' if deterministic else 'NO'} (per-table md5 equal across the two runs)")
    return 0 if deterministic else 1


if __name__ == "__main__":
    sys.exit(main())
