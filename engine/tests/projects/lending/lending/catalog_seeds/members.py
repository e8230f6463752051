"""members: one library card each."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from lending.schema import Member


class Members(SeedTable):
    model = Member

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "id": id,
            "card_email": f"card{id}@{f.free_email_domain()}",
            "display_name": f.name(),
            "mobile": f.phone_number() if f.chance(0.6) else None,
            "joined_on": f.date_near(days=100),
        }


SEED = Members()
