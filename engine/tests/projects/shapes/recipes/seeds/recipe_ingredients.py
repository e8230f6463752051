"""recipe_ingredients: a composite key (recipe, position), spread over the recipes with f.size and f.nth."""

from __future__ import annotations

from decimal import Decimal

from dbguard.seeding.api import Fakes, Row, SeedTable

from recipes.schema import UNITS, RecipeIngredient


class RecipeIngredients(SeedTable):
    model = RecipeIngredient

    def row(self, f: Fakes, id: int) -> Row:
        recipes = f.size("recipes")
        return {  # (row % recipes, row // recipes) differs for every row: the key never repeats
            "recipe_id": f.nth("recipes", (id - 1) % recipes),
            "position": (id - 1) // recipes + 1,
            "ingredient_id": f.ref("ingredients"),
            "quantity": Decimal(f.integer(1, 5000)) / 10,
            "unit": f.choice(UNITS),
        }


SEED = RecipeIngredients()
