"""Seed modules of the lockfree fixture app (one per table) and its scenarios."""

SCENARIOS: dict[str, dict[str, int]] = {
    "minimal": {"customers": 3, "orders": 6},
    "demo": {"customers": 200, "orders": 1_500},
    "load": {"customers": 20_000, "orders": 300_000},
}
