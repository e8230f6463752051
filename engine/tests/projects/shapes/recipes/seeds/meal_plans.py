"""kitchen.meal_plans: a table in a second schema, with a `time without time zone`."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from recipes.schema import MealPlan


class MealPlans(SeedTable):
    model = MealPlan

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "id": id,
            "user_id": f.ref("users"),
            "recipe_id": f.ref("recipes"),
            "plan_date": f.date_near(days=30),
            "meal_time": f.time_object(),
            "servings": f.integer(1, 6),
        }


SEED = MealPlans()
