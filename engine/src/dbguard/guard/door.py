"""The guard: one code path every task passes before it touches a database.

It answers DESIGN.md's four questions in order: is the configuration sane; does the database
agree about what it is (its tier stamp); is the operation allowed on this tier (the policy
table); and who is asking (terminal, CI, coding agent; typed confirmation; human consent).
"""

from __future__ import annotations

from dataclasses import dataclass

from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.errors import OpsError, Refused
from dbguard.guard.caller import CONSENT_VARIABLE, Caller
from dbguard.guard.config import (
    INT_NAME_MARKERS,
    all_targets,
    distinct_findings,
    env_tracked_finding,
    int_name_finding,
)
from dbguard.guard.connect import connect
from dbguard.guard.policy import Confirm, Rule, rule_for
from dbguard.guard.stamp import Stamp, read_stamp
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.settings import Settings


@dataclass(frozen=True)
class Clearance:
    """What the guard allowed: the operation, the tier, the target and the rule that applies."""

    operation: str
    tier: Tier
    target: Target
    rule: Rule
    stamp: Stamp | None
    dry_run: bool


def check_configuration(settings: Settings, tier: Tier, target: Target) -> None:
    """Question 1: refuse when this tier's database could be another tier's, or the set-up leaks."""
    targets = all_targets(settings)
    targets[tier] = target
    for other, found in targets.items():
        if other is not tier and isinstance(found, OpsError) and "not set" not in found.message:
            raise Refused(
                f"cannot confirm that {tier.value.upper()} is not {other.value.upper()}: {found.message}", found.fix
            )
    for finding in distinct_findings(targets):
        if not finding.ok and tier in finding.tiers:
            raise Refused(finding.message + ": tiers must never share a database", finding.fix)
    if tier is Tier.INT:
        finding = int_name_finding(target)
        if not finding.ok:
            raise Refused(
                f"INT database '{target.dbname}' does not say it is for tests (its name lacks "
                f"{' or '.join(repr(m) for m in INT_NAME_MARKERS)})",
                finding.fix,
            )
    tracked = env_tracked_finding(settings)
    if not tracked.ok:
        raise Refused(tracked.message, tracked.fix)


def check_stamp(stamp: Stamp | None, tier: Tier, target: Target) -> None:
    """Question 2: the database must carry this tier's stamp, written for this very database."""
    fix = f"invoke db.stamp --env {tier.value}"
    if stamp is None:
        raise Refused(
            f"database '{target.dbname}' has no tier stamp, so it cannot prove it is {tier.value.upper()}", fix
        )
    if stamp.tier is Tier.PROD and tier is not Tier.PROD:
        raise Refused(
            f"database '{target.dbname}' is stamped PROD but was reached through {target.source}: "
            f"it is treated as PROD",
            f"point {target.source} at the {tier.value.upper()} database",
        )
    if stamp.tier is not tier:
        raise Refused(
            f"database '{target.dbname}' is stamped {stamp.tier.value.upper()}, not {tier.value.upper()}",
            f"point {target.source} at the {tier.value.upper()} database, or re-stamp it: {fix} --force",
        )
    if stamp.database_name != target.dbname:
        raise Refused(
            f"database '{target.dbname}' carries the stamp written for '{stamp.database_name}' "
            "(it was copied or renamed)",
            fix + " --force",
        )


def check_policy(operation: str, tier: Tier) -> Rule:
    """Question 3: the policy table."""
    rule = rule_for(operation, tier)
    if not rule.allowed:
        raise Refused(f"{operation} on {tier.value.upper()} is not allowed: {rule.reason}")
    return rule


def check_caller(rule: Rule, tier: Tier, target: Target, caller: Caller, confirm: str | None, operation: str) -> None:
    """Question 4: typed confirmation, interactive-only permissions, and an agent's need for human consent."""
    if not rule.needs_human:
        return
    if caller.agent and tier is Tier.PROD and caller.consent != target.dbname:
        raise Refused(
            f"{operation} on PROD was asked for by an automated agent ({caller.agent}); it needs a human's consent",
            f"stop and ask a human: they may set {CONSENT_VARIABLE}={target.dbname} in the agent's environment",
        )
    if rule.confirm is Confirm.INTERACTIVE and not caller.interactive:
        raise Refused(
            f"{operation} on {tier.value.upper()} is allowed only at an interactive terminal "
            "(no flag stands in for it)",
            "run it yourself in a terminal, without CI=true",
        )
    if caller.interactive and caller.prompt is not None and (confirm is None or rule.confirm is Confirm.INTERACTIVE):
        typed = caller.prompt(f"Type the database name '{target.dbname}' to {operation} {tier.value.upper()}: ")
    elif confirm is not None:
        typed = confirm
    else:
        raise Refused(
            f"{operation} on {tier.value.upper()} needs the database name typed; this run is non-interactive",
            f"pass --confirm {target.dbname}",
        )
    if typed.strip() != target.dbname:
        raise Refused(
            f"the confirmation '{typed.strip()}' does not match the database name '{target.dbname}'",
            "type the database name exactly",
        )


def open_target(settings: Settings, target: Target) -> Target:
    """Start the embedded cluster and create the tier's stamped database on demand."""
    if target.embedded:
        return EmbeddedCluster.from_settings(settings).ensure_database(target.tier)
    return target


def authorize(
    settings: Settings,
    operation: str,
    tier: Tier,
    target: Target,
    caller: Caller,
    *,
    confirm: str | None = None,
    dry_run: bool = False,
) -> Clearance:
    """Run the four checks; return the clearance or raise Refused."""
    rule = check_policy(operation, tier)
    if not rule.needs_database:
        return Clearance(operation, tier, target, rule, None, dry_run)
    check_configuration(settings, tier, target)
    target = open_target(settings, target)
    with connect(target, read_only=True) as conn:
        stamp = read_stamp(conn)
    if rule.checks_stamp:
        check_stamp(stamp, tier, target)
    if not dry_run:
        check_caller(rule, tier, target, caller, confirm, operation)
    return Clearance(operation, tier, target, rule, stamp, dry_run)
