"""The role names the ownership matrix turns into, one spelling for the whole engine.

`<app>_<tier>_migrator` owns the schema and the tables; `<app>_<tier>_<component>` (NOLOGIN) holds exactly
the matrix's privileges for one component; `<app>_<tier>_<component>_login` (LOGIN) is what the
component's process connects as, a member of its group role and nothing else. `<app>` is APP_NAME as an
identifier. Roles are server-wide, so the tier is part of every name: where two tiers share a server (INT
and STG on the embedded cluster, the stand-in PROD beside them, or a STG next to PROD), db.roles on one
tier never touches the roles, memberships or passwords that own or reach the other's tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbguard.guard.tiers import Tier
from dbguard.settings import Settings

POLICY_PREFIX = "dbguard_"  # row-level security policies db.roles makes (others are the app's own)
OWN_ROWS = "dbguard_own_rows"
READER_ROWS = "dbguard_reader_all_rows"  # PROD's read-only role (backups, refreshes)
READERS_ROWS = "dbguard_readers_all_rows"  # a row-scoped table's reader components


def roles_policy(listing_line: str) -> bool:
    """Whether a `pg_restore --list` line is one of db.roles' policies or its comment
    (`... POLICY schema table dbguard_... owner`, `... COMMENT schema POLICY dbguard_... ON table owner`)."""
    parts = listing_line.split()
    if "POLICY" not in parts:
        return False
    after = parts.index("POLICY") + 1
    return any(p.startswith(POLICY_PREFIX) for p in parts[after : after + 3])


def identifier(text: str) -> str:
    """`text` as a lower-case SQL identifier part: other characters become `_`."""
    return re.sub(r"[^a-z0-9_]", "_", text.lower()) or "app"


@dataclass(frozen=True)
class RoleNames:
    app: str
    components: tuple[str, ...]
    tier: str

    @property
    def prefix(self) -> str:
        return f"{self.app}_{self.tier}"

    @property
    def migrator(self) -> str:
        return f"{self.prefix}_migrator"

    def group(self, component: str) -> str:
        return f"{self.prefix}_{component}"

    def login(self, component: str) -> str:
        return f"{self.prefix}_{component}_login"

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.group(c) for c in self.components)

    @property
    def logins(self) -> tuple[str, ...]:
        return tuple(self.login(c) for c in self.components)

    @property
    def component_roles(self) -> tuple[str, ...]:
        return self.groups + self.logins


def role_names(settings: Settings, tier: Tier) -> RoleNames:
    return RoleNames(identifier(settings.app_name), settings.project.components, tier.value)
