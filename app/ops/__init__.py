"""Guarded database operations: plain functions with no invoke or nox inside.

`tasks.py`, `noxfile.py`, `migrations/env.py` and the tests all call these.
"""
