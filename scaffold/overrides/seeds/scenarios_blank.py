"""Named scenarios: how many rows of each table. --scale multiplies them."""

from __future__ import annotations

SCENARIOS: dict[str, dict[str, int]] = {
    # the least that exercises every table and relation
    "minimal": {},
    # a believable data set for development and demos (db.reset seeds this)
    "demo": {},
    # a large data set for load tests
    "load": {},
}
