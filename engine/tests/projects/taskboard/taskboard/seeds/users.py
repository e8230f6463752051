"""users: people with a unique email, a name, maybe a phone and an address, and their preferences."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from taskboard.models import User

THEMES = ("light", "dark", "system")
LANGUAGES = ("en", "fr", "de", "es", "pt")


class Users(SeedTable):
    model = User

    def row(self, f: Fakes, id: int) -> Row:
        first, last = f.first_name(), f.last_name()
        return {
            "id": id,
            "email": f"{first}.{last}.{id}@{f.free_email_domain()}".lower(),  # unique by construction
            "full_name": f"{first} {last}",
            "phone": f.phone_number() if f.chance(0.7) else None,
            "address": f"{f.street_address()}, {f.city()}" if f.chance(0.5) else None,
            "last_login_ip": f.ipv4_public() if f.chance(0.8) else None,
            "preferences": {"theme": f.choice(THEMES), "language": f.choice(LANGUAGES), "digest": f.chance(0.3)},
            "created_at": f.past_datetime(),
        }


SEED = Users()
