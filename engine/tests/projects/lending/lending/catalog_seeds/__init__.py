"""Seed modules of the lending fixture app (one per table) and its scenarios."""

SCENARIOS: dict[str, dict[str, int]] = {
    "minimal": {"members": 3, "books": 4, "loans": 5},
    "demo": {"members": 150, "books": 300, "loans": 900},
    "load": {"members": 20_000, "books": 30_000, "loans": 200_000},
}
