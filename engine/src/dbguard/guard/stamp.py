"""The tier stamp: what a database says it is, stored inside it (the idea of Rails' ar_internal_metadata).

It lives in its own schema, `dbguard`, so dropping or rebuilding the app's schema never removes it,
and it records the database name it was written for, so a copy or a rename is noticed.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from dbguard.guard.connect import Connection
from dbguard.guard.tiers import Tier

STAMP_SCHEMA = "dbguard"
STAMP_TABLE = "tier_stamp"

_CREATE = f"""
CREATE SCHEMA IF NOT EXISTS {STAMP_SCHEMA};
CREATE TABLE IF NOT EXISTS {STAMP_SCHEMA}.{STAMP_TABLE} (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    tier text NOT NULL CHECK (tier IN ('int', 'stg', 'prod')),
    database_name text NOT NULL,
    stamped_at timestamptz NOT NULL DEFAULT now(),
    stamped_by text NOT NULL
);
COMMENT ON TABLE {STAMP_SCHEMA}.{STAMP_TABLE} IS
    'Tier stamp written by the guarded database tools; do not edit by hand (use invoke db.stamp).';
"""


@dataclass(frozen=True)
class Stamp:
    tier: Tier
    database_name: str
    stamped_at: datetime
    stamped_by: str


def read_stamp(conn: Connection) -> Stamp | None:
    """The stamp of the connected database, or None where it has none."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{STAMP_SCHEMA}.{STAMP_TABLE}",))
        row = cur.fetchone()
        if not row or not row[0]:
            return None
        cur.execute(
            sql.SQL("SELECT tier, database_name, stamped_at, stamped_by FROM {}.{}").format(
                sql.Identifier(STAMP_SCHEMA), sql.Identifier(STAMP_TABLE)
            )
        )
        found = cur.fetchone()
    if found is None:
        return None
    tier, name, at, by = found
    assert isinstance(at, datetime)
    return Stamp(Tier(str(tier)), str(name), at, str(by))


def tables_with_rows(conn: Connection, limit: int = 3) -> list[str]:
    """Up to `limit` tables of the database that hold at least one row (the tools' own schema and Alembic's
    version table aside): a database that answers non-empty holds someone's data. A table the role may not
    read counts as holding rows. Run it on an autocommit connection (a refused read must not end the scan)."""
    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema', %s) AND n.nspname NOT LIKE 'pg\\_%%' AND c.relname <> 'alembic_version' ORDER BY 1, 2",
        (STAMP_SCHEMA,),
    ).fetchall()
    found: list[str] = []
    for schema, name in tables:
        table = sql.Identifier(str(schema), str(name))
        try:
            row = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(table)).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            row = (True,)
        if row and row[0]:
            found.append(f"{schema}.{name}")
            if len(found) >= limit:
                break
    return found


def write_stamp(conn: Connection, tier: Tier, database_name: str) -> None:
    """Create or replace the stamp, in the caller's transaction."""
    by = f"{getpass.getuser()} via guarded-db-tools"
    with conn.cursor() as cur:
        cur.execute(_CREATE)
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.{} (singleton, tier, database_name, stamped_by) VALUES (true, %s, %s, %s) "
                "ON CONFLICT (singleton) DO UPDATE SET tier = EXCLUDED.tier, "
                "database_name = EXCLUDED.database_name, stamped_at = now(), stamped_by = EXCLUDED.stamped_by"
            ).format(sql.Identifier(STAMP_SCHEMA), sql.Identifier(STAMP_TABLE)),
            (tier.value, database_name, by),
        )
