"""recipes: a recipe manager with the schema shapes real apps have, the engine tests' third fixture app."""
