"""The guard: one code path every task passes before it touches a database.

It answers DESIGN.md's four questions in order: is the configuration sane; does the database
agree about what it is (its tier stamp); is the operation allowed on this tier (the policy
table); and who is asking (terminal, CI, coding agent; typed confirmation; human consent).

It asks them of the operation's own target and of every other database its policy cell grants
(`Rule.also`: refresh-staging's PROD source, the ladder's STG clone and PROD check, db.verify
--deep's scratch database on INT's server), and hands out a Clearance: the only way any of those
databases is opened (`dbguard.guard.cleared`). Authorizing changes nothing before it has decided:
no embedded cluster is started, no database created and nothing written until every check,
the caller's included, has passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.errors import OpsError, Refused
from dbguard.guard.caller import CONSENT_VARIABLE, Caller
from dbguard.guard.cleared import TARGET, Cleared
from dbguard.guard.config import (
    INT_NAME_MARKERS,
    all_targets,
    distinct_findings,
    env_tracked_finding,
    int_name_finding,
    target_for,
)
from dbguard.guard.policy import Confirm, Rule, rule_for
from dbguard.guard.stamp import Stamp, read_stamp
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.settings import Settings

# reports and the test suite's own check read without anyone to ask: a rule that ever needed a human refuses them
UNATTENDED = Caller(interactive=False, ci=False, agent=None, consent=None)


@dataclass(frozen=True)
class Clearance:
    """What the guard allowed: the operation, its tier and rule, and each database it may open, by purpose."""

    operation: str
    tier: Tier
    rule: Rule
    dry_run: bool
    cleared: Mapping[str, Cleared]  # the operation's own target under TARGET, then its grants
    unavailable: Mapping[str, OpsError] = field(default_factory=dict)  # optional grants, and why they are not here

    @property
    def target(self) -> Cleared:
        return self.cleared[TARGET]

    @property
    def stamp(self) -> Stamp | None:
        return self.target.stamp

    def db(self, purpose: str = TARGET) -> Cleared:
        """The database cleared for `purpose`; an optional one that could not be reached raises why."""
        if purpose in self.cleared:
            return self.cleared[purpose]
        if purpose in self.unavailable:
            raise self.unavailable[purpose]
        raise Refused(
            f"{self.operation} on {self.tier.value.upper()} was not cleared to open '{purpose}'",
            "declare it in the policy table (dbguard/guard/policy.py)",
        )

    def has(self, purpose: str) -> bool:
        return purpose in self.cleared

    def grant_lines(self) -> list[str]:
        """The grants beyond the operation's own target, one line each, for the audit log."""
        lines = [c.grant_line() for purpose, c in self.cleared.items() if purpose != TARGET]
        return lines + [f"{purpose}: not cleared ({exc.short})" for purpose, exc in self.unavailable.items()]


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


READ_STAMP = Rule(True, read_only=True)  # the guard's own look at a database's stamp


@dataclass
class _Wanted:
    """One database on its way through the checks: the operation's target, or one of its grants."""

    purpose: str
    operation: str
    tier: Tier
    rule: Rule
    target: Target
    optional: bool = False
    stamp: Stamp | None = None

    @property
    def checked(self) -> bool:
        return self.rule.needs_database


def _wanted(
    settings: Settings, rule: Rule, options: Mapping[str, Any], unavailable: dict[str, OpsError]
) -> list[_Wanted]:
    """The grants the run asks for, each with its policy cell checked and its target resolved (settings only)."""
    found = []
    for grant in rule.also:
        if grant.when and not options.get(grant.when):
            continue
        granted = check_policy(grant.operation, grant.tier)
        try:
            target = target_for(settings, grant.tier)
        except OpsError as exc:
            if not grant.optional:
                raise
            unavailable[grant.purpose] = exc
            continue
        found.append(_Wanted(grant.purpose, grant.operation, grant.tier, granted, target, grant.optional))
    return found


def _read_stamp(wanted: _Wanted, unavailable: dict[str, OpsError]) -> bool:
    """Read the stamp in a read-only session; an optional grant that cannot be reached drops out (False)."""
    try:
        with Cleared.of(wanted.target, wanted.purpose, READ_STAMP).connect(read_only=True) as conn:
            wanted.stamp = read_stamp(conn)
    except OpsError as exc:
        if not wanted.optional:
            raise
        unavailable[wanted.purpose] = exc
        return False
    if wanted.rule.checks_stamp:
        check_stamp(wanted.stamp, wanted.tier, wanted.target)
    return True


def _open_embedded(settings: Settings, target: Target) -> Target:
    """Start the embedded cluster and create the tier's stamped database on demand (after every check)."""
    return EmbeddedCluster.from_settings(settings).ensure_database(target.tier)


def authorize(
    settings: Settings,
    operation: str,
    tier: Tier,
    target: Target,
    caller: Caller,
    *,
    confirm: str | None = None,
    dry_run: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Clearance:
    """Run the four checks on the target and on every grant the run asks for; return the clearance or raise.

    Order: the policy cells; the configuration; the stamps that can be read without starting anything
    (read-only sessions); the caller; only then the embedded cluster is started and its databases made,
    and their stamps checked. `options` are the run's options (a grant with `when` needs its option set).
    """
    rule = check_policy(operation, tier)
    unavailable: dict[str, OpsError] = {}
    wanted = [_Wanted(TARGET, operation, tier, rule, target), *_wanted(settings, rule, options or {}, unavailable)]
    checked = [w for w in wanted if w.checked]
    for w in checked:
        check_configuration(settings, w.tier, w.target)
    checked = [w for w in checked if w.target.embedded or _read_stamp(w, unavailable)]
    if not dry_run:
        for w in checked:
            check_caller(w.rule, w.tier, w.target, caller, confirm, w.operation)
    for w in checked:
        if w.target.embedded:
            try:
                w.target = _open_embedded(settings, w.target)
            except OpsError as exc:
                if not w.optional:
                    raise
                unavailable[w.purpose] = exc
                continue
            _read_stamp(w, unavailable)
    cleared = {
        w.purpose: Cleared.of(w.target, w.purpose, w.rule, w.stamp) for w in wanted if w.purpose not in unavailable
    }
    return Clearance(operation, tier, rule, dry_run, cleared, unavailable)


def report_target(settings: Settings, target: Target) -> Cleared:
    """`target` for a report (status, doctor, the test suite's check): the 'report' row clears it read-only,
    checking nothing, so a report can show what is wrong; it never starts or creates anything."""
    return authorize(settings, "report", target.tier, target, UNATTENDED).target


def check_restamp(clearance: Clearance, carried: Tier, caller: Caller) -> None:
    """db.stamp --force over a stamp of another tier: the 're-stamp' row, keyed by the tier the database carries."""
    rule = check_policy("re-stamp", carried)
    check_caller(
        rule, carried, clearance.target, caller, None, f"re-stamp {carried.value.upper()} as {clearance.tier.value}"
    )
