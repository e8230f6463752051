"""Named scenarios: how many rows of each table. --scale multiplies them."""

from __future__ import annotations

SCENARIOS: dict[str, dict[str, int]] = {
    # the least that exercises every table and relation
    "minimal": {"users": 3, "projects": 2, "tasks": 6, "comments": 8},
    # a believable workspace for development and demos (db.reset seeds this)
    "demo": {"users": 200, "projects": 40, "tasks": 1_200, "comments": 3_000},
    # about a million rows, for load tests and the benchmark
    "load": {"users": 50_000, "projects": 20_000, "tasks": 400_000, "comments": 600_000},
}
