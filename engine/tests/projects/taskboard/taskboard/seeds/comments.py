"""comments: free text by a user on a task."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from taskboard.models import Comment


class Comments(SeedTable):
    model = Comment

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "id": id,
            "task_id": f.ref("tasks"),
            "author_id": f.ref("users"),
            "body": f.paragraph() if f.chance(0.3) else f.sentence(),
            "created_at": f.past_datetime(),
        }


SEED = Comments()
