"""users: uuid keys made here (client-side), unique email, username and token, a self-reference and a cycle."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from recipes.schema import ROLES, User


class Users(SeedTable):
    model = User

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "id": f.key(id),  # a uuid: the same for the same --seed, so other tables can reference it
            "email": f.unique_email(id),
            "username": f.unique_username(id),
            "api_token": f.token(id),
            "display_name": f.name(),
            "role": f.choice(ROLES),
            "invited_by_id": f.ref("users") if f.chance(0.3) else None,  # a self-reference
            "favorite_recipe_id": f.ref("recipes") if f.chance(0.5) else None,  # the cycle: recipes come later
            "created_at": f.past_datetime(),  # timestamp without time zone: the runner makes it naive
        }


SEED = Users()
