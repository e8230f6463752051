"""projects: owned by a user, with a catchy name and sometimes a description."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from app.models import Project


class Projects(SeedTable):
    model = Project

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "id": id,
            "owner_id": f.ref("users"),
            "name": f.catch_phrase(),
            "description": f.paragraph() if f.chance(0.6) else None,
            "created_at": f.past_datetime(),
        }


SEED = Projects()
