"""Scratch databases and the atomic swap: build aside, verify, then rename into place in one transaction.

A scratch database is named `<target>__<purpose>_<pid>` and, while its run lives, an advisory lock
keyed by its name is held on the server. Whatever holds no lock is a leftover from a killed run
and the next run drops it. The swap renames the live database away and the new one into its
place inside one transaction, so clients see either the old database or the new one.

Undo points: a swap may keep the database it replaces as `<target>__previous`, renamed, not copied
(it costs nothing however large it is). The one kept before becomes `<target>__undo_<UTC time>`
in the same transaction, and the oldest beyond the number to keep are dropped afterwards (an
operation usually drops them while it works, `drop_undo_points`, since DROP DATABASE forces a
checkpoint). Each undo point carries a comment (`COMMENT ON DATABASE`, JSON): when it was set aside
and before what.

Every function here works on a connection to the server's maintenance database that the guard's
clearance opened (`dbguard.guard.cleared`); none opens one itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from dbguard.cli.console import Output
from dbguard.errors import Failed, Refused
from dbguard.guard.connect import Connection
from dbguard.guard.locks import LOCK_NAMESPACE

MAINTENANCE_DATABASES = ("postgres", "template1")
MAX_NAME = 63
PREVIOUS = "previous"  # <target>__previous: the newest undo point
UNDO = "undo"  # <target>__undo_<UTC time>: older ones


def scratch_name(live: str, purpose: str) -> str:
    name = f"{live}__{purpose}_{os.getpid()}"
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(live.encode()).hexdigest()[:8]
        name = f"{live[: MAX_NAME - 30]}_{digest}__{purpose}_{os.getpid()}"
    return name


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big", signed=True)


def database_exists(conn: Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def drop_database(conn: Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drop_leftovers(conn: Connection, live: str, purposes: tuple[str, ...], out: Output | None = None) -> list[str]:
    """Drop scratch databases of `live` that no running task holds (left by killed runs); `conn` autocommits."""
    dropped = []
    for purpose in purposes:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{live}\\_\\_{purpose}\\_%",)
        ).fetchall()
        for (name,) in rows:
            key = _lock_key(str(name))
            got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, key)).fetchone()
            if got and got[0]:
                drop_database(conn, str(name))
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, key))
                dropped.append(str(name))
    if dropped and out is not None:
        out.info(f"removed scratch database(s) left by an interrupted run: {', '.join(dropped)}")
    return dropped


def create_scratch(conn: Connection, live: str, purpose: str, *, template: str, where: str) -> str:
    """Create `<live>__<purpose>_<pid>` (empty, or a copy of `template`) and hold its lock on `conn`.

    The lock lives as long as `conn`: the caller keeps it open while the scratch database is in use,
    and drops the database on it afterwards (a no-op once it was swapped in, i.e. renamed away).
    """
    name = scratch_name(live, purpose)
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE, _lock_key(name)))
    drop_database(conn, name)
    try:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    except psycopg.Error as exc:
        raise Refused(
            f"cannot create a scratch database on {where}: {exc.diag.message_primary}",
            "the role in the URL needs CREATEDB on that server",
        ) from None
    return name


def sibling_name(live: str, suffix: str) -> str:
    """`<live>__<suffix>`, shortened like `scratch_name` when that would be too long for PostgreSQL."""
    name = f"{live}__{suffix}"
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(live.encode()).hexdigest()[:8]
        name = f"{live[: MAX_NAME - len(suffix) - 11]}_{digest}__{suffix}"
    return name


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True)
class UndoPoint:
    """A database a swap set aside: `<live>__previous` or `<live>__undo_<time>`."""

    name: str
    taken_at: str  # ISO time it was set aside ("" when its comment is missing)
    before: str  # what replaced it: "refresh-staging", "reset", "restore of ..."
    size_bytes: int


def undo_note(before: str) -> str:
    return json.dumps({"taken_at": datetime.now(UTC).isoformat(timespec="seconds"), "before": before})


def undo_points(conn: Connection, live: str) -> list[UndoPoint]:
    """The undo points of `live` on this server, newest first (any connection to the server will do)."""
    rows = conn.execute(
        "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), ''), "
        "CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) END "
        "FROM pg_database WHERE datname = %s OR datname LIKE %s",
        (sibling_name(live, PREVIOUS), _like_prefix(sibling_name(live, UNDO + "_"))),
    ).fetchall()
    found = []
    for name, comment, size in rows:
        try:
            note = dict(json.loads(str(comment)))
        except ValueError:
            note = {}
        found.append(UndoPoint(str(name), str(note.get("taken_at", "")), str(note.get("before", "")), int(size or 0)))
    previous = sibling_name(live, PREVIOUS)
    return sorted(found, key=lambda p: (p.name == previous, p.taken_at), reverse=True)


def _older_name(conn: Connection, live: str, point: UndoPoint | None) -> str:
    stamp = (point.taken_at if point and point.taken_at else datetime.now(UTC).isoformat()).replace("-", "")
    base = sibling_name(live, f"{UNDO}_{stamp.replace(':', '')[:15]}")
    name, n = base, 1
    while database_exists(conn, name):
        n += 1
        name = f"{base[: MAX_NAME - 3]}_{n}"
    return name


def rename_atomically(
    conn: Connection,
    renames: list[tuple[str, str]],
    *,
    wait_seconds: float,
    out: Output | None,
    comments: dict[str, str | None] | None = None,
) -> None:
    """Apply every (old, new) rename in one transaction, after the databases involved have no sessions.

    Sessions are waited for (up to `wait_seconds`), then terminated, with a line saying so: a database
    cannot be renamed under open sessions, and waiting forever would let one idle client block the
    operation. Apps reconnect and find the new database under the old name. `comments` (by the new
    names) are set in the same transaction.
    """
    involved = sorted({old for old, _ in renames})
    deadline = time.monotonic() + wait_seconds
    busy = {name: _sessions(conn, name) for name in involved}
    if any(busy.values()) and out is not None:
        names = ", ".join(f"{n} ({c})" for n, c in busy.items() if c)
        out.info(f"waiting up to {wait_seconds:g}s for the sessions on {names} to close")
    while any(_sessions(conn, n) for n in involved) and time.monotonic() < deadline:
        time.sleep(0.2)
    for attempt in range(50):
        ended = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
            (involved,),
        ).fetchone()
        if ended and ended[0] and out is not None and attempt == 0:
            out.warn(f"terminated {ended[0]} session(s) still connected to {', '.join(involved)}")
        try:
            with conn.transaction():
                for old, new in renames:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
                    )
                for name, comment in (comments or {}).items():
                    conn.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(comment))
                    )
            return
        except psycopg.errors.ObjectInUse:
            time.sleep(0.1)
    raise Failed(
        f"could not rename {', '.join(involved)}: sessions keep reconnecting",
        "stop the app's connections and try again",
    )


def swap_in(
    conn: Connection,
    live: str,
    replacement: str,
    *,
    keep_old_as: str | None,
    wait_seconds: float,
    out: Output | None,
    keep: int = 1,
    note: str = "",
) -> str:
    """Put `replacement` in place of `live` atomically; the old one is dropped, or kept as `keep_old_as`.

    Kept: the one `keep_old_as` held becomes `<live>__undo_<time>` when `keep` > 1 (dropped otherwise),
    and of the undo points, the newest `keep` stay (see the module's opening).
    """
    old = keep_old_as or scratch_name(live, "old")
    exists = database_exists(conn, live)
    renames: list[tuple[str, str]] = []
    if keep_old_as and exists and database_exists(conn, keep_old_as):
        if keep > 1:
            kept = next((p for p in undo_points(conn, live) if p.name == keep_old_as), None)
            renames.append((keep_old_as, _older_name(conn, live, kept)))
        else:
            drop_database(conn, keep_old_as)  # the copy kept by the previous swap makes room for this one
    if exists:
        copy_database_grants(conn, live, replacement)
    renames += ([(live, old)] if exists else []) + [(replacement, live)]
    comments: dict[str, str | None] = {old: undo_note(note)} if keep_old_as and exists else {}
    rename_atomically(conn, renames, wait_seconds=wait_seconds, out=out, comments=comments)
    if exists and not keep_old_as:
        drop_database(conn, old)
    if keep_old_as:
        drop_undo_points(conn, live, max(keep, 1), out)
    return old


def copy_database_grants(conn: Connection, live: str, replacement: str) -> None:
    """Give `replacement` the database-level grants of `live` (CONNECT, CREATE, TEMPORARY, by grantee, the
    owner's aside), so clients and roles that could connect to the live database still can once it is swapped."""
    row = conn.execute("SELECT datacl IS NULL FROM pg_database WHERE datname = %s", (live,)).fetchone()
    if row is None or row[0]:
        return  # the defaults, which a new database has too
    grants = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
        "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s AND a.grantee <> d.datdba",
        (live,),
    ).fetchall()
    name = sql.Identifier(replacement)
    given = conn.execute(  # what the replacement grants already (its maker may have granted some): cleared first
        "SELECT DISTINCT pg_get_userbyid(a.grantee) FROM pg_database d, aclexplode(d.datacl) a "
        "WHERE d.datname = %s AND a.grantee NOT IN (0, d.datdba)",
        (replacement,),
    ).fetchall()
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(name))
    for (grantee,) in given:
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(name, sql.Identifier(grantee)))
    for grantee, privilege, grantable in grants:
        conn.execute(
            sql.SQL("GRANT {} ON DATABASE {} TO {}" + (" WITH GRANT OPTION" if grantable else "")).format(
                sql.SQL(privilege), name, sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC")
            )
        )


def drop_undo_points(conn: Connection, live: str, keep: int, out: Output | None) -> list[str]:
    """Drop the undo points of `live` beyond the newest `keep`, oldest first (`keep` 0: all of them)."""
    dropped = []
    for point in reversed(undo_points(conn, live)[max(keep, 0) :]):
        drop_database(conn, point.name)
        dropped.append(point.name)
        if out is not None:
            out.info(f"dropped the undo point {point.name} ({point.before or 'older'}) to keep the newest")
    return dropped


def exchange(conn: Connection, a: str, b: str, *, wait_seconds: float, out: Output | None) -> None:
    """Swap the names of two databases atomically (db.refresh-staging --undo): `b` is now what `a` was."""
    parking = scratch_name(a, "exchange")
    rename_atomically(
        conn,
        [(a, parking), (b, a), (parking, b)],
        wait_seconds=wait_seconds,
        out=out,
        comments={a: None, b: undo_note("undo")},
    )


def _sessions(conn: Connection, name: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
    ).fetchone()
    return int(row[0]) if row else 0
