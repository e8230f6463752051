"""The example's second component: `python -m app.worker` tells each task's assignee about the task, once.

It connects as the `worker` component's role (app/database.py), which may only read `users` and `tasks`
and read and write its own queue, `notification_jobs` (see the matrix in app/models.py). What always
holds, however many workers run at once: each (task, assignee) pair gets one job and is notified once
per job. New assignments become jobs by one INSERT ... SELECT that skips pairs already queued (the
unique key settles races between workers); a worker claims the oldest queued jobs with
SELECT ... FOR UPDATE SKIP LOCKED, so two workers never hold the same job, and marks them done in the
same transaction: a worker killed mid-batch leaves its jobs queued for the next one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.database import session

COMPONENT = "worker"

ENQUEUE = text(
    """
    INSERT INTO notification_jobs (task_id, assignee_id)
    SELECT t.id, t.assignee_id FROM tasks t
    WHERE t.assignee_id IS NOT NULL AND t.status <> 'done'
      AND NOT EXISTS (SELECT 1 FROM notification_jobs j WHERE j.task_id = t.id AND j.assignee_id = t.assignee_id)
    ORDER BY t.id  -- workers queueing at once meet the same keys in the same order: no deadlock
    ON CONFLICT (task_id, assignee_id) DO NOTHING
    """
)
CLAIM = text(
    """
    SELECT j.id, j.task_id, j.assignee_id, u.email, t.title
    FROM notification_jobs j JOIN tasks t ON t.id = j.task_id JOIN users u ON u.id = j.assignee_id
    WHERE j.state = 'queued'
    ORDER BY j.id
    LIMIT :batch
    FOR UPDATE OF j SKIP LOCKED
    """
)
FINISH = text("UPDATE notification_jobs SET state = 'done', done_at = now() WHERE id = ANY(:ids)")


@dataclass(frozen=True)
class Job:
    id: int
    task_id: int
    assignee_id: int
    email: str
    title: str


Notify = Callable[[Job], None]


def log_notification(job: Job) -> None:
    """The example's stand-in for sending mail: one line, without the address."""
    print(f"job {job.id}: told user {job.assignee_id} about task {job.task_id}")


def enqueue(s: Session) -> int:
    """Queue a job for every assigned, unfinished task whose assignee has none yet; the number queued."""
    return int(s.execute(ENQUEUE).rowcount or 0)  # type: ignore[attr-defined]


def work_batch(s: Session, notify: Notify, batch: int = 100) -> int:
    """Claim up to `batch` queued jobs no other worker holds, notify each, mark them done; the number done.

    One transaction: the claim's row locks last until the jobs are marked done (or rolled back).
    """
    jobs = [Job(int(i), int(t), int(a), str(e), str(title)) for i, t, a, e, title in s.execute(CLAIM, {"batch": batch})]
    for job in jobs:
        notify(job)
    if jobs:
        s.execute(FINISH, {"ids": [job.id for job in jobs]})
    return len(jobs)


def run(notify: Notify = log_notification, *, batch: int = 100, poll: float = 1.0, once: bool = False) -> int:
    """Queue and work jobs until stopped (or, with `once`, until the queue is empty); the number done."""
    done = 0
    with session(COMPONENT) as s:
        while True:
            with s.begin():
                enqueue(s)
            with s.begin():
                worked = work_batch(s, notify, batch)
            done += worked
            if worked:
                continue
            if once:
                return done
            time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="stop when the queue is empty")
    parser.add_argument("--batch", type=int, default=100, help="jobs claimed per transaction")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between looks at an empty queue")
    args = parser.parse_args(argv)
    try:
        done = run(batch=args.batch, poll=args.poll, once=args.once)
    except KeyboardInterrupt:
        return 130
    print(f"{done} notification(s) sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
