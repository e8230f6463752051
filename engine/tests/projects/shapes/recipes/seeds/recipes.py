"""recipes: the key is left out (the server's gen_random_uuid() in the app; the runner makes it in a seed)."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from recipes.schema import DIFFICULTIES, Recipe

TAGS = ("vegetarian", "vegan", "quick", "dessert", "spicy", "gluten-free", "breakfast", "one-pot")


class Recipes(SeedTable):
    model = Recipe

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "author_id": f.ref("users"),
            "title": f.catch_phrase(),
            "difficulty": f.choice(DIFFICULTIES),
            "tags": [f.choice(TAGS) for _ in range(f.integer(0, 3))],
            "nutrition": {"kcal": f.integer(80, 1200), "protein_g": f.integer(0, 80)},
            "prep_minutes": f.integer(5, 60),
            "cook_minutes": f.integer(0, 240),
            "published_at": f.past_datetime() if f.chance(0.8) else None,
        }


SEED = Recipes()
