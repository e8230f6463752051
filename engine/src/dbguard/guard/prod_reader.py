"""db.prod-reader: make or repair the read-only role PROD_DATABASE_URL uses, with the PROD write credential.

What must hold when it succeeds: the role can only read PROD (`credentials.reader_problems` finds
nothing), with default_transaction_read_only=on at role level and SELECT on what exists and on what
PROD_WRITE_USER creates later. Its password, where PROD_DATABASE_URL holds one, reaches PROD only as
a SCRAM verifier computed here (never as text a statement log could keep). `--dry-run` prints the SQL,
for a database administrator to run by hand where the write role may not create roles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

from dbguard.cli.runner import TaskContext
from dbguard.errors import Failed, OpsError, Refused
from dbguard.guard.config import target_for
from dbguard.guard.credentials import WRITE_USER, app_schemas, reader_problems, reader_statements
from dbguard.guard.masking import MASK
from dbguard.guard.tiers import Tier

if TYPE_CHECKING:
    from dbguard.guard.connect import Connection

DRY_RUN_SCHEMAS = ("public", "dbguard")


def prod_reader_task(ctx: TaskContext, *, role: str | None = None) -> int:
    settings, target, out = ctx.settings, ctx.target, ctx.out
    read = target_for(settings, Tier.PROD)  # PROD_DATABASE_URL as configured: whose role this is about
    if read.embedded:
        raise Refused(
            "PROD is the embedded stand-in here: it has no read-only role to make",
            "point PROD_DATABASE_URL at the real PROD first (docs/operations.md)",
        )
    owner = settings.get(WRITE_USER).strip() or f"<{WRITE_USER}>"
    reader = role or (read.user if read.user and read.user != owner else f"{read.dbname}_reader")
    password = read.password if reader == read.user else None
    ctx.facts["role"] = reader
    if ctx.dry_run:
        try:
            with target.connect(read_only=True) as conn:
                schemas, exists = app_schemas(conn), _exists(conn, reader)
        except (OpsError, psycopg.Error):  # the reader may not exist yet: show the usual schemas
            schemas, exists = list(DRY_RUN_SCHEMAS), False
        out.plan(f"as '{owner}' on '{read.dbname}', make '{reader}' a role that can only read:")
        for statement in reader_statements(
            reader, owner, read.dbname, schemas, MASK if password else None, exists=exists
        ):
            out.plan("  " + statement.as_string(None) + ";")
        return 0
    with target.connect() as conn:
        exists = _exists(conn, reader)
        verifier = None
        if password:
            verifier = conn.pgconn.encrypt_password(password.encode(), reader.encode(), b"scram-sha-256").decode()
        for statement in reader_statements(reader, owner, read.dbname, app_schemas(conn), verifier, exists=exists):
            conn.execute(statement)
        problems = reader_problems(conn, reader)
        if problems:
            conn.rollback()
            raise Failed(
                f"'{reader}' could still write after the grants ({'; '.join(problems)}); nothing was changed",
                f"give what it owns another owner (REASSIGN OWNED BY {reader} TO {owner}) or choose another --role",
            )
    out.ok(f"'{reader}' can only read '{read.dbname}' (" + ("updated" if exists else "created") + ")")
    if verifier is None and not exists:
        out.info(
            f"'{reader}' cannot log in yet: give it a password (psql: \\password {reader}, then ALTER ROLE {reader} "
            "LOGIN) and put its URL into PROD_DATABASE_URL"
        )
    out.info("check it: invoke db.doctor")
    return 0


def _exists(conn: Connection, reader: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (reader,)).fetchone() is not None
