"""The app's own runtime access: one guarded SQLAlchemy engine per process and component, for the tier it runs on.

Invariant: the app's code only ever holds connections to a database the guard cleared for this
process — its tier chosen by APP_ENV (or USE_STG_DATABASE / USE_PROD_DATABASE), forced to INT under
pytest, its stamp checked, its audit line written, and PROD opened only for a human who typed the
database name at a terminal or a process explicitly allowed with ALLOW_PROD_DATABASE=<prod name>
(read from the real environment, never from .env; an agent still needs DB_HUMAN_CONSENT) — and it
holds them as its component's login role (`[tool.dbguard] components`, made by `invoke db.roles`),
never as the tier URL's user: the app's process can do exactly what the ownership matrix grants its
component, on the very database the guard cleared (same server and database, pinned). A session that
acts for one user names that user in each transaction (`act_as`); row-level security then shows and
changes only that user's rows of the tables the matrix gives a `row_owner`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session, SessionTransaction

from dbguard.cli.console import Output
from dbguard.cli.runner import TaskContext, run_task
from dbguard.errors import OpsError, Refused
from dbguard.guard.caller import Caller
from dbguard.guard.cleared import Cleared
from dbguard.guard.forced_int import app_tier
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.settings import Settings, load_settings

OPERATION = "app-connect"
ALLOW_PROD_VARIABLE = "ALLOW_PROD_DATABASE"
USER_SETTING = "dbguard.user_id"  # read by the row-level security policies db.roles makes from `row_owner`
_SET_USER = text("SELECT set_config(:name, :value, true)")


def act_as(conn: Connection | Session, user_id: object) -> None:
    """Name the user the current transaction acts for (transaction-local: it ends with the transaction,
    so a pooled connection never carries one request's user into the next)."""
    conn.execute(_SET_USER, {"name": USER_SETTING, "value": str(user_id)})


@dataclass(frozen=True)
class AppDatabase:
    """The cleared database of this process: its engine, tier and (masked) target."""

    engine: Engine
    tier: Tier
    target: Target  # the component's login role on the cleared database (masked when shown)
    component: str

    def session(self, user_id: object | None = None) -> Session:
        """A new ORM session; with `user_id`, every transaction it begins acts for that user (`act_as`)."""
        s = Session(self.engine)
        if user_id is not None:

            @event.listens_for(s, "after_begin")
            def _name_the_user(_s: Session, _t: SessionTransaction, conn: Connection) -> None:
                act_as(conn, user_id)

        return s


def as_component(settings: Settings, cleared: Cleared, component: str) -> Cleared:
    """`cleared` reached as `component`'s login role: same server, database and pin; the role's name and password.

    Refused when the app does not list the component, or when a tier with a URL of its own has no
    password for it (dbguard.roles.urls).
    """
    from dbguard.roles.urls import component_target  # noqa: PLC0415 -- the roles package is needed only here

    login = component_target(settings, cleared.tier, component)
    params = {k: v for k, v in cleared.params.items() if k != "password"} | {"user": login.user}
    if login.password is not None:
        params["password"] = login.password
    return replace(cleared, params=params, source=login.source)


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
        from dbguard.roles.apply import is_managed  # noqa: PLC0415 -- the roles package is needed only here
        from dbguard.roles.names import role_names  # noqa: PLC0415

        login = as_component(ctx.settings, ctx.target, component)
        fix = f"invoke db.roles --env {ctx.tier.value} (it makes the component roles, their grants and passwords)"
        try:
            with login.connect() as conn:  # the role exists, its password works, it reaches the pinned database
                managed = is_managed(conn, login.dbname, role_names(ctx.settings, ctx.tier))
        except OpsError as exc:
            raise Refused(
                f"the {component} component cannot connect as {login.user} on {login.describe()}: {exc.message}", fix
            ) from None
        if not managed:  # the login roles are server-wide: they may exist while this database has no grants yet
            raise Refused(f"database '{login.dbname}' has no component roles applied yet (db.roles)", fix)
        engine = login.sa_engine(pool_pre_ping=True)  # every connection through the guard's clearance
        made.append(AppDatabase(engine, ctx.tier, login, component))
        ctx.facts["role"] = login.user
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
