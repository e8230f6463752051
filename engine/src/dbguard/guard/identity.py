"""Which server and database a connection reached: the pin the guard takes when it reads a stamp.

What must always hold: every connection an operation opens through its clearance reaches the very
database whose tier stamp the guard checked. The guard reads, on the connection that read the stamp,
the cluster's system identifier (unique per initdb), the database's OID and the address libpq used;
every later connection of a Cleared handle is made to that address (`hostaddr`) and checked against
the identifier and OID before it is handed out. A scratch database pins only its server.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import psycopg

from dbguard.errors import Failed, Refused

if TYPE_CHECKING:
    from dbguard.guard.connect import Connection

_QUERY = (
    "SELECT s.system_identifier, d.oid FROM pg_control_system() s, pg_database d WHERE d.datname = current_database()"
)


@dataclass(frozen=True)
class Pin:
    """The server (system identifier, the address reached) and database (its OID) a stamp was read from."""

    system_identifier: int
    database_oid: int | None  # None: any database on that server (its maintenance and scratch databases)
    hostaddr: str = ""  # the IP address libpq reached; "" for a Unix socket

    def server_only(self) -> Pin:
        return replace(self, database_oid=None)


def read_pin(conn: Connection) -> Pin:
    """The pin of the database `conn` is connected to (in the caller's transaction)."""
    try:
        row = conn.execute(_QUERY).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        raise Refused(
            f"user '{conn.info.user}' may not read the server's identity (pg_control_system()), so the guard "
            "cannot prove which server it reached",
            f"GRANT EXECUTE ON FUNCTION pg_control_system() TO {conn.info.user} (PostgreSQL grants it to all)",
        ) from None
    assert row is not None
    return Pin(int(row[0]), int(row[1]), conn.info.hostaddr or "")


def check_pin(conn: Connection, pin: Pin, where: str, source: str) -> None:
    """Refuse a connection that reached another server or database than the one whose stamp was checked."""
    found = read_pin(conn)
    if found.system_identifier != pin.system_identifier or (
        pin.database_oid is not None and found.database_oid != pin.database_oid
    ):
        what = "server" if found.system_identifier != pin.system_identifier else "database"
        raise Failed(
            f"{where} reached another {what} than the one whose tier stamp was checked; stopped before using it",
            f"give {source} one host that always reaches the same server (no DNS round-robin or failover in between)",
        )
