"""The example app's entry point: `python -m app summary` shows each project's open and done tasks.

It reaches its database only through app/database.py, so the guard decides which tier it sees.
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.database import session
from app.models import Project, Task, User


def summary(s: Session, limit: int) -> list[tuple[str, str, int, int]]:
    """(project, owner, open tasks, done tasks) for the projects with the most open tasks."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("summary", help="open and done tasks per project")
    show.add_argument("--limit", type=int, default=10)
    args = parser.parse_args(argv)
    with session() as s:
        for project, owner, open_tasks, done_tasks in summary(s, args.limit):
            print(f"{project:<40} {owner:<28} open {open_tasks:>4}  done {done_tasks:>4}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
