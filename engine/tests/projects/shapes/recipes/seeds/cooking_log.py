"""cooking_log: a partitioned table (by year, and a default partition), keyed by (id, cooked_on)."""

from __future__ import annotations

from dbguard.seeding.api import Fakes, Row, SeedTable

from recipes.schema import CookingLog


class CookingLogSeed(SeedTable):
    model = CookingLog

    def row(self, f: Fakes, id: int) -> Row:
        return {
            "id": id,
            # two years back and a few months ahead: the 2024, 2025 and 2026 partitions, and the default one
            "cooked_on": f.past_datetime().date() if f.chance(0.9) else f.date_near(days=120),
            "user_id": f.ref("users"),
            "recipe_id": f.ref("recipes"),
            "rating": f.integer(1, 5) if f.chance(0.7) else None,
            "notes": f.sentence() if f.chance(0.1) else None,
        }


SEED = CookingLogSeed()
