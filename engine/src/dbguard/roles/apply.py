"""db.roles: make a tier's roles and grants match the ownership matrix, changing only the difference.

What must hold: the current state is always read from the catalog first and the difference shown (a
table, before anything is written); `--dry-run` shows it and writes nothing; the changes run in one
transaction, which commits only when a fresh read finds no difference left and no component role
that owns or may create objects (else nothing is kept); re-running finds nothing to do. On STG and
PROD the role and grant state is saved first (`pg_dumpall --roles-only --no-role-passwords` and
`pg_dump --schema-only`, which holds the owners, grants and policies, into BACKUP_DIR/roles/, 0600).
Passwords come from `dbguard.roles.passwords` and reach the server only as SCRAM verifiers.

`carry_roles` is what a reset, a restore or a refresh calls before it swaps a new database in (or, for
INT's in-place reset, before its transaction commits): when db.roles was applied to the database
being replaced (the migrator holds CONNECT on it), the matrix's owners, grants and policies are
applied to the new one too. Database-level grants are carried by the swap itself (cluster/scratch.py).
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from dbguard.backup.files import ensure_backups_dir
from dbguard.cli.console import add_row, new_table
from dbguard.cluster.pgtools import require_bindir
from dbguard.errors import Failed, Refused
from dbguard.guard.config import target_for
from dbguard.guard.masking import mask_text
from dbguard.guard.tiers import Tier
from dbguard.ownership import bad_row_owners, matrix, missing, parents, undeclared
from dbguard.roles.names import RoleNames, role_names
from dbguard.roles.passwords import component_password, source_of
from dbguard.roles.plan import Change, Wanted, missing_tables, plan
from dbguard.roles.state import POWERS, State, read_state

if TYPE_CHECKING:
    from dbguard.cli.console import Output
    from dbguard.cli.runner import TaskContext
    from dbguard.guard.cleared import Cleared
    from dbguard.guard.connect import Connection
    from dbguard.guard.targets import Target
    from dbguard.settings import Settings

STATE_DIR = "roles"
MODELS_FIX = 'declare each table\'s owners in the models: __table_args__ = {"info": owned("app", readers=(...))}'


# -- what is wanted -----------------------------------------------------------------------------------
def checked_matrix(settings: Settings, tier: Tier) -> Wanted:
    """The matrix of the app's models, refused when a table has no entry or names an unlisted component."""
    names = role_names(settings, tier)
    metadata = settings.project.metadata
    absent = missing(metadata)
    if absent:
        raise Refused(f"table(s) without an ownership entry: {', '.join(absent)}", MODELS_FIX)
    unknown = undeclared(metadata, names.components)
    if unknown:
        raise Refused(
            f"the ownership matrix names components [tool.dbguard] components does not list ({', '.join(unknown)})",
            f"add them to components in {settings.root / 'pyproject.toml'}",
        )
    bad = bad_row_owners(metadata)
    if bad:
        raise Refused(f"row_owner names no column: {', '.join(bad)}", "fix row_owner in the models")
    return Wanted(names, matrix(metadata), parents=parents(metadata))


def reader_of(settings: Settings, tier: Tier, target: Target) -> str | None:
    """PROD's read-only role (PROD_DATABASE_URL's user), which the tools read through; None elsewhere."""
    if tier is not Tier.PROD or target.embedded:
        return None
    return target_for(settings, Tier.PROD).user or None


def schemas_of(wanted: Wanted) -> set[str]:
    return {t.split(".", 1)[0] for t, _ in wanted.matrix}


def role_list(names: RoleNames, reader: str | None) -> list[str]:
    return [names.migrator, *names.component_roles, *([reader] if reader else [])]


def read(conn: Connection, wanted: Wanted) -> State:
    return read_state(conn, schemas_of(wanted), role_list(wanted.names, wanted.reader))


# -- showing and applying -----------------------------------------------------------------------------
def show_changes(out: Output, changes: list[Change], title: str) -> None:
    table = new_table(title, "object", "role", "change")
    for c in changes:
        add_row(table, c.object, c.role, c.change)
    out.table(table)


def apply_changes(conn: Connection, changes: list[Change]) -> None:
    """Run every change's SQL in the connection's transaction; passwords as verifiers made here."""
    for change in changes:
        for statement in change.statements:
            conn.execute(statement)
        if change.password is not None:
            role, password = change.password
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier)))


def component_problems(conn: Connection, names: RoleNames) -> list[str]:
    """Each way a component role (group or login) could own or create objects: `role: what`."""
    rows = conn.execute(
        "SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication, "
        "(SELECT count(*) FROM pg_shdepend d WHERE d.refclassid = 'pg_authid'::regclass AND d.refobjid = r.oid "
        "AND d.deptype = 'o' AND d.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))), "
        "has_database_privilege(r.oid, current_database(), 'CREATE'), "
        "ARRAY(SELECT n.nspname FROM pg_namespace n WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_%%' AND has_schema_privilege(r.oid, n.oid, 'CREATE') ORDER BY 1) "
        "FROM pg_roles r WHERE r.rolname = ANY(%s) ORDER BY 1",
        (list(names.component_roles),),
    ).fetchall()
    found = []
    for name, su, createrole, createdb, bypass, replication, owned, create_db, schemas in rows:
        flags = [w for f, w in zip((su, createrole, createdb, bypass, replication), POWERS, strict=True) if f]
        what = [f"is {', '.join(flags)}"] if flags else []
        what += [f"owns {owned} object(s)"] if owned else []
        what += ["may create in the database"] if create_db else []
        what += [f"may create in schema {', '.join(schemas)}"] if schemas else []
        found += [f"{name}: {w}" for w in what]
    return found


def is_managed(conn: Connection, dbname: str, names: RoleNames) -> bool:
    """Whether db.roles was applied to `dbname`: its migrator holds CONNECT on it (any connection to the server)."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a JOIN pg_roles r ON r.oid = a.grantee "
        "WHERE d.datname = %s AND r.rolname = %s AND a.privilege_type = 'CONNECT')",
        (dbname, names.migrator),
    ).fetchone()
    return bool(row and row[0])


def save_role_state(settings: Settings, target: Cleared, tier: Tier) -> Path:
    """The roles (no passwords) and this database's owners, grants and policies, as SQL, kept 0600."""
    bindir = require_bindir(settings.values, ("pg_dump", "pg_dumpall"))
    roles = target.run_tool(bindir, "pg_dumpall", ["--roles-only", "--no-role-passwords"], read_only=True)
    schema = target.run_tool(bindir, "pg_dump", ["--schema-only"], read_only=True)
    folder = ensure_backups_dir(settings.backups_dir) / STATE_DIR  # the backups folder made private (0700) first
    folder.mkdir(exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{tier.value}-{target.dbname}-roles-{stamp}.sql"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(b"-- role and grant state before db.roles (roles without passwords, then the schema)\n")
        fh.write(roles.stdout or b"")
        fh.write(schema.stdout or b"")
    return path


def roles_task(ctx: TaskContext) -> int:
    """db.roles [--env T] [--dry-run]: the roles and grants of the matrix on this tier, the difference only."""
    settings, target, out, tier = ctx.settings, ctx.target, ctx.out, ctx.tier
    base = checked_matrix(settings, tier)
    reader = reader_of(settings, tier, target)
    names = base.names
    passwords = {}
    for component in names.components:
        given = component_password(settings, tier, component, embedded=target.embedded)
        if given is not None:
            passwords[component] = (given, source_of(settings, tier, component, embedded=target.embedded))
    wanted = Wanted(
        names,
        base.matrix,
        passwords,
        reader,
        applying=True,
        parents=base.parents,
        idle_timeout=settings.get("COMPONENT_IDLE_TIMEOUT"),
    )
    with target.connect(read_only=ctx.dry_run) as conn:
        state = read(conn, wanted)
        if reader and reader not in state.roles:
            out.warn(f"PROD's read-only role '{reader}' does not exist: make it with invoke db.prod-reader, then again")
            wanted = replace(wanted, reader=None)
        changes = plan(state, wanted)
    absent = missing_tables(state, wanted.matrix)
    if absent:
        out.warn(f"not in {target.dbname} yet (migrate first): {', '.join(absent)}")
    for component in names.components:
        if component not in passwords:
            out.warn(
                f"{names.login(component)} has no password from {source_of(settings, tier, component, embedded=False)}"
                " (it cannot log in with one until that is set and db.roles runs again)"
            )
    ctx.facts["changes"] = len(changes)
    if not changes:
        out.ok(f"the roles and grants of {target.dbname} match the ownership matrix: nothing to change")
        return 0
    show_changes(out, changes, f"db.roles on {target.dbname}: {len(changes)} change(s)")
    if ctx.dry_run:
        out.plan(f"apply these {len(changes)} change(s) in one transaction (nothing was changed)")
        return 0
    if ctx.clearance.rule.backup_first:
        saved = save_role_state(settings, target, tier)
        ctx.facts["backup"] = saved.name
        out.info(f"role and grant state saved to {saved}")
    with target.connect() as conn:
        try:
            apply_changes(conn, plan(read(conn, wanted), wanted))  # planned again inside the transaction
        except psycopg.Error as exc:
            conn.rollback()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Failed(
                f"the server refused a change ({mask_text(first)}); nothing was changed",
                f"run db.roles as a role that owns {target.dbname}'s tables and has CREATEROLE (or a superuser)",
            ) from None
        left = plan(read(conn, wanted), wanted)
        problems = component_problems(conn, names)
        if left or problems:
            conn.rollback()
            what = [f"{c.role} {c.object}: {c.change}" for c in left[:3]] + problems[:3]
            raise Failed(
                f"the roles still differ from the matrix after applying ({'; '.join(what)}); nothing was changed",
                "fix what is named by hand (an ALTER a non-superuser may not run?), then invoke db.roles again",
            )
        conn.commit()
    out.ok(f"{len(changes)} change(s) applied: {target.dbname}'s roles and grants match the ownership matrix")
    out.info("check it: invoke db.doctor")
    return 0


# -- keeping them through a swap ------------------------------------------------------------------------
def carry_roles(settings: Settings, tier: Tier, live: Target, conn: Connection, out: Output | None) -> int:
    """Apply the matrix's owners, grants and policies to `conn`'s database when `live` (the database it
    replaces, or itself) has roles applied. Roles themselves are server-wide and stay as they are; a role
    that is missing is left to db.roles (said in one line). Runs in `conn`'s transaction; returns the number
    of changes made."""
    if not is_managed(conn, live.dbname, role_names(settings, tier)):
        return 0
    try:
        base = checked_matrix(settings, tier)
    except Refused as exc:  # the ladder and db.roles refuse it; a reset or restore goes on, and says so
        if out is not None:
            out.warn(f"grants not re-applied: {exc.message} -> {exc.fix}")
        return 0
    wanted = Wanted(base.names, base.matrix, None, reader_of(settings, tier, live), roles=False, parents=base.parents)
    state = read(conn, wanted)
    absent = [r for r in role_list(wanted.names, wanted.reader) if r not in state.roles]
    if absent:
        if out is not None:
            out.warn(f"roles missing ({', '.join(absent)}): grants not re-applied; invoke db.roles --env {tier.value}")
        return 0
    changes = plan(state, wanted)
    apply_changes(conn, changes)
    if out is not None and changes:
        out.info(f"ownership matrix re-applied: {len(changes)} owner, grant and policy change(s)")
    return len(changes)


def carry_roles_into(settings: Settings, tier: Tier, live: Target, into: Cleared, out: Output | None) -> int:
    """`carry_roles` on the scratch database `into`, committed (before it is swapped in)."""
    with into.connect() as conn:
        made = carry_roles(settings, tier, live, conn, out)
        conn.commit()
    return made


def regrant_after_migration(settings: Settings, tier: Tier, target: Cleared, out: Output) -> int:
    """After a migration on a database `db.roles` manages: tables it added get the matrix's owner, grants and
    policies at once, instead of no grants until the next db.roles. A change the migrating role may not make
    (it cannot hand a table to the migrator) leaves the migration as it is and says what to run."""
    try:
        return carry_roles_into(settings, tier, target, target, out)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fix = f"invoke db.roles --env {tier.value}"
        out.warn(f"grants not re-applied after the migration ({mask_text(first)}) -> {fix}")
        return 0
