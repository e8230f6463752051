"""The app's own runtime access: one guarded SQLAlchemy engine per process, for the tier it runs on.

Invariant: the app's code only ever holds connections to a database the guard cleared for this
process — its tier chosen by APP_ENV (or USE_STG_DATABASE / USE_PROD_DATABASE), forced to INT under
pytest, its stamp checked, its audit line written, and PROD opened only for a human who typed the
database name at a terminal or a process explicitly allowed with ALLOW_PROD_DATABASE=<prod name>
(read from the real environment, never from .env; an agent still needs DB_HUMAN_CONSENT).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dbguard.cli.console import Output
from dbguard.cli.runner import TaskContext, run_task
from dbguard.guard.caller import Caller
from dbguard.guard.forced_int import app_tier
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.settings import Settings, load_settings

OPERATION = "app-connect"
ALLOW_PROD_VARIABLE = "ALLOW_PROD_DATABASE"


@dataclass(frozen=True)
class AppDatabase:
    """The cleared database of this process: its engine, tier and (masked) target."""

    engine: Engine
    tier: Tier
    target: Target
    component: str

    def session(self) -> Session:
        return Session(self.engine)


def open_app_database(
    component: str = "app",
    *,
    settings: Settings | None = None,
    caller: Caller | None = None,
    out: Output | None = None,
) -> AppDatabase:
    """Pass the guard once for this process; raise SystemExit with the task's exit code when refused."""
    settings = settings or load_settings()
    tier = app_tier(settings.environ)
    made: list[AppDatabase] = []

    def body(ctx: TaskContext) -> int:
        engine = ctx.target.sa_engine(pool_pre_ping=True)  # every connection through the guard's clearance
        made.append(AppDatabase(engine, ctx.tier, ctx.target, component))
        return 0

    code = run_task(
        OPERATION,
        tier.value,
        {"component": component},
        body,
        settings=settings,
        caller=caller,
        out=out,
        confirm=settings.environ.get(ALLOW_PROD_VARIABLE) or None,
    )
    if code or not made:
        raise SystemExit(code or 1)
    return made[0]
