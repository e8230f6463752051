"""Open psycopg (and SQLAlchemy) connections to a target and turn libpq's failures into one actionable line.

These are the low-level openers. Only the guard's clearance (`dbguard.guard.cleared`) and the embedded
cluster's own admin code call them: every operation gets its connections from the clearance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
from psycopg.rows import TupleRow

from dbguard.errors import Failed, OpsError, Refused
from dbguard.guard.masking import mask_text
from dbguard.guard.targets import Target

if TYPE_CHECKING:
    from sqlalchemy import Connection as SAConnection

Connection = psycopg.Connection[TupleRow]
READ_ONLY_OPTION = "-c default_transaction_read_only=on"
# JIT compiling pays off for long analytic queries, not for these tools' statements: with it on, every
# sanitizing SELECT or verification query spent a second compiling before reading a row.
SESSION_OPTIONS = "-c jit=off"


def connect(
    target: Target,
    *,
    read_only: bool = False,
    autocommit: bool = False,
    timeout: int = 10,
    options: str = "",
) -> Connection:
    """Connect to `target`. A read-only session is enforced by the server, not only by us."""
    parts = (target.params.get("options", ""), SESSION_OPTIONS, options, READ_ONLY_OPTION if read_only else "")
    opts = " ".join(o for o in parts if o)
    extra = {"connect_timeout": str(timeout), "application_name": "guarded-db-tools"}
    if opts:
        extra["options"] = opts
    try:
        conn = psycopg.connect(target.conninfo(extra=extra), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise explain_connection_error(target, exc) from None
    if read_only:
        conn.read_only = True
    return conn


@contextmanager
def sa_connection(target: Target, *, read_only: bool = False) -> Iterator[SAConnection]:
    """A SQLAlchemy connection over our own `connect` (masked errors, read-only sessions, no URL strings)."""
    from sqlalchemy import create_engine  # noqa: PLC0415 -- only migrations and seeding need SQLAlchemy
    from sqlalchemy.pool import NullPool  # noqa: PLC0415

    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: connect(target, read_only=read_only), poolclass=NullPool
    )
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def explain_connection_error(target: Target, exc: BaseException) -> OpsError:
    """Classify a connection failure: server down, wrong password, missing database, TLS."""
    text = str(exc)
    low = text.lower()
    where = target.describe()
    var = target.source
    reason = libpq_reason(text)
    if "password authentication failed" in low or "no password supplied" in low:
        return Refused(
            f"wrong or missing password for user '{target.user}' on {where}",
            f"correct the password in {var} (in .env or the environment)",
            short="wrong or missing password",
        )
    if "does not exist" in low and "database" in low:
        fix = "run `invoke db.up`" if target.embedded else f"create it (createdb {target.dbname}) or fix {var}"
        return Refused(f"database '{target.dbname}' does not exist on {where}", fix, short="database does not exist")
    if "role" in low and "does not exist" in low:
        return Refused(
            f"role '{target.user}' does not exist on {where}",
            f"fix the user name in {var}",
            short="role does not exist",
        )
    if "ssl" in low and ("does not support" in low or "required" in low):
        return Refused(
            f"TLS could not be negotiated with {where}: {reason}",
            f"check sslmode in {var}",
            short=f"TLS failed: {reason}",
        )
    if "no pg_hba.conf entry" in low or "no encryption" in low or "rejects connection" in low:
        fix = f"add sslmode=require to {var}" if "no encryption" in low else f"check the user and host in {var}"
        return Refused(f"the server at {where} refused this connection: {reason}", fix, short=f"refused: {reason}")
    unreachable = (
        "connection refused",
        "no such file or directory",
        "timeout expired",
        "could not translate host",
        "could not connect",
        "is the server running",
        "server closed the connection",
        "unreachable",
    )
    if any(s in low for s in unreachable):
        fix = "start it with `invoke db.up`" if target.embedded else f"start the server or fix the host/port in {var}"
        return Failed(f"server for {where} is not reachable: {reason}", fix, short=f"not reachable: {reason}")
    return Failed(f"could not connect to {where}: {reason}", f"check {var}", short=reason)


def libpq_reason(text: str) -> str:
    """The essential part of a libpq message: 'Connection refused', 'FATAL: ...', masked."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else text
    reason = first.rsplit("failed: ", 1)[-1].strip()
    return mask_text(reason.replace("FATAL:  ", "FATAL: "))[:300]


def server_major_version(conn: Connection) -> int:
    return int(conn.info.server_version) // 10000
