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

Each stamp is read together with the identity of the database it came from (`dbguard.guard.identity`):
every later connection of the operation is pinned to it. PROD is read through PROD_DATABASE_URL, whose
role must be unable to write; a PROD cell that writes gets the PROD write credential only after every
check passed (`dbguard.guard.credentials`), and only if it reaches that same database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.errors import OpsError, Refused
from dbguard.guard.caller import Caller
from dbguard.guard.cleared import TARGET, Cleared
from dbguard.guard.config import (
    INT_NAME_MARKERS,
    all_targets,
    distinct_findings,
    env_tracked_finding,
    int_name_finding,
    target_for,
)
from dbguard.guard.credentials import READER_FIX, reader_problems, write_password, write_target, write_user
from dbguard.guard.identity import Pin, read_pin
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


CONSENT_DOCS = "see 'Coding agents' in docs/operations.md"  # never the variable's value: an agent would set it


def check_caller(
    rule: Rule, tier: Tier, name: str, caller: Caller, confirm: str | None, action: str, prompt: str = ""
) -> None:
    """Question 4: typed confirmation, interactive-only permissions, and an agent's need for human consent.

    `name` is the database name to type (and the consent's value); `action` names what is asked for in the
    refusals ("migrate on PROD"), `prompt` completes the question ("Type the database name 'x' to <prompt>: ").
    """
    if not rule.needs_human:
        return
    if caller.agent and (tier is Tier.PROD or rule.agent_consent) and caller.consent != name:
        why = f" ({caller.consent_note})" if caller.consent_note else ""
        raise Refused(
            f"{action} was asked for by an automated agent ({caller.agent}); it needs a human's consent{why}",
            f"stop and ask a human to run it, or to give their consent ({CONSENT_DOCS})",
        )
    if rule.confirm is Confirm.INTERACTIVE and not caller.interactive:
        raise Refused(
            f"{action} is allowed only at an interactive terminal (no flag stands in for it)",
            "run it yourself in a terminal, without CI=true",
        )
    if caller.interactive and caller.prompt is not None and (confirm is None or rule.confirm is Confirm.INTERACTIVE):
        typed = caller.prompt(f"Type the database name '{name}' to {prompt or action}: ")
    elif confirm is not None:
        typed = confirm
    else:
        raise Refused(
            f"{action} needs the database name typed; this run is non-interactive",
            f"pass --confirm {name}",
        )
    if typed.strip() != name:
        raise Refused(
            f"the confirmation '{typed.strip()}' does not match the database name '{name}'",
            "type the database name exactly",
        )


def authorize_step(
    operation: str, tier: Tier, caller: Caller, *, name: str, action: str = "", dry_run: bool = False
) -> Rule:
    """A step a task found it must take beyond its own cell (a PROD downgrade, deleting PROD backups,
    stamping a database that holds data, PROD data into a lower tier): that row's cell for `tier`,
    its policy and caller checks, `name` being the database name to type. A dry run checks the policy only."""
    rule = check_policy(operation, tier)
    if not dry_run:
        check_caller(rule, tier, name, caller, None, action or f"{operation} on {tier.value.upper()}")
    return rule


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
    pin: Pin | None = None  # the database the stamp was read from; every later connection must reach it

    @property
    def checked(self) -> bool:
        return self.rule.needs_database

    @property
    def writes_prod(self) -> bool:
        """A PROD cell that writes, on a real PROD server: it takes the PROD write credential (unless its writes
        go through a component's own login role, which the operation swaps in for the read-only one)."""
        return (
            self.tier is Tier.PROD
            and self.checked
            and not self.rule.read_only
            and not self.rule.component_login
            and not self.target.embedded
        )


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
    """Read the stamp and the database's identity in a read-only session, and check PROD's reader role;
    an optional grant that cannot be reached drops out (False)."""
    reader = wanted.tier is Tier.PROD and not wanted.target.embedded
    try:
        with Cleared.of(wanted.target, wanted.purpose, READ_STAMP).connect(read_only=True) as conn:
            wanted.stamp, wanted.pin = read_stamp(conn), read_pin(conn)
            problems = reader_problems(conn) if reader and not wanted.rule.bootstraps_reader else []
    except OpsError as exc:
        if wanted.rule.bootstraps_reader:
            return True  # db.prod-reader: read through the write credential, once the caller is cleared
        if not wanted.optional:
            raise
        unavailable[wanted.purpose] = exc
        return False
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        found = Refused(f"{wanted.target.source}'s role can write to PROD: {problems[0]}{more}", READER_FIX)
        if not wanted.optional:
            raise found
        unavailable[wanted.purpose] = found
        return False
    if wanted.rule.checks_stamp:
        check_stamp(wanted.stamp, wanted.tier, wanted.target)
    return True


def _take_write_credential(settings: Settings, wanted: _Wanted, caller: Caller) -> None:
    """Swap PROD's read target for the write credential, proven to reach the database whose stamp was read."""
    user = write_user(settings, wanted.target)
    password = write_password(settings, caller, user, wanted.target.dbname)
    target = write_target(wanted.target, user, password)
    try:
        with Cleared.of(target, wanted.purpose, READ_STAMP, pin=wanted.pin).connect(read_only=True) as conn:
            if wanted.pin is None:  # db.prod-reader on a PROD whose reader is not there yet
                wanted.stamp, wanted.pin = read_stamp(conn), read_pin(conn)
    except Refused as exc:
        raise Refused(
            f"PROD refused the write credential of '{user}' ({exc.short})",
            "type the password again, or check PROD_WRITE_USER and PROD_WRITE_PASSWORD_COMMAND",
        ) from None
    wanted.target = target
    if wanted.rule.bootstraps_reader and wanted.rule.checks_stamp:
        check_stamp(wanted.stamp, wanted.tier, wanted.target)


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
    if rule.standin_only and not target.embedded:
        raise Refused(
            f"{operation} on {tier.value.upper()} is not allowed: PROD here is '{target.dbname}', reached through "
            f"{target.source}, not the embedded stand-in, and a real PROD is never seeded",
            f"seed STG instead (invoke db.seed --env stg); the stand-in serves only where {target.source} "
            "and STG_DATABASE_URL are unset",
        )
    unavailable: dict[str, OpsError] = {}
    wanted = [_Wanted(TARGET, operation, tier, rule, target), *_wanted(settings, rule, options or {}, unavailable)]
    checked = [w for w in wanted if w.checked]
    for w in checked:
        check_configuration(settings, w.tier, w.target)
    checked = [w for w in checked if w.target.embedded or _read_stamp(w, unavailable)]
    if not dry_run:
        for w in checked:
            on = w.tier.value.upper()
            check_caller(
                w.rule, w.tier, w.target.dbname, caller, confirm, f"{w.operation} on {on}", f"{w.operation} {on}"
            )
        for w in checked:
            if w.writes_prod:
                _take_write_credential(settings, w, caller)
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
        w.purpose: Cleared.of(w.target, w.purpose, w.rule, w.stamp, w.pin)
        for w in wanted
        if w.purpose not in unavailable
    }
    return Clearance(operation, tier, rule, dry_run, cleared, unavailable)


def report_target(settings: Settings, target: Target) -> Cleared:
    """`target` for a report (status, doctor, the test suite's check): the 'report' row clears it read-only,
    checking nothing, so a report can show what is wrong; it never starts or creates anything."""
    return authorize(settings, "report", target.tier, target, UNATTENDED).target


def check_restamp(clearance: Clearance, carried: Tier, caller: Caller) -> None:
    """db.stamp --force over a stamp of another tier: the 're-stamp' row, keyed by the tier the database carries."""
    rule = check_policy("re-stamp", carried)
    target = clearance.target
    check_caller(
        rule, carried, target.dbname, caller, None, f"re-stamp {carried.value.upper()} as {clearance.tier.value}"
    )
