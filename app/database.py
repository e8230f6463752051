"""The app's own database access: an engine and sessions for the tier this process runs on.

The tier: APP_ENV=int|stg|prod (or USE_STG_DATABASE=1 / USE_PROD_DATABASE=1); always INT under
pytest. The first use passes the engine's guard (dbguard.runtime): the tier badge and masked target
are printed once, the database's tier stamp is checked, one audit line is written. PROD opens only
for a human who types its name at a terminal, or for a process started with
ALLOW_PROD_DATABASE=<prod database name> in its real environment (never in .env).
"""

from __future__ import annotations

from functools import cache

from dbguard.runtime import AppDatabase, open_app_database
from sqlalchemy.orm import Session


@cache
def database(component: str = "app") -> AppDatabase:
    """This process's cleared database (opened on first use, then kept)."""
    return open_app_database(component)


def session() -> Session:
    """A new ORM session on this process's database: `with session() as s: ...`."""
    return database().session()
