"""ingredients: a unique name each."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from recipes.schema import Ingredient


class Ingredients(SeedTable):
    model = Ingredient

    def row(self, f: Fakes, id: int) -> Row:
        return {"id": id, "name": f.unique(f.word(), id, sep=" #")}


SEED = Ingredients()
