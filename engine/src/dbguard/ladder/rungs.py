"""The migration ladder: INT from empty -> a clone of STG -> a PROD check that never writes PROD.

Each rung is a plain function that appends checks (pass, fail, skip or not verified, with the reason)
to a `Ladder`; `nox -s migrations` runs them all and prints one table. What must always hold: the
gate opens (`dbguard.ladder.gate`: a pass recorded, a report that says "open") only when no check
failed and every check concerning PROD ran and passed, for exactly the migration files the ladder
started with. A PROD check that could not run (PROD unset or unreachable, no verified backup of PROD
at its current revision to rehearse on) is "not verified", never a pass. An empty PROD (at base, no
tables) needs no backup: the INT rung, from empty, is its rehearsal.

Every database a rung opens comes from the run's clearance ('ladder' row): scratch databases on INT's
server (the run's own target), STG read-only for its clone (CLONE), STG itself only with --apply-stg
(APPLY_STG, under STG's 'migrate' cell), PROD read-only (PROD_CHECK). STG and PROD are optional: unset
or unreachable, STG's rung is skipped and PROD's is not verified; configured but failing a check, the
whole ladder is refused.
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from rich.text import Text

from dbguard import __version__
from dbguard.backup.archive import list_archive, restore_archive
from dbguard.backup.dump import take_backup
from dbguard.backup.files import list_backups
from dbguard.cli.console import Output, add_row, new_table
from dbguard.cli.runner import TaskContext, run_task
from dbguard.cluster.pgtools import clean_environment, require_bindir
from dbguard.cluster.private_files import private_file, private_folder
from dbguard.errors import Failed, OpsError
from dbguard.guard.cleared import Cleared
from dbguard.guard.connect import Connection
from dbguard.guard.door import Clearance
from dbguard.guard.locks import exclusive
from dbguard.guard.policy import APPLY_STG, CLONE, PROD_CHECK
from dbguard.guard.stamp import STAMP_SCHEMA
from dbguard.ladder.gate import (
    KEY_VARIABLE,
    REPORT_FORMAT,
    MigrationFiles,
    ProdFacts,
    read_prod_facts,
    record_pass,
    report_key,
    sign,
    write_report,
)
from dbguard.migrations.alembic_env import compare_options
from dbguard.migrations.history import (
    alembic_config,
    current_revision,
    invalid_index_note,
    invalid_indexes,
    script_directory,
)
from dbguard.migrations.schema import downgrade, error_line, raw, upgrade
from dbguard.ownership import missing as ownership_missing
from dbguard.ownership import undeclared as undeclared_components
from dbguard.pii import pii_of
from dbguard.refresh.constraints import kept_on
from dbguard.refresh.rules import check_coverage, live_schema, load_policy
from dbguard.roles.apply import carry_roles_into
from dbguard.seeding.runner import make_plan, seed_database
from dbguard.settings import Settings

PASS, FAIL, SKIP = "pass", "fail", "skip"
NOT_VERIFIED = "not verified"  # a check concerning PROD that could not run: never a pass, the gate stays closed
BACKUP_FIX = "invoke db.backup --env prod && invoke db.verify latest, then nox -s migrations"
# squawk rules about style rather than locks or rewrites; everything else it reports fails the rung
SQUAWK_EXCLUDED = (
    "prefer-robust-stmts",
    "prefer-text-field",
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-timestamp-tz",
)


@dataclass
class RungResult:
    rung: str
    name: str
    status: str
    detail: str = ""
    seconds: float | None = None


@dataclass
class Ladder:
    checks: list[RungResult] = field(default_factory=list)
    files: MigrationFiles | None = None  # what the ladder ran on (read before the first rung)
    prod: ProdFacts | None = None  # the PROD database its PROD check reached, and PROD's revision then
    gate_open: bool = False  # a pass was recorded: no failure, every PROD check ran and passed

    def add(self, rung: str, name: str, ok: bool | None, detail: str = "", seconds: float | None = None) -> RungResult:
        status = SKIP if ok is None else (PASS if ok else FAIL)
        return self._append(RungResult(rung, name, status, detail, None if seconds is None else round(seconds, 3)))

    def unverified(self, rung: str, name: str, detail: str) -> RungResult:
        """A check concerning PROD that could not run: reported, and the gate stays closed."""
        return self._append(RungResult(rung, name, NOT_VERIFIED, detail))

    def _append(self, check: RungResult) -> RungResult:
        self.checks.append(check)
        return check

    @property
    def failed(self) -> list[RungResult]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def not_verified(self) -> list[RungResult]:
        return [c for c in self.checks if c.status == NOT_VERIFIED]


def _ordered(script: ScriptDirectory) -> list[Script]:
    """Revisions from base to head (one head assumed)."""
    return list(reversed(list(script.walk_revisions("base", "heads"))))


def _irreversible(revision: Script) -> bool:
    return bool(getattr(revision.module, "irreversible", False))


# -- rung 1: history ---------------------------------------------------------------------------------
def rung_history(settings: Settings, ladder: Ladder) -> ScriptDirectory | None:
    rung = "1 history"
    try:
        script = script_directory(settings)
        revisions = list(script.walk_revisions())  # imports every revision file
    except Exception as exc:  # an import error in any revision file
        ladder.add(rung, "every revision file imports cleanly", False, f"{type(exc).__name__}: {exc}")
        return None
    ladder.add(rung, "every revision file imports cleanly", True, f"{len(revisions)} revisions")
    heads = script.get_heads()
    ladder.add(
        rung,
        "exactly one head",
        len(heads) <= 1,
        (f"head {heads[0]}" if heads else "no revisions yet: the schema is empty")
        if len(heads) <= 1
        else f"{len(heads)} heads: {', '.join(heads)} (merge them: alembic merge heads)",
    )
    unmerged = [r.revision for r in revisions if r.is_branch_point and len(heads) > 1]
    ladder.add(
        rung,
        "no unmerged branch point",
        not unmerged,
        "none" if not unmerged else "branch point(s) never merged: " + ", ".join(unmerged),
    )
    hollow = [r.revision for r in revisions if not _irreversible(r) and _downgrade_is_empty(r)]
    ladder.add(
        rung,
        "every revision can be downgraded or is marked irreversible",
        not hollow,
        "all"
        if not hollow
        else "empty downgrade() in "
        + ", ".join(hollow)
        + " (write it, or set `irreversible = True` with a comment saying why)",
    )
    return script if len(heads) <= 1 else None


def _downgrade_is_empty(revision: Script) -> bool:
    source = inspect.getsource(revision.module.downgrade)
    body = [ln.strip() for ln in source.splitlines()[1:] if ln.strip() and not ln.strip().startswith("#")]
    return body in ([], ["pass"]) or all(ln.startswith(('"""', "'''")) or ln == "pass" for ln in body)


# -- rung 2: INT, from empty ----------------------------------------------------------------------------
@contextmanager
def _scratch_on(server: Cleared, live: str, purpose: str) -> Iterator[Cleared]:
    server.drop_leftovers((purpose,), live=live)
    with server.scratch(purpose, live=live) as scratch:
        yield scratch


def _step(target: Cleared, settings: Settings, action: Callable[..., None], revision: str) -> float:
    """One upgrade or downgrade as db.migrate runs it: Alembic's own transaction, autocommit blocks allowed."""
    began = time.perf_counter()
    try:
        with target.sa_connection() as conn:
            action(settings, conn, revision)
    except OpsError:
        raise
    except Exception as exc:  # described as db.migrate would: what broke, and an INVALID index left behind
        raise Failed(_left_behind(target, error_line(exc))) from None
    return time.perf_counter() - began


def _left_behind(target: Cleared, why: str) -> str:
    with target.connect(read_only=True) as conn:
        found, now = invalid_indexes(conn), current_revision(conn)
    left = f"; {invalid_index_note(found, target.tier.value)[0]}" if found else ""
    return f"{why} (left at {now or 'base'}{left})"


def check_invalid_indexes(ladder: Ladder, rung: str, db: Cleared, env: str) -> bool:
    """A database holding an INVALID index (a concurrent build that failed or was killed) is not ready to
    migrate: the revision that built it is not recorded and would run again. Checked read-only."""
    with db.connect(read_only=True) as conn:
        found = invalid_indexes(conn)
    if not found:
        ladder.add(rung, "no INVALID index left by a failed concurrent build", True, "none")
        return True
    what, fix = invalid_index_note(found, env)
    ladder.add(rung, "no INVALID index left by a failed concurrent build", False, f"{what} -> {fix}")
    return False


def rung_int(settings: Settings, script: ScriptDirectory, ladder: Ladder, server: Cleared) -> None:
    rung = "2 INT from empty"
    with _scratch_on(server, "ladder_int", "ladder") as scratch:
        ordered = _ordered(script)
        for revision in ordered:
            name = f"{revision.revision}: up, down, up"
            try:
                up = _step(scratch, settings, upgrade, revision.revision)
                if _irreversible(revision):
                    ladder.add(rung, name, True, "up only: marked irreversible", up)
                    continue
                down = _step(scratch, settings, downgrade, "-1")
                again = _step(scratch, settings, upgrade, revision.revision)
                ladder.add(rung, name, True, f"up {up:.2f}s, down {down:.2f}s, up {again:.2f}s", up + down + again)
            except Exception as exc:  # any failure of a migration is this check's result
                ladder.add(rung, name, False, _one_line(exc))
                return
        with scratch.sa_connection() as conn:
            metadata = settings.project.metadata  # compared as autogenerate does: other schemas in, partitions out
            context = MigrationContext.configure(conn, opts=compare_options(metadata))
            diffs = [d for d in compare_metadata(context, metadata) if not _ignored(d)]
        ladder.add(
            rung,
            "the models match the migrated schema",
            not diffs,
            "autogenerate finds nothing"
            if not diffs
            else f"{len(diffs)} difference(s), e.g. "
            + "; ".join(_describe(d) for d in diffs[:3])
            + " (write a migration: invoke db.revision -m ...)",
        )
        try:
            with scratch.sa_connection() as conn, conn.begin():
                began = time.perf_counter()
                seed_database(raw(conn), make_plan(settings.project, "demo"))
            ladder.add(rung, "the demo seed runs at head", True, "", time.perf_counter() - began)
        except OpsError as exc:
            ladder.add(rung, "the demo seed runs at head", False, exc.message)
        undeclared = [
            f"{t.name}.{c.name}"
            for t in settings.project.metadata.sorted_tables
            for c in t.columns
            if pii_of(c) is None
        ]
        with scratch.connect(read_only=True) as reading:
            coverage = check_coverage(load_policy(settings), live_schema(reading))
        missing = undeclared + coverage.unclassified_tables + coverage.unclassified_columns
        ladder.add(
            rung,
            "every table and column has a PII class",
            not missing,
            "all classified" if not missing else "unclassified: " + ", ".join(missing),
        )
        ladder.add(rung, "the sanitizing rules keep the constraints at head", *kept_on(scratch, settings))
        metadata = settings.project.metadata  # dbguard.ownership: who writes, who reads
        unowned = ownership_missing(metadata) + [
            f"{u} (not in [tool.dbguard] components)"
            for u in undeclared_components(metadata, settings.project.components)
        ]
        ladder.add(
            rung,
            "every table has an ownership entry",
            not unowned,
            "all declared" if not unowned else "no entry: " + ", ".join(unowned) + " (owned(...) in the models)",
        )


def _ignored(diff: Any) -> bool:
    """Autogenerate entries about tables the tools own (the tier stamp, Alembic's own table)."""
    text = repr(diff)
    return "tier_stamp" in text or "alembic_version" in text


def _describe(diff: Any) -> str:
    if isinstance(diff, tuple) and diff and isinstance(diff[0], str):
        parts = [diff[0]] + [getattr(x, "name", None) or str(x) for x in diff[1:3]]
        return " ".join(p for p in parts if p)
    return repr(diff)[:120]


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OpsError):
        return exc.message
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


# -- rung 3: STG, a throwaway clone ---------------------------------------------------------------------
def _clone(settings: Settings, source: Cleared, into: Cleared) -> None:
    bindir = require_bindir(settings.values, ("pg_dump", "pg_restore"))
    with private_folder("ladder") as tmp:  # STG's data: gone on every exit path, swept after a kill
        archive = tmp / "clone.dump"
        source.run_tool(bindir, "pg_dump", ["--format=custom", f"--file={archive}"])
        restore_archive(bindir, archive, into, len(list_archive(bindir, archive).data_tables), None)
    carry_roles_into(settings, source.tier, source, into, None)  # STG's grants and policies, as db.roles made them


def _climb(
    settings: Settings, script: ScriptDirectory, target: Cleared, ladder: Ladder, rung: str, start: str | None
) -> bool:
    """Upgrade `target` one pending revision at a time, timing each; False at the first failure."""
    pending = [
        r.revision for r in reversed(list(script.iterate_revisions("heads", start or "base"))) if r.revision != start
    ]
    for revision in pending:
        try:
            seconds = _step(target, settings, upgrade, revision)
            ladder.add(rung, f"{revision} applied", True, "", seconds)
        except Exception as exc:
            ladder.add(rung, f"{revision} applied", False, _one_line(exc))
            return False
    return True


def rung_stg(settings: Settings, script: ScriptDirectory, ladder: Ladder, clearance: Clearance, out: Output) -> None:
    rung = "3 STG clone"
    try:
        stg = clearance.db(CLONE)
        with stg.connect(read_only=True) as conn:
            current = current_revision(conn)
    except OpsError as exc:
        ladder.add(rung, "STG reachable", None, f"skipped: {exc.message}")
        return
    if not check_invalid_indexes(ladder, rung, stg, "stg"):
        return
    head = script.get_current_head()
    if current == head:
        ladder.add(rung, "pending revisions on a clone of STG", None, f"skipped: STG is at head ({head})")
        return
    with _scratch_on(stg, stg.dbname, "ladder") as clone:
        _clone(settings, stg, clone)
        ladder.add(rung, "STG cloned with its data", True, f"from revision {current or 'base'}")
        ok = _climb(settings, script, clone, ladder, rung, current)
    if ok and clearance.has(APPLY_STG):
        target = clearance.db(APPLY_STG)  # STG itself, cleared under STG's 'migrate' cell
        with exclusive(target, "migrate"):
            backup = take_backup(settings, target, out, reason="before the ladder's --apply-stg")
            seconds = _step(target, settings, upgrade, "heads")
        ladder.add(rung, "STG itself migrated (--apply-stg)", True, f"backup {backup.path.name}", seconds)


# -- rung 4: PROD check (never writes PROD) --------------------------------------------------------------
def offline_sql(settings: Settings, start: str | None) -> str:
    cfg = alembic_config(settings)
    buffer = io.StringIO()
    cfg.output_buffer = buffer
    command.upgrade(cfg, f"{start}:heads" if start else "heads", sql=True)
    return buffer.getvalue()


def squawk_binary() -> str | None:
    found = shutil.which("squawk")
    beside = Path(sys.executable).parent / "squawk"
    return found or (str(beside) if beside.exists() else None)


def lint(sql_text: str) -> list[dict[str, Any]]:
    binary = squawk_binary()
    if binary is None:
        raise OpsError("squawk is not installed", "pip install squawk-cli")
    with private_folder("squawk") as folder:
        path = private_file(folder, "pending.sql", sql_text)
        proc = subprocess.run(
            [binary, "--reporter", "json", "--pg-version", "15.0", "--exclude", ",".join(SQUAWK_EXCLUDED), str(path)],
            env=clean_environment(os.environ),
            capture_output=True,
            text=True,
            check=False,
        )
    try:  # squawk exits 1 when it found something, 2 (and prints no JSON) when it could not run
        found = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        found = None
    if found is None or proc.returncode not in (0, 1):
        raise OpsError(f"squawk could not lint the SQL: {proc.stderr.strip().splitlines()[0] if proc.stderr else '?'}")
    return list(found)


def rung_prod(settings: Settings, script: ScriptDirectory, ladder: Ladder, clearance: Clearance) -> ProdFacts | None:
    """PROD's identity and revision (None: PROD could not be read); every other check only where that worked."""
    rung = "4 PROD check"
    try:
        prod = clearance.db(PROD_CHECK)
        with prod.connect(read_only=True) as conn:
            facts = read_prod_facts(conn)
            read_only = conn.execute("SHOW transaction_read_only").fetchone()
            empty = facts.revision is None and not _holds_objects(conn)
    except OpsError as exc:
        ladder.unverified(
            rung,
            "PROD reachable through a read-only session",
            f"{exc.one_line()} (so its pending revisions, squawk and the rehearsal did not run)",
        )
        return None
    current = facts.revision
    ladder.add(rung, "PROD reachable through a read-only session", read_only == ("on",), prod.masked())
    check_invalid_indexes(ladder, rung, prod, "prod")
    ladder.add(rung, "the sanitizing rules keep PROD's constraints", *kept_on(prod, settings))
    if current is not None:
        try:
            known = script.get_revision(current)
        except CommandError:
            known = None
        if known is None:
            ladder.add(
                rung,
                "PROD's revision is in our history",
                False,
                f"PROD is at {current}, which these migration files do not know: the code is behind "
                "(pull the newest migrations) or has diverged (a revision was removed or rewritten)",
            )
            return facts
        ancestors = {r.revision for r in script.walk_revisions("base", "heads")}
        on_path = current in {r.revision for r in script.iterate_revisions("heads", "base")}
        ladder.add(
            rung,
            "PROD's revision is in our history",
            current in ancestors and on_path,
            f"PROD at {current}" if on_path else f"PROD at {current}, on a branch head does not include: diverged",
        )
    pending = [
        r.revision
        for r in reversed(list(script.iterate_revisions("heads", current or "base")))
        if r.revision != current
    ]
    ladder.add(rung, "pending revisions for PROD", True, ", ".join(pending) if pending else "none: PROD is at head")
    if not pending:
        return facts
    text = offline_sql(settings, current)
    timeouts = "SET lock_timeout" in text and "SET statement_timeout" in text
    ladder.add(
        rung,
        "migrations run with lock_timeout and statement_timeout",
        timeouts,
        "set for the session, autocommit blocks included" if timeouts else "missing from the generated SQL",
    )
    try:
        hazards = lint(text)
        ladder.add(
            rung,
            "squawk finds no locking or rewrite hazard",
            not hazards,
            f"{len(text.splitlines())} lines of SQL checked"
            if not hazards
            else "; ".join(f"{h.get('rule_name')}: {h.get('message')}" for h in hazards[:4]),
        )
    except OpsError as exc:
        ladder.add(rung, "squawk finds no locking or rewrite hazard", False, exc.one_line())
    _rehearse(settings, script, ladder, rung, clearance.target, facts, empty)
    return facts


def _holds_objects(conn: Connection) -> bool:
    """Whether the database holds any table, view or sequence of its own (the tools' stamp schema aside)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema', %s) AND n.nspname NOT LIKE 'pg\\_%%')",
        (STAMP_SCHEMA,),
    ).fetchone()
    return bool(row and row[0])


REHEARSAL = "rehearsal on the newest verified PROD backup"


def _rehearse(
    settings: Settings,
    script: ScriptDirectory,
    ladder: Ladder,
    rung: str,
    server: Cleared,
    prod: ProdFacts,
    empty: bool,
) -> None:
    """The pending revisions applied to a restored copy of PROD's newest verified backup, on INT's server.

    The backup must be of this PROD database at the revision PROD is at now, so the rehearsal runs
    what PROD will run, on PROD's data. An empty PROD (at base, no tables) needs none: the INT rung,
    from empty, was its rehearsal. Anything else is not verified, with the commands that fix it.
    """
    if empty:
        ladder.add(rung, REHEARSAL, True, "not needed: PROD is empty (at base, no tables), like INT's from-empty run")
        return
    verified = [
        b
        for b in list_backups(settings.backups_dir, "prod")
        if b.verified_at and b.manifest.get("database") == prod.database
    ]
    if not verified:
        ladder.unverified(rung, REHEARSAL, f"no verified backup of PROD's '{prod.database}' here ({BACKUP_FIX})")
        return
    backup = verified[-1]
    at = backup.manifest.get("revision")
    if at != prod.revision:
        ladder.unverified(
            rung,
            REHEARSAL,
            f"the newest verified PROD backup, {backup.path.name}, is at {at or 'base'} and PROD is at "
            f"{prod.revision or 'base'} ({BACKUP_FIX})",
        )
        return
    bindir = require_bindir(settings.values, ("pg_restore",))
    with _scratch_on(server, "ladder_rehearsal", "ladder") as scratch:
        restore_archive(bindir, backup.path, scratch, len(list_archive(bindir, backup.path).data_tables), None)
        ladder.add(rung, f"rehearsal: {backup.path.name} restored", True, f"at {at or 'base'}")
        _climb(settings, script, scratch, ladder, rung + " (rehearsal)", at)


# -- the whole ladder ----------------------------------------------------------------------------------
GATE = "5 gate"


def climb(settings: Settings, clearance: Clearance, out: Output) -> Ladder:
    """Every rung, each on the databases `clearance` (the 'ladder' row's) cleared for it; then the gate."""
    ladder = Ladder(files=MigrationFiles.on_disk(settings))
    script = rung_history(settings, ladder)
    if script is None:
        return ladder
    rung_int(settings, script, ladder, clearance.target)
    if not ladder.failed:
        rung_stg(settings, script, ladder, clearance, out)
    ladder.prod = rung_prod(settings, script, ladder, clearance)
    _gate(settings, ladder)
    return ladder


def _gate(settings: Settings, ladder: Ladder) -> None:
    """Record a pass only for a ladder with no failure whose every PROD check ran and passed."""
    name = "passing ladder recorded"
    assert ladder.files is not None
    if MigrationFiles.on_disk(settings) != ladder.files:
        ladder.add(GATE, "the migration files did not change while the ladder ran", False, "run the ladder again")
    if ladder.failed:
        ladder.add(GATE, name, False, f"{len(ladder.failed)} check(s) failed: not recorded")
    elif ladder.not_verified or ladder.prod is None:
        count = len(ladder.not_verified)
        ladder.unverified(GATE, name, f"PROD not verified ({count} check(s)): not recorded, PROD stays closed")
    else:
        entry = record_pass(settings, ladder.files, ladder.prod)
        ladder.gate_open = True
        ladder.add(GATE, name, True, f"head {entry.files.head}, files {entry.files.digest[:12]}…")


def show(out: Output, ladder: Ladder) -> None:
    table = new_table("migration ladder: INT -> STG -> PROD check", "rung", "check", "result", "time", "detail")
    styles = {PASS: "green", FAIL: "bold red", SKIP: "yellow", NOT_VERIFIED: "bold yellow"}
    for c in ladder.checks:
        add_row(
            table,
            c.rung,
            c.name,
            Text(c.status, styles[c.status]),
            "" if c.seconds is None else f"{c.seconds:.2f}s",
            c.detail,
        )
    out.table(table)


def report_body(ladder: Ladder) -> dict[str, Any]:
    """What the report says (before it is signed): the gate, the facts it is bound to, every check."""
    files = ladder.files
    return {
        "format": REPORT_FORMAT,
        "gate": "open" if ladder.gate_open else "closed",
        "passed": not ladder.failed,
        "digest": files.digest if files else None,
        "head": files.head if files else None,
        "prod": asdict(ladder.prod) if ladder.prod else None,
        "failed": [f"{c.rung}: {c.name}: {c.detail}" for c in ladder.failed],
        "not_verified": [f"{c.rung}: {c.name}: {c.detail}" for c in ladder.not_verified],
        "checks": [asdict(c) for c in ladder.checks],
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "engine": __version__,
    }


def report(ladder: Ladder, path: Path, key: bytes | None) -> None:
    try:
        write_report(path, sign(report_body(ladder), key))
    except OSError as exc:
        raise Failed(
            f"the ladder's report {path} could not be written ({exc.strerror})", "pass --report a writable path"
        ) from None


def ladder_task(ctx: TaskContext, *, report_path: str | None) -> int:
    """The ladder under the guard; --apply-stg reaches it as the APPLY_STG grant (the run's option apply_stg)."""
    key = report_key(ctx.settings) if report_path else None  # a bad key is refused before any work
    ladder = climb(ctx.settings, ctx.clearance, ctx.out)
    show(ctx.out, ladder)
    if report_path:
        report(ladder, Path(report_path), key)
        ctx.out.info(f"report written to {report_path}")
        if key is None:
            ctx.out.warn(
                f"the report is not signed ({KEY_VARIABLE} is not set): db.migrate --ladder-report will refuse it"
            )
    ctx.facts["failed"] = [f"{c.rung}: {c.name}" for c in ladder.failed]
    ctx.facts["not_verified"] = [f"{c.rung}: {c.name}" for c in ladder.not_verified]
    if ladder.failed:
        ctx.out.error(f"the ladder failed: {len(ladder.failed)} check(s)")
        return 1
    if not ladder.gate_open:
        first = next((c for c in ladder.not_verified if c.rung != GATE), None)
        why = f"{first.name}: {first.detail}" if first else "PROD's checks did not run"
        ctx.out.error(f"PROD was not verified, so db.migrate --env prod stays closed ({why})")
        return 1
    ctx.out.ok("the ladder passed; db.migrate --env prod is open for exactly these migration files")
    return 0


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    """`nox -s migrations -- [--report FILE] [--apply-stg]`."""
    parser = argparse.ArgumentParser(prog="nox -s migrations --")
    parser.add_argument("--report", help="also write the results as JSON to this file (signed with LADDER_REPORT_KEY)")
    parser.add_argument("--apply-stg", action="store_true", help="migrate STG itself after its clone passed")
    args = parser.parse_args(argv)
    for noisy in ("alembic", "faker", "sqlalchemy"):  # nox turns every logger up to DEBUG
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run_task(
        "ladder",
        "int",
        {"report": args.report, "apply_stg": args.apply_stg},
        lambda ctx: ladder_task(ctx, report_path=args.report),
        settings=settings,
    )


if __name__ == "__main__":
    sys.exit(main())
