"""component_url: the URL a component's process uses on a tier, as its own login role."""

from __future__ import annotations

from dbguard.errors import Refused
from dbguard.guard.config import target_for
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.roles.names import role_names
from dbguard.roles.passwords import component_password, password_variable
from dbguard.settings import Settings


def component_target(settings: Settings, tier: Tier, component: str) -> Target:
    """The tier's server and database, as `<app>_<component>_login` with the tier's password for it."""
    names = role_names(settings, tier)
    if component not in names.components:
        raise Refused(
            f"'{component}' is not one of the components ({', '.join(names.components)})",
            "add it to [tool.dbguard] components in pyproject.toml, then invoke db.roles",
        )
    base = target_for(settings, tier)
    password = component_password(settings, tier, component, embedded=base.embedded)
    if password is None and not base.embedded:
        variable = password_variable(tier, component)
        raise Refused(
            f"{variable} is not set: the {component} component has no password for {tier.value.upper()}",
            f"set {variable} in the environment (or .env), then invoke db.roles --env {tier.value}",
        )
    params = {k: v for k, v in base.params.items() if k != "password"} | {"user": names.login(component)}
    if password:
        params["password"] = password
    return Target(tier, params, password_variable(tier, component), base.embedded)


def component_url(settings: Settings, tier: Tier, component: str) -> str:
    """The URL (password included: hand it to a driver, never print it) of `component` on `tier`."""
    return component_target(settings, tier, component).url()
