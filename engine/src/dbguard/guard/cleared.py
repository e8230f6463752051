"""What the guard hands out: a database it cleared for one purpose, and the only way to open it.

`authorize` (dbguard.guard.door) returns a Clearance holding one `Cleared` per database the policy
cell lets the operation open: its own target and each of the cell's grants (`Rule.also`). A Cleared
is the Target plus the rule it was cleared under, and every connection, SQLAlchemy session,
PostgreSQL tool run and scratch database an operation uses comes from one. What must always hold:
- a database cleared read-only is only ever opened read-only (server-enforced), whatever is asked;
- a database whose stamp the guard read is pinned: every connection goes to the address the stamp was
  read through and is checked, before it is handed out, to reach that same server and database
  (`dbguard.guard.identity`); a scratch database, and its server's maintenance database, to that server;
  after a swap the pin follows the run's own replacement to the name;
- a rule that clears no database opens nothing, except a read-only report;
- scratch databases are made only on a server whose rule says `scratch`; a scratch database can be
  swapped in only by the one that made it, in place of a target cleared for writing, and a clone
  (`template=`) is only ever made from such a scratch database.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbguard.cluster import scratch as scratches
from dbguard.cluster.pgtools import run_tool, tool_conninfo, tool_environment
from dbguard.errors import Failed, Refused
from dbguard.guard.connect import Connection, connect
from dbguard.guard.identity import Pin, check_pin
from dbguard.guard.policy import READ, YES, Rule
from dbguard.guard.stamp import Stamp
from dbguard.guard.targets import Target

if TYPE_CHECKING:
    from sqlalchemy import Connection as SAConnection
    from sqlalchemy import Engine

    from dbguard.cli.console import Output

TARGET = "target"  # the purpose of the operation's own target (its --env tier)
NOT_CLEARED = Rule(False, reason="not cleared")
POLICY_FILE = "dbguard/guard/policy.py"


@dataclass(frozen=True)
class Cleared(Target):
    """A Target the guard cleared for one purpose under one policy cell; the only way to open it."""

    purpose: str = TARGET
    rule: Rule = NOT_CLEARED
    stamp: Stamp | None = None
    is_scratch: bool = False  # made by this run (`scratch`): writable, dropped afterwards unless swapped in
    pin: Pin | None = None  # the server and database the guard read the stamp from (None: not read)

    @classmethod
    def of(
        cls, target: Target, purpose: str, rule: Rule, stamp: Stamp | None = None, pin: Pin | None = None
    ) -> Cleared:
        return cls(target.tier, target.params, target.source, target.embedded, purpose, rule, stamp, False, pin)

    def _pinned(self) -> dict[str, str]:
        """The address the stamp was read through, as libpq's hostaddr (a name is resolved once, not per connection)."""
        if self.pin is None or not self.pin.hostaddr or "hostaddr" in self.params:
            return {}
        return {"hostaddr": self.pin.hostaddr}

    def conninfo(self, *, with_password: bool = True, extra: dict[str, str] | None = None) -> str:
        return super().conninfo(with_password=with_password, extra={**self._pinned(), **(extra or {})})

    def _checked(self, conn: Connection, pin: Pin | None = None) -> Connection:
        """`conn`, once it proved to reach the pinned server and database (closed and refused otherwise)."""
        pin = pin or self.pin
        if pin is None:
            return conn
        try:
            check_pin(conn, pin, f"{self.purpose} ({self.describe()})", self.source)
            if not conn.autocommit:
                conn.rollback()
        except BaseException:
            conn.close()
            raise
        return conn

    # -- what it was cleared for -------------------------------------------------------------
    @property
    def read_only(self) -> bool:
        return self.rule.read_only

    @property
    def opens(self) -> bool:
        return self.rule.allowed and (self.rule.needs_database or self.rule.read_only)

    @property
    def access(self) -> str:
        kind = ("read-only" if self.read_only else "write") if self.opens else "none"
        return kind + (" + scratch" if self.rule.scratch else "")

    def grant_line(self) -> str:
        """One line for the audit log: purpose, tier, access and the masked target."""
        return f"{self.purpose}: {self.tier.value.upper()} {self.access} {self.short()}"

    def with_database(self, dbname: str) -> Target:
        """The same server (pinned address) and credentials, another database: a plain Target, cleared for nothing."""
        return Target(self.tier, {**self.params, **self._pinned(), "dbname": dbname}, self.source, self.embedded)

    def _refuse(self, what: str) -> Refused:
        return Refused(
            f"{self.purpose} ({self.describe()}) was not cleared to {what} in this run",
            f"declare it in the policy table ({POLICY_FILE})",
        )

    def _require_open(self) -> None:
        if not self.opens:
            raise self._refuse("be opened")

    def _require_scratch(self) -> None:
        if not (self.opens and self.rule.scratch):
            raise self._refuse("make scratch databases on its server")

    def _require_swap(self, replacement: Cleared | None = None) -> None:
        self._require_scratch()
        if self.read_only or self.is_scratch:
            raise self._refuse("be replaced")
        if replacement is not None and not self._made_here(replacement):
            raise self._refuse(f"be replaced by {replacement.dbname}, which this run did not make")

    def _made_here(self, other: Cleared) -> bool:
        return other.is_scratch and other.identity()[:2] == self.identity()[:2]

    def _sibling_name(self, name: str) -> str:
        if not name.startswith(self.dbname + "__"):
            raise self._refuse(f"reach {name}")
        return name

    # -- sessions and tools ------------------------------------------------------------------
    def connect(
        self, *, read_only: bool = False, autocommit: bool = False, timeout: int = 10, options: str = ""
    ) -> Connection:
        """A psycopg connection; read-only whenever the grant is; to the pinned database only."""
        self._require_open()
        return self._checked(
            connect(
                self, read_only=self.read_only or read_only, autocommit=autocommit, timeout=timeout, options=options
            )
        )

    @contextmanager
    def sa_connection(self, *, read_only: bool = False) -> Iterator[SAConnection]:
        """A SQLAlchemy connection (migrations, seeding) over `connect`: read-only whenever the grant is, pinned."""
        self._require_open()
        from sqlalchemy import create_engine  # noqa: PLC0415 -- only migrations and seeding need SQLAlchemy
        from sqlalchemy.pool import NullPool  # noqa: PLC0415

        engine = create_engine(
            "postgresql+psycopg://", creator=lambda: self.connect(read_only=read_only), poolclass=NullPool
        )
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def sa_engine(self, **options: Any) -> Engine:
        """A pooled SQLAlchemy engine for a long-lived process (the app's own runtime, dbguard.runtime)."""
        self._require_open()
        from sqlalchemy import create_engine  # noqa: PLC0415 -- only SQLAlchemy users pay for it

        return create_engine("postgresql+psycopg://", creator=self.connect, **options)

    @contextmanager
    def tool(
        self, bindir: Path, name: str, args: Sequence[str], *, read_only: bool = False, options: str = ""
    ) -> Iterator[tuple[list[str], dict[str, str]]]:
        """argv and environment to run the PostgreSQL tool `name` against this database (for Popen).

        The connection string on argv carries no password (a private passfile does); the session is
        read-only whenever the grant is.
        """
        self._require_open()
        argv = [str(bindir / name), f"--dbname={tool_conninfo(self)}", *args]
        with tool_environment(self, read_only=self.read_only or read_only, options=options) as env:
            yield argv, env

    def run_tool(
        self,
        bindir: Path,
        name: str,
        args: Sequence[str],
        *,
        read_only: bool = False,
        stdout: int | None = subprocess.PIPE,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the tool `name` against this database to completion; a failure is one masked line."""
        self._require_open()
        argv = [f"--dbname={tool_conninfo(self)}", *args]
        return run_tool(bindir, name, argv, self, read_only=self.read_only or read_only, stdout=stdout)

    # -- the server: scratch databases and the swap ---------------------------------------------
    def _maintenance(self) -> Target:
        """The same server, its maintenance database: where databases are created, renamed and dropped."""
        last: Exception | None = None
        for name in scratches.MAINTENANCE_DATABASES:
            candidate = self.with_database(name)
            try:
                with connect(candidate, timeout=5):
                    return candidate
            except (Refused, Failed) as exc:
                last = exc
        assert last is not None
        raise last

    def _admin(self, *, read_only: bool = False, autocommit: bool = False) -> Connection:
        """A connection to the server's maintenance database, checked to be the pinned server."""
        conn = connect(self._maintenance(), read_only=read_only, autocommit=autocommit)
        return self._checked(conn, self.pin.server_only() if self.pin else None)

    def _repin(self, conn: Connection) -> None:
        """After a swap this name holds another database (the run's own replacement): the pin follows it."""
        if self.pin is None:
            return
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (self.dbname,)).fetchone()
        object.__setattr__(self, "pin", replace(self.pin, database_oid=int(row[0]) if row else None))

    def database_exists(self, name: str) -> bool:
        """Whether `name` exists on this database's server (read-only)."""
        self._require_open()
        with self._admin(read_only=True) as conn:
            return scratches.database_exists(conn, name)

    def drop_leftovers(self, purposes: tuple[str, ...], *, live: str = "", out: Output | None = None) -> list[str]:
        """Drop the scratch databases of `live` (default: this database) that killed runs left behind."""
        self._require_scratch()
        with self._admin(autocommit=True) as conn:
            return scratches.drop_leftovers(conn, live or self.dbname, purposes, out)

    @contextmanager
    def scratch(self, purpose: str, *, live: str = "", template: Cleared | None = None) -> Iterator[Cleared]:
        """A writable scratch database `<live>__<purpose>_<pid>` on this server (empty, or a copy of the
        scratch database `template`), dropped afterwards unless it was swapped in."""
        self._require_scratch()
        if template is not None and not self._made_here(template):
            raise self._refuse(f"copy {template.dbname}, which this run did not make")
        with self._admin(autocommit=True) as conn:  # holds the lock that marks the scratch database in use
            name = scratches.create_scratch(
                conn,
                live or self.dbname,
                purpose,
                template=template.dbname if template is not None else "template0",
                where=self.with_database(conn.info.dbname).describe(),
            )
            params = {**self.params, "dbname": name}
            pin = self.pin.server_only() if self.pin else None
            try:
                yield Cleared(
                    self.tier, params, self.source, self.embedded, f"{self.purpose}/{purpose}", YES, None, True, pin
                )
            finally:
                scratches.drop_database(conn, name)

    def swap_in(
        self,
        replacement: Cleared,
        *,
        keep_old_as: str | None,
        wait_seconds: float,
        out: Output | None,
        keep: int = 1,
        note: str = "",
    ) -> str:
        """Put the scratch database `replacement` in place of this one atomically (see cluster/scratch.py);
        kept as `keep_old_as`, the old one is an undo point, and `keep` of them stay."""
        self._require_swap(replacement)
        kept = self._sibling_name(keep_old_as) if keep_old_as else None
        with self._admin(autocommit=True) as conn:
            swapped = scratches.swap_in(
                conn,
                self.dbname,
                replacement.dbname,
                keep_old_as=kept,
                wait_seconds=wait_seconds,
                out=out,
                keep=keep,
                note=note,
            )
            self._repin(conn)
            return swapped

    def drop_undo_points(self, *, keep: int, out: Output | None) -> list[str]:
        """Drop this database's undo points (`<name>__previous`, `<name>__undo_...`) beyond the newest `keep`."""
        self._require_swap()
        with self._admin(autocommit=True) as conn:
            return scratches.drop_undo_points(conn, self.dbname, keep, out)

    def exchange(self, other: str, *, wait_seconds: float, out: Output | None) -> None:
        """Swap the names of this database and its sibling `other` (`<name>__...`) atomically."""
        self._require_swap()
        with self._admin(autocommit=True) as conn:
            scratches.exchange(conn, self.dbname, self._sibling_name(other), wait_seconds=wait_seconds, out=out)
            self._repin(conn)

    def sibling(self, name: str) -> Cleared:
        """A read-only way into `<name>__...` on the same server (the copy a refresh keeps), for a target
        cleared for scratch databases."""
        self._require_scratch()
        target = self.with_database(self._sibling_name(name))
        return Cleared.of(target, f"{self.purpose}/{name}", READ, pin=self.pin.server_only() if self.pin else None)
