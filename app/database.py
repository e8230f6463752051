"""The app's own database access: an engine and sessions for the tier and component this process runs as.

The tier: APP_ENV=int|stg|prod (or USE_STG_DATABASE=1 / USE_PROD_DATABASE=1); always INT under
pytest. The component: `app` (python -m app) or `worker` (python -m app.worker), as listed in
[tool.dbguard] components; each connects as its own login role, which `invoke db.roles --env <tier>`
makes with exactly the privileges the ownership matrix in app/models.py grants it. The first use passes
the engine's guard (dbguard.runtime): the tier badge and masked target are printed once, the database's
tier stamp is checked, one audit line is written. PROD opens only for a human who types its name at a
terminal, or for a process started with ALLOW_PROD_DATABASE=<prod database name> in its real environment
(never in .env); its components' passwords come from PROD_<COMPONENT>_DATABASE_PASSWORD.
"""

from __future__ import annotations

from functools import cache

from dbguard.runtime import AppDatabase, open_app_database
from sqlalchemy.orm import Session


@cache
def database(component: str = "app") -> AppDatabase:
    """This process's cleared database, reached as `component`'s role (opened on first use, then kept)."""
    return open_app_database(component)


def session(component: str = "app", *, user_id: object | None = None) -> Session:
    """A new ORM session as `component`: `with session(user_id=ann.id) as s: ...`.

    With `user_id`, each transaction acts for that user: the tables with row-level security show and
    change only that user's rows (without one, they show none).
    """
    return database(component).session(user_id)
