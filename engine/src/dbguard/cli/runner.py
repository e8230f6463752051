"""Run one task: header line, the guard, audit lines, the body, one clear line on failure, an exit code.

The catalog (dbguard.cli.catalog) calls `run_task` for every guarded task; tests call it too.
Exit codes: 0 done, 1 failed, 2 refused, 130 interrupted.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg

from dbguard.audit.anchor import anchors_here, write_anchor
from dbguard.audit.log import AuditLog, encode, line_hash, make_record
from dbguard.cli.console import Output
from dbguard.errors import OpsError, Refused
from dbguard.guard.caller import Caller, detect_caller
from dbguard.guard.cleared import Cleared
from dbguard.guard.config import target_for
from dbguard.guard.door import Clearance, authorize
from dbguard.guard.forced_int import forced_tier
from dbguard.guard.masking import mask_text
from dbguard.guard.tiers import Tier, parse_tier
from dbguard.settings import Settings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class TaskContext:
    """Everything a task body needs; bodies know nothing of invoke.

    `target` is the operation's own database as the guard cleared it; every other database the body
    may open is `clearance.db(purpose)`. Neither is ever opened any other way.
    """

    settings: Settings
    operation: str
    tier: Tier
    target: Cleared
    out: Output
    caller: Caller
    args: dict[str, Any]
    dry_run: bool
    clearance: Clearance
    facts: dict[str, Any] = field(default_factory=dict)  # added to the audit line


Body = Callable[[TaskContext], int | None]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def scrub_libpq_environment() -> None:
    """libpq reads PGHOST, PGDATABASE, ... from our own environment: the tier URL alone must decide."""
    for key in [k for k in os.environ if k.startswith("PG") and k != "PGPASSFILE"]:
        del os.environ[key]


def run_task(
    operation: str,
    env: str | None,
    args: dict[str, Any],
    body: Body,
    *,
    settings: Settings | None = None,
    caller: Caller | None = None,
    out: Output | None = None,
    confirm: str | None = None,
    dry_run: bool = False,
    check: Callable[[], None] | None = None,
) -> int:
    """`check` validates the run's options after the header line and before the guard (a Refused there
    is refused like any other)."""
    started = time.monotonic()
    out = out or Output(None)
    if settings is None:
        try:
            settings = load_settings()
        except OpsError as exc:  # no settings, no audit log to write to: one line and out
            out.error(exc.one_line())
            return EXIT_REFUSED
    scrub_libpq_environment()
    caller = caller or detect_caller(settings.environ)
    audit_args = {**args, "dry_run": dry_run} | ({"confirm": confirm} if confirm else {})
    tier: Tier | None = None
    target_text = "(unresolved)"
    outcome, error, code = "ok", None, EXIT_OK
    facts: dict[str, Any] = {}
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    audit = AuditLog(settings.audit_log)
    audit_usable = True
    header_done = False
    clearance: Clearance | None = None
    run_id = uuid.uuid4().hex[:12]

    def record_of(outcome: str, error: str | None) -> dict[str, Any]:
        return make_record(
            root=settings.root,
            task=operation,
            tier=tier.value if tier else str(env),
            target=target_text,
            args={**audit_args, **facts},
            outcome=outcome,
            duration_s=time.monotonic() - started,
            error=error,
        ) | {"run": run_id}

    try:
        try:
            audit.check_writable()
        except OpsError:
            audit_usable = False
            raise
        requested = parse_tier(env)
        tier = forced_tier(requested, settings.environ)
        out.tier = tier
        note = f"(forced to INT under pytest; --env {requested.value} ignored)" if tier is not requested else ""
        target = target_for(settings, tier)
        target_text = target.describe()
        out.header(target_text, note)
        header_done = True
        if check is not None:
            check()
        clearance = authorize(settings, operation, tier, target, caller, confirm=confirm, dry_run=dry_run, options=args)
        if clearance.grant_lines():
            facts["cleared"] = clearance.grant_lines()
        if not dry_run and not clearance.rule.read_only:  # on record before the work: a killed run still shows
            started_line = record_of("started", None)
            try:
                audit.append(started_line)
            except OSError as exc:
                audit_usable = False
                raise Refused(
                    f"the audit log {audit.path} could not be written ({exc.strerror}); nothing was done",
                    f"free space for {audit.path.parent}, or set AUDIT_LOG to a writable path",
                ) from None
        ctx = TaskContext(settings, operation, tier, clearance.target, out, caller, args, dry_run, clearance, facts)
        code = body(ctx) or EXIT_OK
        if code != EXIT_OK:
            outcome = "failed"
        elif dry_run:
            outcome = "dry-run"
    except OpsError as exc:
        if not header_done:
            out.header("(target not resolved)")
        outcome, error = exc.outcome, exc.one_line()
        code = EXIT_REFUSED if exc.outcome == "refused" else EXIT_FAILED
        out.error(error)
    except KeyboardInterrupt:
        outcome, error, code = "interrupted", "interrupted", EXIT_INTERRUPTED
        out.error("interrupted; the target is left as it was")
    except Exception as exc:  # an unexpected bug: one masked line, the traceback only on request
        outcome, error, code = "failed", f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED
        out.error(mask_text(error) + " (set DB_TOOLS_DEBUG=1 for the traceback)")
        if settings.environ.get("DB_TOOLS_DEBUG"):
            out.err.print(mask_text(traceback.format_exc()))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not audit_usable:
        return code
    try:
        written = audit.append(record_of(outcome, error))
    except OSError as exc:
        out.error(f"the audit log {audit.path} could not be written ({exc.strerror})")
        return code or EXIT_FAILED
    if clearance is not None and not dry_run and anchors_here(clearance.target):
        try:
            write_anchor(clearance.target, audit.path, int(written["seq"]), line_hash(encode(written)))
        except (OpsError, psycopg.Error):
            out.warn("the audit log's anchor could not be written to the database (db.audit --verify will say so)")
    return code
