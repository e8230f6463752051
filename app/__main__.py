"""The example app's entry point (the `app` component): `python -m app summary --user ID` shows that
user's projects with their open and done tasks; `python -m app add-task` adds a task to one of them.

It reaches its database only through app/database.py, so the guard decides which tier it sees, and it
connects as the `app` component's role: a user sees and changes only their own projects (row-level
security on projects). The worker (`python -m app.worker`) is the other component.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.database import session
from app.models import Project, Task, User


def summary(s: Session, limit: int) -> list[tuple[str, str, int, int]]:
    """(project, owner, open tasks, done tasks) for the visible projects with the most open tasks."""
    done = func.count(case((Task.status == "done", 1)))
    query = (
        select(Project.name, User.full_name, func.count(Task.id) - done, done)
        .join(User, Project.owner_id == User.id)
        .outerjoin(Task, Task.project_id == Project.id)
        .group_by(Project.id, User.full_name)
        .order_by((func.count(Task.id) - done).desc(), Project.name)
        .limit(limit)
    )
    return [(str(a), str(b), int(c), int(d)) for a, b, c, d in s.execute(query).all()]


def add_task(s: Session, project_id: int, title: str, assignee_id: int | None = None) -> int:
    """A new task in one of the acting user's projects; its id. LookupError when no such project is visible."""
    if s.get(Project, project_id) is None:
        raise LookupError(f"no project {project_id} of yours")
    task = Task(project_id=project_id, title=title, assignee_id=assignee_id)
    s.add(task)
    s.flush()
    return task.id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("summary", help="open and done tasks per project of one user")
    show.add_argument("--user", type=int, required=True, help="the id of the user the app acts for")
    show.add_argument("--limit", type=int, default=10)
    add = commands.add_parser("add-task", help="add a task to one of the user's projects")
    add.add_argument("--user", type=int, required=True, help="the id of the user the app acts for")
    add.add_argument("--project", type=int, required=True)
    add.add_argument("--title", required=True)
    add.add_argument("--assignee", type=int, help="a user id; the worker tells them about the task")
    args = parser.parse_args(argv)
    with session(user_id=args.user) as s:
        if args.command == "summary":
            rows = summary(s, args.limit)
            for project, owner, open_tasks, done_tasks in rows:
                print(f"{project:<40} {owner:<28} open {open_tasks:>4}  done {done_tasks:>4}")
            if not rows:
                print(f"user {args.user} has no projects (each user sees only their own)")
            return 0
        try:
            task_id = add_task(s, args.project, args.title, args.assignee)
        except LookupError as exc:
            print(f"{exc} (user {args.user})", file=sys.stderr)
            return 1
        s.commit()
        print(f"task {task_id} added")
    return 0


if __name__ == "__main__":
    sys.exit(main())
