"""tasks: in a project, maybe assigned, with a status, a priority, a due date and a completion time."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from taskboard.models import TASK_STATUSES, Task


class Tasks(SeedTable):
    model = Task

    def row(self, f: Fakes, id: int) -> Row:
        created = f.past_datetime()
        status = f.choice(TASK_STATUSES)
        return {
            "id": id,
            "project_id": f.ref("projects"),
            "assignee_id": f.ref("users") if f.chance(0.8) else None,
            "title": f.sentence(),
            "status": status,
            "priority": f.integer(1, 4),
            "due_date": f.date_near() if f.chance(0.5) else None,
            "completed_at": f.after(created) if status == "done" else None,
            "created_at": created,
        }


SEED = Tasks()
