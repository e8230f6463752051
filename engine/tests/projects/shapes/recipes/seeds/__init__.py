"""Seed modules of the recipes fixture app (one per table) and its scenarios.

A table in another schema is named with its schema (`kitchen.meal_plans`), here and in `f.ref`.
"""

SCENARIOS: dict[str, dict[str, int]] = {
    "minimal": {
        "users": 3,
        "recipes": 4,
        "ingredients": 10,
        "recipe_ingredients": 12,
        "recipe_bookmarks": 5,
        "social_accounts": 3,
        "kitchen.meal_plans": 4,
        "cooking_log": 6,
    },
    "demo": {
        "users": 200,
        "recipes": 600,
        "ingredients": 300,
        "recipe_ingredients": 4_000,
        "recipe_bookmarks": 1_500,
        "social_accounts": 250,
        "kitchen.meal_plans": 1_200,
        "cooking_log": 3_000,
    },
    "load": {
        "users": 50_000,
        "recipes": 100_000,
        "ingredients": 5_000,
        "recipe_ingredients": 600_000,
        "recipe_bookmarks": 200_000,
        "social_accounts": 60_000,
        "kitchen.meal_plans": 150_000,
        "cooking_log": 300_000,
    },
}
