"""The doctor's checks of the roles: drift from the ownership matrix, and component roles kept powerless.

Read-only: each tier is read through the report clearance. A tier is judged against the matrix once
db.roles was applied to it (its migrator holds CONNECT on the database); a component role that owns
objects or may create them (CREATE on the database or a schema, SUPERUSER, CREATEROLE, CREATEDB,
BYPASSRLS, REPLICATION) fails the doctor wherever such a role exists.
"""

from __future__ import annotations

from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.errors import OpsError
from dbguard.guard.config import Finding, all_targets
from dbguard.guard.door import report_target
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.ownership import bad_row_owners, missing, undeclared
from dbguard.roles.apply import MODELS_FIX, checked_matrix, component_problems, is_managed, read, reader_of
from dbguard.roles.names import role_names
from dbguard.roles.plan import Wanted, plan
from dbguard.settings import Settings

SHOWN = 6


def check_ownership(settings: Settings) -> list[Finding]:
    """Every table of the models has an entry in the ownership matrix."""
    try:
        metadata, listed = settings.project.metadata, settings.project.components
    except OpsError:
        return []
    absent = missing(metadata)
    unknown = undeclared(metadata, listed) + [f"{c} (row_owner: no such column)" for c in bad_row_owners(metadata)]
    found = [
        Finding(
            "every table has an ownership entry (who writes, who reads)",
            not absent,
            "all declared" if not absent else "no entry: " + ", ".join(absent),
            MODELS_FIX,
            required=False,
        )
    ]
    if unknown:
        found.append(
            Finding(
                "the ownership matrix names only listed components and real columns",
                False,
                ", ".join(unknown),
                f"list the components in [tool.dbguard] components ({settings.root / 'pyproject.toml'}), "
                "or fix the entries",
                required=False,
            )
        )
    return found


def check_roles(settings: Settings) -> list[Finding]:
    try:
        base = checked_matrix(settings, Tier.INT)
    except OpsError:
        return []  # check_ownership (or db.roles) says why
    found: list[Finding] = []
    for tier, target in all_targets(settings).items():
        if not isinstance(target, Target):
            continue
        if target.embedded and not EmbeddedCluster.from_settings(settings).is_running():
            continue
        label = tier.value.upper()
        names = role_names(settings, tier)
        wanted = Wanted(
            names,
            base.matrix,
            None,
            reader_of(settings, tier, target),
            parents=base.parents,
            idle_timeout=settings.get("COMPONENT_IDLE_TIMEOUT"),
        )
        try:
            with report_target(settings, target).connect(read_only=True, timeout=5) as conn:
                state = read(conn, wanted)
                problems = component_problems(conn, names)
                managed = is_managed(conn, target.dbname, names)
        except OpsError:
            continue  # unreachable: check_databases says so
        fix = f"invoke db.roles --env {tier.value}"
        if any(r in state.roles for r in names.component_roles):
            found.append(
                Finding(
                    f"{label}: component roles own nothing and may create nothing",
                    not problems,
                    "none does" if not problems else "; ".join(problems[:SHOWN]),
                    fix + " (and REASSIGN OWNED BY <role> TO " + names.migrator + " for what a role owns)",
                    tiers=(tier,),
                )
            )
        if not managed:
            continue
        drift = [c for c in plan(state, wanted) if c.password is None]
        found.append(
            Finding(
                f"{label}: roles and grants match the ownership matrix",
                not drift,
                "no drift"
                if not drift
                else f"{len(drift)} difference(s): "
                + "; ".join(
                    f"{c.role or c.object} {c.object if c.role else ''} {c.change}".strip() for c in drift[:SHOWN]
                ),
                fix,
                required=False,
                tiers=(tier,),
            )
        )
    return found
