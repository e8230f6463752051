"""A tier made ready for the app's components: migrated to head, `db.roles` applied, login passwords set.

The login roles are server-wide and shared by every test on a server: one password for all of them, so
no test changes it under another.
"""

from __future__ import annotations

from dataclasses import replace

from dbguard.guard.tiers import Tier
from dbguard.migrations.schema import sa_connection, upgrade
from dbguard.roles.apply import roles_task
from dbguard.settings import Settings

from tests.support.setup import Tiers, human, robot, run

LOGIN_PASSWORD = "component-Login-7c1d"


def with_passwords(settings: Settings, components: tuple[str, ...] = ("app", "worker")) -> Settings:
    """`settings` with <TIER>_<COMPONENT>_DATABASE_PASSWORD set for every tier and component; PROD's in the
    real environment too (the only place they are read from)."""
    values = {f"{t.value.upper()}_{c.upper()}_DATABASE_PASSWORD": LOGIN_PASSWORD for t in Tier for c in components}
    environ = {k: v for k, v in values.items() if k.startswith("PROD_")}
    return replace(settings.with_values(**values), environ={**settings.environ, **environ})


def ready(tiers: Tiers, tier: Tier) -> Settings:
    """Migrate `tier` to head and apply db.roles to it (PROD: as a human who types its name); the settings."""
    settings = with_passwords(tiers.settings)
    with sa_connection(tiers.target(tier)) as conn, conn.begin():
        upgrade(settings, conn, "head")
    caller = human(tiers.names[tier]) if tier is Tier.PROD else robot()
    result = run(settings, "roles", tier.value, caller, roles_task)
    assert result.code == 0, result.text
    return settings


def given_passwords(settings: Settings) -> dict[str, str]:
    """The login passwords a process was given in its real environment (PROD's are read from nowhere else)."""
    return {k: v for k, v in settings.environ.items() if k.endswith("_DATABASE_PASSWORD")}
