"""db.refresh-staging: a consistent, sanitized, atomic copy of PROD into STG.

1. PROD is only read: one REPEATABLE READ, READ ONLY transaction exports its snapshot; pg_dump and
   every copy stream import it, so the copy is of one moment even while PROD takes writes.
2. Sanitizing happens inside PROD, in the SELECT that feeds COPY: raw PII never leaves PROD. The
   sanitizing key reaches PROD as a session setting, never in SQL text, so PROD's logs never hold it.
3. Strict coverage: PROD's live schema is checked against the policy before anything is copied;
   `sql:` rules are parsed into one expression each and re-rendered (safe_sql.py), never pasted.
4. Schema from one pg_dump of the snapshot: pre-data before the rows; each table's keys and indexes
   as soon as its rows are in and checked, a foreign key once both its tables are ready (post_data.py),
   all spread over the cores together with the copies (jobs.py). Rows by binary COPY: PROD's psql
   piped straight into the copy's psql (nothing relays the bytes), FREEZE after a TRUNCATE in the same
   transaction. Sequences set to PROD's values, the result stamped STG, its Alembic revision PROD's.
5. Built in a scratch database and verified table by table as it arrives (rows equal PROD's count in
   the snapshot; no PROD email, name or phone value anywhere: pii_scan.py), then swapped in. The STG
   it replaces is kept as `<stg>__previous`, STG's undo point (renamed, never copied); `--undo` swaps
   it back; the newest STG_UNDO_KEEP undo points are kept.

PROD is reached only as the clearance's SOURCE grant: the policy cell of refresh-staging on STG grants
PROD under 'refresh-source', so the guard checks PROD's configuration and stamp with STG's and hands it
out read-only.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from psycopg import IsolationLevel, sql

from dbguard.backup.archive import list_archive
from dbguard.backup.undo import Aside, put_back
from dbguard.cli.console import Output, add_row, new_table
from dbguard.cli.runner import TaskContext
from dbguard.cluster.children import die_with_parent
from dbguard.cluster.pgtools import first_error_line, require_bindir
from dbguard.cluster.scratch import PREVIOUS, sibling_name
from dbguard.errors import Failed, Refused
from dbguard.failpoints import failpoint
from dbguard.guard.cleared import Cleared
from dbguard.guard.connect import Connection
from dbguard.guard.policy import SOURCE
from dbguard.guard.stamp import write_stamp
from dbguard.guard.targets import Target
from dbguard.guard.tiers import Tier
from dbguard.migrations.history import current_revision
from dbguard.refresh.constraints import REDRAWN_KINDS, constraint_conflicts, redraw_duplicates, require_kept
from dbguard.refresh.expressions import SanitizeKey, sanitized_select
from dbguard.refresh.failures import RETRY_FIX, refresh_failed
from dbguard.refresh.jobs import Job, run_jobs
from dbguard.refresh.pii_scan import (
    Leak,
    check_constants,
    drop_probe,
    load_probe,
    needs_scan,
    prod_pii_hashes,
    reroll_table,
    rerolled,
    scan_table,
)
from dbguard.refresh.post_data import Step, plan_post_data
from dbguard.refresh.rules import (
    Coverage,
    LiveTable,
    MaskRule,
    app_schemas,
    check_coverage,
    live_schema,
    load_policy,
    require_coverage,
)
from dbguard.reports.status import human_size

WORKERS = max(2, min(os.cpu_count() or 2, 8))  # copies, checks and index builds at once
SOURCE_OPTIONS = "-c jit=off"  # compiling pays off for long analytic queries, not for these streams
PSQL = ("-X", "-v", "ON_ERROR_STOP=1")  # every psql the refresh runs stops at the first error


def previous_name(stg: Target) -> str:
    return sibling_name(stg.dbname, PREVIOUS)


def check_target_is_safe(ctx: TaskContext) -> None:
    flag = ctx.settings.get("STG_TARGET_IS_SAFE").strip().lower() in {"1", "true", "yes"}
    if not ctx.target.is_local and not flag:
        raise Refused(
            f"STG {ctx.target.describe()} is not a local database; a refresh writes a full copy there",
            "if that server is meant for it, set STG_TARGET_IS_SAFE=1",
        )


def source_target(ctx: TaskContext) -> Cleared:
    """PROD as the guard cleared it with STG: its stamp and the configuration checked, read-only sessions."""
    prod = ctx.clearance.db(SOURCE)
    if prod.identity() == ctx.target.identity():
        raise Refused("PROD and STG are the same database", "give STG its own database")
    return prod


def table_sizes(conn: Connection, tables: list[LiveTable]) -> dict[str, tuple[int, int]]:
    rows = conn.execute(
        "SELECT format('%%s.%%s', n.nspname, c.relname), c.reltuples::bigint, pg_table_size(c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE format('%%s.%%s', n.nspname, c.relname) "
        "= ANY(%s)",
        ([t.qualified for t in tables],),
    ).fetchall()
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


def show_plan(
    out: Output,
    tables: list[LiveTable],
    coverage: Coverage,
    sizes: dict[str, tuple[int, int]],
    title: str = "refresh plan: PROD -> STG (sanitized inside PROD)",
) -> None:
    """Each table's columns with their rules; rows as PROD's statistics estimate them ('?': never analyzed)."""
    table = new_table(title, "table", "column", "rule", "rows (est.)", "size")
    for t in tables:
        if t.qualified in coverage.skipped:
            add_row(table, t.qualified, "*", "skip (copied empty)", "-", "-")
            continue
        rows, size = sizes.get(t.qualified, (0, 0))
        for i, c in enumerate(t.columns):
            rule = coverage.rules.get(t.qualified, {}).get(c.name)
            add_row(
                table,
                t.qualified if i == 0 else "",
                c.name,
                str(rule) if rule else "UNCLASSIFIED",
                ("?" if rows < 0 else f"{rows:,}") if i == 0 else "",
                human_size(size) if i == 0 else "",
            )
    out.table(table)


def refresh_task(ctx: TaskContext, *, undo: bool = False) -> int:
    if undo:
        return undo_refresh(ctx)
    settings, stg, out = ctx.settings, ctx.target, ctx.out
    check_target_is_safe(ctx)
    prod = source_target(ctx)
    policy = load_policy(settings)
    bindir = require_bindir(settings.values, ("pg_dump", "pg_restore", "psql"))
    began = time.monotonic()
    with prod.connect(read_only=True) as snap:
        snap.isolation_level = IsolationLevel.REPEATABLE_READ
        row = snap.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        tables = live_schema(snap, app_schemas(snap))
        coverage = check_coverage(policy, tables)
        sizes = table_sizes(snap, tables)
        if ctx.dry_run:
            show_plan(out, tables, coverage, sizes)
            require_coverage(coverage)
            require_kept(constraint_conflicts(prod, tables, coverage), out)
            out.plan(
                f"copy {len(coverage.rules)} tables from PROD's snapshot into a scratch database on STG's "
                f"server, verify, keep the current STG as {previous_name(stg)} (its undo point), swap the copy in"
            )
            return 0
        require_coverage(coverage)
        require_kept(constraint_conflicts(prod, tables, coverage), out)
        copied = [t for t in tables if t.qualified not in coverage.skipped]
        with tempfile.TemporaryDirectory(prefix="refresh-") as folder:
            key = SanitizeKey.of(settings)
            run = Refresh(ctx, prod, snap, str(row[0]), bindir, copied, coverage, sizes, key, Path(folder))
            revision = current_revision(snap)
            keeper = Aside(ctx, "refresh")
            with keeper as into:
                run.build(into, revision)
                keeper.swap(into, note="refresh-staging", failpoint_name="refresh:before-swap")
    seconds = time.monotonic() - began
    total_rows = sum(run.received.values())
    rules = Counter(r.kind for t in copied for r in coverage.rules[t.qualified].values())
    ctx.facts.update({"tables": len(copied), "rows": total_rows, "bytes": run.size, "revision": revision})
    out.ok(
        f"refreshed {stg.dbname} from PROD: {len(copied)} tables, {total_rows:,} rows, {human_size(run.size)} in "
        f"{seconds:.1f}s; revision {revision}; rules: " + ", ".join(f"{k} {n}" for k, n in sorted(rules.items()))
    )
    out.info(f"the previous STG is kept as {previous_name(stg)}: invoke db.refresh-staging --undo puts it back")
    return 0


@dataclass
class Refresh:
    """One refresh's state: PROD's snapshot, what to copy, and what the copy streams and checks found."""

    ctx: TaskContext
    prod: Cleared
    snap: Connection
    snapshot: str
    bindir: Path
    tables: list[LiveTable]  # the ones copied (skipped tables are created empty)
    coverage: Coverage
    sizes: dict[str, tuple[int, int]]
    key: SanitizeKey
    folder: Path
    counts: dict[str, int] = field(default_factory=dict)  # PROD's rows per table in the snapshot
    received: dict[str, int] = field(default_factory=dict)  # rows each copy stream wrote
    prod_hashes: int = 0
    redrawn: int = 0
    kept_apart: int = 0  # fakes drawn again because a unique key repeated (constraints.redraw_duplicates)
    size: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    probing: Future[None] = field(default_factory=Future)

    @property
    def out(self) -> Output:
        return self.ctx.out

    def build(self, into: Cleared, revision: str | None) -> None:
        """Schema, rows, checks, keys and indexes into `into`; then sequences and the stamp."""
        archive = self.folder / "schema.dump"
        with self.said("reading PROD's schema"):
            self.prod.run_tool(
                self.bindir,
                "pg_dump",
                [
                    "--format=custom",
                    "--schema-only",
                    f"--snapshot={self.snapshot}",
                    "--exclude-schema=dbguard",
                    f"--file={archive}",
                ],
                read_only=True,
            )
        steps = plan_post_data(self.snap, list_archive(self.bindir, archive, "post-data").lines)
        sequences = self.snap.execute(
            "SELECT schemaname, sequencename, last_value FROM pg_sequences "
            "WHERE schemaname = ANY(%s) AND last_value IS NOT NULL",
            (list(app_schemas(self.snap)),),
        ).fetchall()
        began = time.monotonic()
        with ThreadPoolExecutor(1, thread_name_prefix="probe") as side:  # beside the copies, not in their slots
            self.probing = side.submit(self.probe, into)
            run_jobs(self.jobs(into, archive, steps), WORKERS)
            self.probing.result()
        self.out.info(
            f"rows copied, checked, keys and indexes built in {time.monotonic() - began:.1f}s "
            f"({len(self.tables)} tables, {len(steps)} schema steps, {WORKERS} at a time)"
        )
        with into.connect() as conn:
            drop_probe(conn)
            copied_revision = current_revision(conn)
            if copied_revision != revision:
                raise Failed(
                    f"the copy is at revision {copied_revision}, PROD at {revision}; STG is untouched",
                    "run the refresh again",
                )
            for schema, name, value in sequences:
                conn.execute(
                    sql.SQL("SELECT setval({}, %s, true)").format(sql.Literal(f'"{schema}"."{name}"')), (int(value),)
                )
            write_stamp(conn, Tier.STG, self.ctx.target.dbname)
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            self.size = int(size[0]) if size else 0
        self.out.ok(
            f"verified: rows per table equal PROD's snapshot ({sum(self.counts.values()):,} rows); no PROD email, "
            f"name or phone value found in the copy ({self.prod_hashes:,} checked; {self.redrawn} fake(s) that "
            "happened to equal a real value were drawn again)"
            + (f"; {self.kept_apart} fake(s) that repeated in a unique key drawn again" if self.kept_apart else "")
        )

    def jobs(self, into: Cleared, archive: Path, steps: list[Step]) -> list[Job]:
        """Copies (largest first), each table's checks after its copy, its keys and indexes after its checks,
        a foreign key after both its tables' keys and indexes, the rest of the schema last."""
        size = {t.qualified: float(self.sizes.get(t.qualified, (0, 0))[1]) for t in self.tables}
        copies = [f"copy:{t.qualified}" for t in self.tables]
        checks = [f"check:{t.qualified}" for t in self.tables]
        jobs = [
            Job("pre-data", lambda: self.pre_data(into, archive), priority=5e12),
            Job("rows-copied", lambda: failpoint("refresh:rows-copied"), set(copies), 6e12),
        ]
        for t, copy, check in zip(self.tables, copies, checks, strict=True):
            jobs.append(Job(copy, partial(self.copy, into, t), {"pre-data"}, 3e12 + size[t.qualified]))
            # a check that draws fakes again goes first: its table's keys, and their foreign keys, wait for it
            rules = self.coverage.rules[t.qualified]
            redraws = any(rerolled(c, rules.get(c.name)) for c in t.columns) or keeps_apart(t, rules)
            jobs.append(
                Job(check, partial(self.check, into, t), {copy}, (4e12 if redraws else 2e12) + size[t.qualified])
            )
        keys = {s.table: s.name for s in steps if s.kind == "keys"}
        indexes: dict[str, set[str]] = {}
        for step in steps:
            if step.kind == "index":
                indexes.setdefault(step.table, set()).add(step.name)

        def rows_in(table: str) -> set[str]:  # a copied table's rows are in and checked; others are empty
            return {f"check:{table}"} if table in size else {"pre-data"}

        def built(table: str) -> set[str]:
            return rows_in(table) | ({keys[table]} if table in keys else set()) | indexes.get(table, set())

        for step in steps:
            if step.kind == "keys":
                after = rows_in(step.table)
            elif step.kind == "index":
                after = rows_in(step.table) | ({keys[step.table]} if step.table in keys else set())
            elif step.kind == "fk":
                after = built(step.table) | built(step.references)
            else:
                after = {s.name for s in steps if s.kind != "rest"} | set(checks) | {"pre-data"}
            priority = 1e12 + size.get(step.table, 0.0)
            jobs.append(Job(step.name, partial(self.post, into, archive, step), after, priority))
        return jobs

    @contextmanager
    def said(self, step: str) -> Iterator[None]:
        """A tool's failure during `step` as the refresh says it (failures.py): never a restore's wording."""
        try:
            yield
        except Failed as exc:
            line = exc.message.split(" failed: ", 1)[-1]
            raise refresh_failed(step, line, self.tables, self.coverage) from None

    def pre_data(self, into: Cleared, archive: Path) -> None:
        with self.said("creating the copy's tables"):
            into.run_tool(
                self.bindir,
                "pg_restore",
                ["--section=pre-data", "--no-owner", "--no-acl", "--exit-on-error", str(archive)],
            )
        self.out.info("the copy's tables created from the schema of PROD's snapshot")
        failpoint("refresh:schema-created")

    def post(self, into: Cleared, archive: Path, step: Step) -> None:
        listing = self.folder / f"{step.name.replace(':', '-').replace('/', '_')}.list"
        listing.write_text("\n".join(step.lines) + "\n")
        what = {"keys": "keys and checks", "index": "an index", "fk": "a foreign key"}.get(step.kind, "the rest")
        with self.said(f"building {what} of {step.table or 'the schema'} in the copy"):
            into.run_tool(
                self.bindir,
                "pg_restore",
                ["--no-owner", "--no-acl", "--exit-on-error", f"--use-list={listing}", str(archive)],
            )

    def probe(self, into: Cleared) -> None:
        """PROD's rows per table and the keyed hashes of its emails, names and phones, in the snapshot (a
        second session imports it); the hashes into the copy; the word lists and fixed values checked."""
        with self.prod.connect(read_only=True, options=f"{SOURCE_OPTIONS} {self.key.options}") as conn:
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)))
            for t in self.tables:
                q = sql.SQL("SELECT count(*) FROM {}").format(t.relation)
                row = conn.execute(q).fetchone()
                self.counts[t.qualified] = int(row[0]) if row else 0
            hashes = prod_pii_hashes(conn, self.tables, self.coverage)
        self.prod_hashes = len(hashes)
        with into.connect(options=self.key.options) as conn:
            load_probe(conn, hashes)
            conn.commit()
            self.fail_on(check_constants(conn, self.tables, self.coverage))

    def copy(self, into: Cleared, table: LiveTable) -> None:
        """One binary COPY stream: PROD's psql (the sanitizing SELECT, in the snapshot) piped into the copy's
        psql (FREEZE, after a TRUNCATE in the same transaction). The SELECT reaches psql on its stdin."""
        name = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name)).as_string(None)
        columns = ", ".join(sql.Identifier(c.name).as_string(None) for c in table.columns)
        select = sanitized_select(table, self.coverage.rules[table.qualified]).as_string(None)
        send = [
            *PSQL,
            "-q",
            "-c",
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            "-c",
            f"SET TRANSACTION SNAPSHOT {sql.Literal(self.snapshot).as_string(None)}",
            "-f",
            "-",
            "-c",
            "COMMIT",
        ]
        # FREEZE (no later vacuum rewrites the pages) needs a TRUNCATE in the same transaction; a partitioned
        # table takes neither: COPY routes each row to its partition
        freeze = ["-c", f"TRUNCATE ONLY {name}"] if not table.partitioned else []
        receive = [
            *PSQL,
            "-c",
            "BEGIN",
            *freeze,
            "-c",
            f"COPY {name} ({columns}) FROM STDIN (FORMAT binary{'' if table.partitioned else ', FREEZE'})",
            "-c",
            "COMMIT",
        ]
        options = f"{SOURCE_OPTIONS} {self.key.options}"
        with (
            self.prod.tool(self.bindir, "psql", send, read_only=True, options=options) as (send_argv, send_env),
            into.tool(self.bindir, "psql", receive) as (receive_argv, receive_env),
        ):
            sender = subprocess.Popen(
                send_argv,
                env=send_env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=die_with_parent(),
            )
            try:
                receiver = subprocess.Popen(
                    receive_argv,
                    env=receive_env,
                    stdin=sender.stdout,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    preexec_fn=die_with_parent(),
                )
            except BaseException:
                sender.kill()
                sender.wait()
                raise
            assert sender.stdout is not None
            sender.stdout.close()  # the receiver holds the pipe now
            sender.stdout = None
            _, send_err = sender.communicate(f"COPY ({select}) TO STDOUT (FORMAT binary);\n".encode())
            received, receive_err = receiver.communicate()
        # the side that failed first: a receiver that refused a row makes the sender's pipe break after it
        reading = refresh_failed(
            f"reading {table.qualified} from PROD", first_error_line(send_err), self.tables, self.coverage
        )
        writing = refresh_failed(
            f"writing {table.qualified} into the copy", first_error_line(receive_err), self.tables, self.coverage
        )
        if receiver.returncode != 0 and (sender.returncode == 0 or writing.fix != RETRY_FIX):
            raise writing
        if sender.returncode != 0:
            raise reading
        if receiver.returncode != 0:
            raise writing
        match = re.search(rb"^COPY (\d+)$", received, re.MULTILINE)
        self.received[table.qualified] = int(match.group(1)) if match else -1

    def check(self, into: Cleared, table: LiveTable) -> None:
        """The table's rows against PROD's count; coinciding fakes drawn again; its text scanned (pii_scan.py)."""
        self.probing.result()  # PROD's counts and hashes (the probe loaded into the copy)
        expected, got = self.counts[table.qualified], self.received[table.qualified]
        if got != expected:
            raise Failed(
                f"the copy's row counts differ from PROD's snapshot in {table.qualified} ({got:,} copied, "
                f"{expected:,} in PROD); STG is untouched",
                "run the refresh again",
            )
        rules = self.coverage.rules[table.qualified]
        apart = keeps_apart(table, rules)
        if not apart and not any(
            rerolled(c, rules.get(c.name)) or needs_scan(c, rules.get(c.name)) for c in table.columns
        ):
            return
        with into.connect(options=self.key.options) as conn:
            redrawn = reroll_table(conn, table, rules)
            drawn = redraw_duplicates(conn, table, rules) if apart else 0
            leaks = redrawn.unresolved + scan_table(conn, table, rules)
        with self.lock:
            self.redrawn += redrawn.fixed
            self.kept_apart += drawn
        self.fail_on(leaks)

    def fail_on(self, leaks: list[Leak]) -> None:
        if leaks:
            where = ", ".join(f"{leak.where} ({leak.values})" for leak in leaks)
            raise Failed(
                f"the copy still holds PROD emails, names or phones in {where}; STG is untouched",
                "classify those columns (app/models.py PII classes or the SANITIZE_POLICY file)",
            )


def keeps_apart(table: LiveTable, rules: dict[str, MaskRule]) -> bool:
    """Whether the table has a unique key over a column whose fakes the copy's check may draw again."""
    return any(
        k.kind == "unique" and any(rules.get(c) and rules[c].kind in REDRAWN_KINDS for c in k.columns)
        for k in table.constraints
    )


def undo_refresh(ctx: TaskContext) -> int:
    """Swap the previous STG back (and the current one into the 'previous' slot)."""
    return put_back(ctx)


def sanitize_check_task(ctx: TaskContext) -> int:
    """Does the policy cover PROD's live schema? Reads PROD's catalog only; copies nothing."""
    policy = load_policy(ctx.settings)
    with ctx.target.connect(read_only=True) as conn:
        tables = live_schema(conn, app_schemas(conn))
        sizes = table_sizes(conn, tables)
    coverage = check_coverage(policy, tables)
    show_plan(ctx.out, tables, coverage, sizes, "sanitizing check: PROD's live columns and their rules")
    require_coverage(coverage)
    require_kept(constraint_conflicts(ctx.target, tables, coverage), ctx.out)
    kept = sum(len(t.constraints) for t in tables if t.qualified in coverage.rules)
    ctx.out.ok(
        f"the policy covers PROD's live schema: {len(coverage.rules)} tables, "
        f"{sum(len(r) for r in coverage.rules.values())} columns; its rules keep PROD's NOT NULL columns and "
        f"{kept} unique, check and foreign key constraints"
    )
    return 0
