"""Each component's login password, from the tier's secret source; never printed, never on a command line.

- `<TIER>_<COMPONENT>_DATABASE_PASSWORD` (e.g. STG_WORKER_DATABASE_PASSWORD) from the environment or
  `.env` (git-ignored), for a tier with a URL of its own; PROD's from the real environment only (a
  secret manager's), never `.env`: whoever can read a file on a laptop must not get PROD write access;
- the embedded default cluster (no URL for the tier): a password generated once and kept in the
  git-ignored private state folder (`.local/role-passwords/<role>`, mode 0600, its folder 0700). The
  tiers of one embedded cluster share its login roles, and so their passwords.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from dbguard.errors import Refused
from dbguard.guard.masking import remember_secret
from dbguard.guard.tiers import Tier
from dbguard.roles.names import role_names
from dbguard.settings import Settings

STATE_FOLDER = ".local/role-passwords"


def password_variable(tier: Tier, component: str) -> str:
    return f"{tier.value.upper()}_{component.upper()}_DATABASE_PASSWORD"


def password_file(settings: Settings, tier: Tier, component: str) -> Path:
    return settings.root / STATE_FOLDER / role_names(settings, tier).login(component)


def source_of(settings: Settings, tier: Tier, component: str, *, embedded: bool) -> str:
    """Where the password comes from, for messages (never the password)."""
    variable = password_variable(tier, component)
    if settings.values.get(variable) or not embedded:
        return variable
    return str(password_file(settings, tier, component).relative_to(settings.root))


def component_password(settings: Settings, tier: Tier, component: str, *, embedded: bool) -> str | None:
    """The login password of `component` on `tier`; None when a tier with its own URL has none set.

    For the embedded cluster one is generated on first use and kept (0600) in the private state folder."""
    variable = password_variable(tier, component)
    value = settings.values.get(variable, "")
    if value and tier is Tier.PROD and not embedded and not settings.environ.get(variable):
        raise Refused(
            f"{variable} is set in {settings.env_file.name}: PROD's login passwords are read from the real "
            "environment only",
            f"remove it from {settings.env_file} and give the process {variable} from your secret manager",
        )
    if value:
        remember_secret(value)
        return value
    if not embedded:
        return None
    path = password_file(settings, tier, component)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another run made it first
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24) + "\n")
    if path.stat().st_mode & 0o077:
        raise Refused(f"{path} can be read by others", f"chmod 600 {path}")
    value = path.read_text(encoding="utf-8").strip()
    remember_secret(value)
    return value
