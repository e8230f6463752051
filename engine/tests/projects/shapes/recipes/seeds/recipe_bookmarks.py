"""recipe_bookmarks: a plain Table with no primary key."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from recipes.schema import recipe_bookmarks


class RecipeBookmarks(SeedTable):
    table = recipe_bookmarks

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "user_id": f.ref("users"),
            "recipe_id": f.ref("recipes"),
            "saved_at": f.past_datetime(),
            "note": f.sentence() if f.chance(0.2) else None,
        }


SEED = RecipeBookmarks()
