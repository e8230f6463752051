"""PROD's two credentials: the read-only role every read uses, and the write credential a human provides.

What must always hold:
- every PROD read (backup, refresh source, ladder check, sanitize-check, status, doctor) goes through
  PROD_DATABASE_URL, whose role cannot write: not superuser, no CREATEROLE/CREATEDB/BYPASSRLS/
  REPLICATION, owns nothing, may create nothing, holds no write privilege on any table or sequence,
  is a member of no role but the predefined read-only ones, and has default_transaction_read_only=on
  at role level. So no session setting, URL option or injected `BEGIN READ WRITE` can write to PROD
  through a read path: the server refuses the role, whatever the session asks;
- a PROD write (migrate, restore, stamp, re-stamp, the app's own runtime, db.prod-reader) connects as
  PROD_WRITE_USER with a password that is never stored in `.env` or the environment: typed at the
  terminal (getpass), or printed by PROD_WRITE_PASSWORD_COMMAND (a secret manager's CLI, run without a
  shell, its output never shown) at the moment of use. A caller who holds only PROD_DATABASE_URL (a
  coding agent, say) has no way to write to PROD.

The embedded stand-in PROD of a laptop set-up has neither: it is reached through the local socket of a
cluster only its owner can use, and it holds no real data.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING

from psycopg import errors, sql

from dbguard.errors import Failed, Refused
from dbguard.guard.masking import remember_secret
from dbguard.guard.targets import Target
from dbguard.settings import Settings

if TYPE_CHECKING:
    from dbguard.guard.caller import Caller
    from dbguard.guard.connect import Connection

WRITE_USER = "PROD_WRITE_USER"
PASSWORD_COMMAND = "PROD_WRITE_PASSWORD_COMMAND"  # noqa: S105 -- a variable's name
NEVER_STORED = ("PROD_WRITE_PASSWORD", "PROD_WRITE_URL", "PROD_WRITE_DATABASE_URL")
READER_FIX = "make PROD_DATABASE_URL use a read-only role: invoke db.prod-reader --dry-run (docs/operations.md)"
COMMAND_TIMEOUT = 120.0
# predefined roles that only read; membership in any other role could lend the reader its privileges
READ_ROLES = ("pg_read_all_data", "pg_read_all_settings", "pg_read_all_stats", "pg_stat_scan_tables", "pg_monitor")
_SYSTEM_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'"


# -- the read-only role -----------------------------------------------------------------------------
def _names(rows: Sequence[tuple[object, ...]], limit: int = 3) -> str:
    shown = ", ".join(str(r[0]) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def reader_problems(conn: Connection, role: str | None = None) -> list[str]:
    """Every way `role` (default: the connected user) could write to this database; [] for a true reader.

    Read from the catalog in the caller's transaction, so it can judge a role the connection is not.
    """
    row = conn.execute(
        "SELECT oid, rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
        "FROM pg_roles WHERE rolname = coalesce(%s, current_user)",
        (role,),
    ).fetchone()
    if row is None:
        return [f"role '{role}' does not exist"]
    oid, name = row[0], str(row[1])
    found = [
        what
        for flag, what in zip(
            row[2:],
            ("is a superuser", "has CREATEROLE", "has CREATEDB", "has BYPASSRLS", "has REPLICATION"),
            strict=True,
        )
        if flag
    ]
    args = {"r": oid, "read": list(READ_ROLES)}
    owned = conn.execute(
        "SELECT count(*) FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid = %(r)s "
        "AND deptype = 'o' AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))",
        args,
    ).fetchone()
    if owned and owned[0]:
        found.append(f"owns {owned[0]} object(s)")
    member = conn.execute(
        "SELECT rolname FROM pg_roles WHERE oid <> %(r)s AND pg_has_role(%(r)s, oid, 'MEMBER') "
        "AND rolname <> ALL(%(read)s) ORDER BY 1",
        args,
    ).fetchall()
    if member:
        found.append(f"is a member of {_names(member)}")
    created = conn.execute(
        "SELECT 'the database' WHERE has_database_privilege(%(r)s, current_database(), 'CREATE') UNION ALL "
        f"SELECT format('schema %%I', n.nspname) FROM pg_namespace n WHERE {_SYSTEM_SCHEMA} "
        "AND has_schema_privilege(%(r)s, n.oid, 'CREATE')",
        args,
    ).fetchall()
    if created:
        found.append(f"may create objects in {_names(created)}")
    tables = conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind IN ('r', 'p', 'v', 'f') AND {_SYSTEM_SCHEMA} AND ("
        "has_table_privilege(%(r)s, c.oid, 'DELETE, TRUNCATE, TRIGGER') "
        "OR has_any_column_privilege(%(r)s, c.oid, 'INSERT, UPDATE, REFERENCES')) ORDER BY 1",
        args,
    ).fetchall()
    if tables:
        found.append(f"may write {len(tables)} table(s): {_names(tables)}")
    sequences = conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind = 'S' AND {_SYSTEM_SCHEMA} "
        "AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(%(r)s, c.oid, 'USAGE, UPDATE') END "
        "ORDER BY 1",
        args,
    ).fetchall()
    if sequences:
        found.append(f"may advance {len(sequences)} sequence(s): {_names(sequences)}")
    setting = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE s.setrole = %(r)s "
        "AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database())) "
        "AND c = 'default_transaction_read_only=on')",
        args,
    ).fetchone()
    if not (setting and setting[0]):
        found.append("lacks default_transaction_read_only=on at role level")
    return [f"'{name}' {what}" for what in found]


def reader_loopholes(conn: Connection) -> list[str]:
    """What PostgreSQL still lets any role do that is not a write to the app's tables (doctor warns)."""
    row = conn.execute(
        "SELECT has_function_privilege('lo_create(oid)', 'EXECUTE'), "
        "(SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        f"WHERE p.prosecdef AND {_SYSTEM_SCHEMA} AND has_function_privilege(p.oid, 'EXECUTE'))"
    ).fetchone()
    assert row is not None
    found = []
    if row[0]:
        found.append(
            "can create large objects (REVOKE EXECUTE ON FUNCTION lo_create(oid), lo_creat(integer), "
            "lo_from_bytea(oid, bytea) FROM PUBLIC closes it)"
        )
    if row[1]:
        found.append(f"may run {row[1]} SECURITY DEFINER function(s), which act as their owner")
    return found


def probe_write(conn: Connection) -> list[str]:
    """Try to write as the connected role, past any session default, in a transaction always rolled back.

    Returns the writes the server allowed ([] for a true reader). Nothing is kept: each attempt touches no
    row (`WHERE false`) or makes an object that the final ROLLBACK removes.
    """
    tables = conn.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind IN ('r', 'p') AND {_SYSTEM_SCHEMA} ORDER BY n.nspname <> 'dbguard', 1 "
        "LIMIT 4"
    ).fetchall()
    conn.rollback()
    attempts = [f"DELETE FROM {t[0]} WHERE false" for t in tables] + [
        "CREATE SCHEMA dbguard_write_probe",
        "CREATE TABLE dbguard.dbguard_write_probe (i int)",
    ]
    allowed = []
    was = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute("BEGIN READ WRITE")  # what an attacker would do: the role must refuse, not the session
        conn.execute("SET LOCAL lock_timeout = '1s'")
        for attempt in attempts:
            conn.execute("SAVEPOINT probe")
            try:
                conn.execute(attempt)
            except errors.Error:
                conn.execute("ROLLBACK TO SAVEPOINT probe")
            else:
                allowed.append(attempt.split(" WHERE")[0])
    finally:
        conn.execute("ROLLBACK")
        conn.autocommit = was
    return allowed


def reader_statements(
    reader: str, owner: str, dbname: str, schemas: Sequence[str], verifier: str | None, *, exists: bool
) -> list[sql.Composed]:
    """The SQL that makes `reader` a role that can only read `dbname` (run by `owner`, the write role).

    `verifier` is the password as PostgreSQL stores it (a SCRAM verifier made on this side, so no
    plaintext reaches PROD's logs): with one the role can log in; without one a new role is NOLOGIN
    and an existing one keeps its LOGIN and password.
    """
    role = sql.Identifier(reader)
    login = " LOGIN" if verifier else ("" if exists else " NOLOGIN")
    attributes = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS" + login
    first = sql.SQL("{} ROLE {} " + attributes).format(sql.SQL("ALTER" if exists else "CREATE"), role)
    if verifier:
        first = sql.Composed([first, sql.SQL(" PASSWORD {}").format(sql.Literal(verifier))])
    out = [
        first,
        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role),
        sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(sql.Identifier(dbname), role),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), role),
    ]
    for schema in schemas:
        s = sql.Identifier(schema)
        out += [
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(s, role),
            sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(s, role),
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(s, role),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, role),
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, role),
            sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(s, role),
        ]
    for kind in ("SELECT ON TABLES", "SELECT ON SEQUENCES", "USAGE ON SCHEMAS"):
        out.append(
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT " + kind + " TO {}").format(sql.Identifier(owner), role)
        )
    return out


def app_schemas(conn: Connection) -> list[str]:
    rows = conn.execute(f"SELECT n.nspname FROM pg_namespace n WHERE {_SYSTEM_SCHEMA} ORDER BY 1")
    return [str(r[0]) for r in rows.fetchall()]


# -- the write credential ----------------------------------------------------------------------------
def stored_write_secret(settings: Settings) -> str | None:
    """The first variable that would keep a PROD write secret in `.env` or the environment, if any is set."""
    return next((name for name in NEVER_STORED if settings.values.get(name)), None)


def write_user(settings: Settings, read: Target) -> str:
    """PROD_WRITE_USER, refused when unset, when it is PROD_DATABASE_URL's own user, or with a stored secret."""
    stored = stored_write_secret(settings)
    if stored:
        raise Refused(
            f"{stored} is set (in .env or the environment): the PROD write credential must never be stored",
            f"remove {stored} and change that password; it is typed at the prompt or fetched by {PASSWORD_COMMAND}",
        )
    user = settings.get(WRITE_USER).strip()
    if not user:
        raise Refused(
            f"a PROD write connects as {WRITE_USER}, the role that owns PROD's tables, and it is not set",
            f"set {WRITE_USER} in .env (its password is typed at the prompt or fetched by {PASSWORD_COMMAND})",
        )
    if user == read.user:
        raise Refused(
            f"{WRITE_USER} and PROD_DATABASE_URL both use '{user}': the everyday PROD credential must not write",
            READER_FIX,
        )
    return user


def write_password(settings: Settings, caller: Caller, user: str, name: str) -> str:
    """The write password, from PROD_WRITE_PASSWORD_COMMAND or typed at the terminal; never stored, never shown."""
    command = settings.get(PASSWORD_COMMAND).strip()
    if command:
        password = run_password_command(command)
    elif caller.interactive and caller.secret_prompt is not None:
        password = caller.secret_prompt(f"Password of '{user}' (the PROD write credential) for '{name}': ")
    else:
        raise Refused(
            "a PROD write needs the PROD write password, and this run has no terminal to type it at",
            f"run it yourself at a terminal, or set {PASSWORD_COMMAND} to a secret manager's command",
        )
    password = password.rstrip("\r\n")
    if not password:
        raise Refused("no PROD write password was given", "type the password of " + user)
    remember_secret(password)
    return password


def run_password_command(command: str) -> str:
    """Run PROD_WRITE_PASSWORD_COMMAND without a shell; its output is the password and is never printed."""
    try:
        argv = shlex.split(command)
    except ValueError:
        argv = []
    if not argv:
        raise Refused(f"{PASSWORD_COMMAND} is not a command", f"fix {PASSWORD_COMMAND}, e.g. op read op://vault/db/pw")
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            env=dict(os.environ),
        )
    except FileNotFoundError:
        raise Failed(f"{PASSWORD_COMMAND} names a program that is not installed", f"fix {PASSWORD_COMMAND}") from None
    except (OSError, subprocess.TimeoutExpired):
        raise Failed(f"{PASSWORD_COMMAND} could not be run to the end", "run it yourself to see why") from None
    if proc.returncode != 0:
        raise Failed(
            f"{PASSWORD_COMMAND} failed (exit {proc.returncode}); its output is not shown",
            "run it yourself to see why, then try again",
        )
    try:
        return proc.stdout.decode()
    except UnicodeDecodeError:
        raise Failed(f"{PASSWORD_COMMAND} printed something that is not text", f"fix {PASSWORD_COMMAND}") from None


def write_target(read: Target, user: str, password: str) -> Target:
    """PROD's target as the write role: the read URL's server, database and TLS settings, another user."""
    params = {k: v for k, v in read.params.items() if k != "password"} | {"user": user, "password": password}
    return Target(read.tier, params, WRITE_USER, read.embedded)
