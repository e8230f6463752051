"""social_accounts: UNIQUE (provider, handle), an enum beside a unique personal handle."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from recipes.schema import PROVIDERS, SocialAccount


class SocialAccounts(SeedTable):
    model = SocialAccount

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "id": id,
            "user_id": f.ref("users"),
            "provider": f.choice(PROVIDERS),
            "handle": f.unique_username(id),
        }


SEED = SocialAccounts()
