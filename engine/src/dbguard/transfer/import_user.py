"""db.import-user: one user's slice (db.export-user's file) loaded into a tier, in one transaction.

What must always hold:
- all or nothing: every row is written in one transaction, and a row that would break a constraint
  rolls all of it back; the rows that would break one are reported per table, with the constraint;
- the file's schema revision is the target's, or nothing is read into it (the fix: db.migrate);
- every reference is rewired: a row whose key was taken in the target gets a new one (keys.py) and
  every row pointing at it follows; reference rows (other people, shared data) are matched in the
  target by a natural key (a UNIQUE set, or a primary key no sequence makes) and inserted only where
  no row matches;
- re-importing changes nothing (keys.py's memory), and `--as NEWKEY` brings the user in as a new
  user: NEWKEY in the user_key column, their other unique text columns made unique with it.
Foreign keys in a cycle are written as NULL first and set once every table is in.
"""

from __future__ import annotations

import hashlib
import operator
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from dbguard.backup.dump import take_backup
from dbguard.cli.console import add_row, new_table
from dbguard.cli.runner import TaskContext
from dbguard.errors import Failed, Refused
from dbguard.failpoints import failpoint
from dbguard.guard.connect import Connection
from dbguard.guard.door import authorize_step
from dbguard.guard.locks import exclusive
from dbguard.guard.tiers import Tier
from dbguard.migrations.history import current_revision, head, script_directory
from dbguard.settings import Settings
from dbguard.transfer import locking, signing
from dbguard.transfer.export import SESSION, gc_paused, matching
from dbguard.transfer.keys import KeyMaker, KeyMemory
from dbguard.transfer.manifest import NULL, ExportFile, decode_field, encode_field, read_export
from dbguard.transfer.slice import ForeignKey, Graph, TableInfo, UserTable, read_graph

BATCH = 50_000
REPORT_ROWS = 2_000  # a table whose rows do not fit is tried row by row up to this many, to count them
Key = tuple[bytes, ...]


@dataclass
class Counts:
    rows: int = 0
    remembered: int = 0  # brought in by an earlier import (keys.py's memory)
    matched: int = 0  # found in the target by natural key
    kept: int = 0  # inserted with their own key
    new_keys: int = 0  # inserted with a new key

    @property
    def inserted(self) -> int:
        return self.kept + self.new_keys


@dataclass(slots=True)
class Pending:
    """One row on its way in: the file's fields and the fields it will have in the target."""

    role: str
    old: list[bytes]
    new: list[bytes]
    line: bytes  # the file's line: what is written where `new` is still `old`
    fate: str = ""  # remembered, matched, insert


def variant(value: str, new_key: str) -> str:
    """A unique text value made unique again for the user brought in `--as new_key`."""
    slug = re.sub(r"[^a-z0-9]+", "-", new_key.lower()).strip("-")[:24] or "copy"
    local, at, domain = value.partition("@")
    return f"{local}+{slug}@{domain}" if at else f"{value}-{slug}"


@dataclass
class Import:
    conn: Connection
    graph: Graph
    file: ExportFile
    users: UserTable
    new_key: str | None
    memory: KeyMemory
    writing: bool
    maps: dict[tuple[str, tuple[str, ...]], dict[Key, Key]] = field(default_factory=dict)
    counts: dict[str, Counts] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    deferred_rows: dict[ForeignKey, list[tuple[Key, Key]]] = field(default_factory=dict)  # (new pk, old fk value)
    inserted_keys: dict[str, list[str]] = field(default_factory=dict)
    unchanged: set[tuple[str, tuple[str, ...]]] = field(default_factory=set)  # maps where every key stayed the same
    pool: ThreadPoolExecutor | None = None  # where a table's COPY runs while the next one is prepared
    bounds: dict[str, tuple[str | None, str | None] | None] = field(default_factory=dict)  # read_bounds
    pending: Future[None] | None = None
    env: str = ""
    settings: Settings | None = None
    held: set[str] = field(default_factory=set)  # tables locked against the app's inserts (sequence moved)

    def hold(self, name: str) -> None:
        """SHARE ROW EXCLUSIVE on a table whose sequence the import moves, until the commit: no app insert may
        draw a value between the look at the table's largest key and the setval (never a sequence moved back)."""
        if self.writing and self.settings is not None and name not in self.held:
            locking.lock_tables(self.conn, [name], "SHARE ROW EXCLUSIVE", self.settings, self.env, "db.import-user")
            self.held.add(name)

    # -- order -------------------------------------------------------------------------------
    def order(self) -> tuple[list[str], set[ForeignKey]]:
        """Tables parents first; the foreign keys that close a cycle (nullable ones) are set after all rows."""
        names = set(self.file.tables)
        deps = {t: [fk for fk in self.graph.table(t).foreign_keys if fk.parent in names] for t in names}
        deferred = {fk for t in names for fk in deps[t] if fk.parent == t and fk.nullable}
        ordered: list[str] = []
        remaining = set(names)
        while remaining:
            ready = [
                t
                for t in sorted(remaining)
                if all(fk.parent not in remaining or fk.parent == t or fk in deferred for fk in deps[t])
            ]
            if ready:
                ordered += ready
                remaining -= set(ready)
                continue
            loose = [fk for t in sorted(remaining) for fk in deps[t] if fk.parent in remaining and fk.nullable]
            loose = [fk for fk in loose if fk not in deferred]
            if not loose:
                raise Refused(
                    "the tables " + ", ".join(sorted(remaining)) + " reference each other through NOT NULL foreign "
                    "keys, so no order of inserts can satisfy them",
                    "make one of those foreign keys nullable or DEFERRABLE",
                )
            deferred.add(loose[0])
        return ordered, deferred

    # -- the target's rows -------------------------------------------------------------------
    def lookup(self, info: TableInfo, columns: tuple[str, ...], keys: Iterable[Key]) -> dict[Key, list[bytes]]:
        """The target's rows whose `columns` hold one of `keys` (COPY text), by those columns' fields."""
        self.wait()  # never while a COPY (and its savepoint) is under way
        at = [info.index(c) for c in columns]
        wanted = [tuple(str(decode_field(v)) for v in key) for key in set(keys) if NULL not in key]
        found: dict[Key, list[bytes]] = {}
        for start in range(0, len(wanted), BATCH):
            query = sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT").format(
                sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in info.columns),
                info.source,
                matching(info, columns, wanted[start : start + BATCH]),
            )
            with self.conn.cursor().copy(query) as copy:
                data = b"".join(bytes(chunk) for chunk in copy)
            for line in data.split(b"\n")[:-1] if data else []:
                fields = line.split(b"\t")
                found[tuple(fields[i] for i in at)] = fields
        return found

    # -- one table ---------------------------------------------------------------------------
    def rewire(self, info: TableInfo, rows: list[Pending], deferred: set[ForeignKey]) -> None:
        for fk in info.foreign_keys:
            if fk.parent not in self.file.tables:
                continue
            at = info.at(fk.columns)
            mapping = self.maps.get((fk.parent, fk.parent_columns), {})
            missing = 0
            if fk in deferred:
                for row in rows:
                    if NULL not in [row.old[i] for i in at]:
                        for i in at:
                            row.new[i] = NULL
                continue
            if len(at) == 1 and (fk.parent, fk.parent_columns) in self.unchanged:
                continue  # every parent row kept its key: the references stay as they are
            if len(at) == 1:
                (i,) = at
                for row in rows:
                    value = row.old[i]
                    if value != NULL:
                        found = mapping.get((value,))
                        if found is None:
                            missing += 1
                        else:
                            row.new[i] = found[0]
                continue
            for row in rows:
                old = tuple([row.old[i] for i in at])
                if NULL in old:
                    continue
                new = mapping.get(old)
                if new is None:
                    missing += 1
                    continue
                for i, value in zip(at, new, strict=True):
                    row.new[i] = value
            if missing:
                self.fail(
                    info.name, f"{missing} row(s) point at {fk.parent} rows that could not be brought in ({fk.name})"
                )

    def fail(self, table: str, message: str) -> None:
        self.failures.setdefault(table, []).append(message)

    def ident(self, info: TableInfo, fields: list[bytes]) -> str:
        return b"\t".join([fields[i] for i in info.at(info.primary_key)]).decode()

    def idents(self, info: TableInfo, rows: list[Pending]) -> list[str]:
        """Each row's name in the memory: its primary key; without one, its line's hash and occurrence."""
        if len(info.primary_key) == 1:
            i = info.index(info.primary_key[0])
            return [r.old[i].decode() for r in rows]
        if info.primary_key:
            at = info.at(info.primary_key)
            return [b"\t".join([r.old[i] for i in at]).decode() for r in rows]
        seen: dict[str, int] = {}
        names = []
        for row in rows:
            digest = hashlib.sha256(b"\t".join(row.old)).hexdigest()[:32]
            seen[digest] = seen.get(digest, 0) + 1
            names.append(f"{digest}#{seen[digest]}")
        return names

    def rename_user(self, info: TableInfo, row: Pending) -> None:
        assert self.new_key is not None
        row.new[info.index(self.users.key)] = encode_field(self.new_key)
        for unique in info.uniques:
            if len(unique) != 1 or unique[0] == self.users.key or info.column(unique[0]).category != "S":
                continue
            at = info.index(unique[0])
            value = decode_field(row.new[at])
            if value is not None:
                row.new[at] = encode_field(variant(value, self.new_key))

    def natural_keys(self, info: TableInfo) -> list[tuple[str, ...]]:
        """UNIQUE sets, then the primary key unless a sequence makes it (a uuid names the same thing anywhere)."""
        sets = list(info.uniques)
        maker = info.key_maker
        if info.primary_key and (maker is None or maker[1] == "uuid"):
            sets.append(info.primary_key)
        return sets

    def place(self, name: str, deferred: set[ForeignKey]) -> None:
        info, data = self.graph.table(name), self.file.tables[name]
        counts = self.counts.setdefault(name, Counts())
        rows = [
            Pending(role, fields, list(fields), line)
            for role in ("owned", "reference")
            for line in data.rows[role]
            for fields in (line.split(b"\t"),)
        ]
        counts.rows = len(rows)
        idents = self.idents(info, rows)
        is_users = name == self.users.table
        remembered = self.memory.of(name)
        if is_users and self.new_key is not None:
            for row in rows:
                if row.role == "owned":
                    self.rename_user(info, row)
        self.rewire(info, rows, deferred)
        target_of: dict[int, list[bytes]] = {}  # row index -> the target row it is (remembered, matched)
        hits = {i: remembered[ident] for i, ident in enumerate(idents) if ident in remembered}
        if hits and not info.primary_key:
            for i in hits:  # a row without a key: the memory's word is all there is
                rows[i].fate, target_of[i] = "remembered", rows[i].new
                counts.remembered += 1
        elif hits:
            keys = {i: tuple(v.encode() for v in text.split("\t")) for i, text in hits.items()}
            found = self.lookup(info, info.primary_key, keys.values())
            for i, key in keys.items():
                if key in found:
                    rows[i].fate, target_of[i] = "remembered", found[key]
                    counts.remembered += 1
        if is_users:
            self.check_user(info, rows)
        for unique in self.natural_keys(info):
            at = [info.index(c) for c in unique]
            todo = [i for i, r in enumerate(rows) if not r.fate and r.role == "reference"]
            todo = [i for i in todo if NULL not in (rows[i].new[j] for j in at)]
            if not todo:
                continue
            found = self.lookup(info, unique, (tuple(rows[i].new[j] for j in at) for i in todo))
            for i in todo:
                match = found.get(tuple(rows[i].new[j] for j in at))
                if match is not None:
                    rows[i].fate, target_of[i] = "matched", match
                    counts.matched += 1
        inserts = [i for i, r in enumerate(rows) if not r.fate]
        if self.new_key is not None:
            self.freshen_uniques(info, [rows[i] for i in inserts if rows[i].role == "owned"])
        self.make_keys(info, [rows[i] for i in inserts], counts)
        for i in inserts:
            rows[i].fate = "insert"
            target_of[i] = rows[i].new
        targets = [target_of[i] for i in range(len(rows))]
        for columns in self.graph.referenced_sets(name):
            at = [info.index(c) for c in columns]
            mapping = self.maps.setdefault((name, columns), {})
            olds = zip(*[[row.old[j] for row in rows] for j in at], strict=True)
            mapping.update(zip(olds, zip(*[[t[j] for t in targets] for j in at], strict=True), strict=True))
            if all(map(operator.eq, mapping.keys(), mapping.values())):
                self.unchanged.add((name, columns))
            else:
                self.unchanged.discard((name, columns))
        pk_at = info.at(info.primary_key)
        if len(pk_at) == 1:
            (j,) = pk_at
            remembered.update(zip(idents, [t[j].decode() for t in targets], strict=True))
        else:
            for ident, target in zip(idents, targets, strict=True):
                remembered[ident] = b"\t".join([target[j] for j in pk_at]).decode() if pk_at else ""
        for fk in deferred:
            if fk.table == name and info.primary_key:
                at = [info.index(c) for c in fk.columns]
                self.deferred_rows[fk] = [
                    (tuple(rows[i].new[info.index(c)] for c in info.primary_key), tuple(rows[i].old[j] for j in at))
                    for i in inserts
                    if NULL not in (rows[i].old[j] for j in at)
                ]
        self.insert(info, [r.line if r.new == r.old else b"\t".join(r.new) for r in (rows[i] for i in inserts)])

    def freshen_uniques(self, info: TableInfo, rows: list[Pending]) -> None:
        """--as: the user's own rows whose UNIQUE text (a handle, a username) is taken in the target get it made
        unique with the new key, as the user's row does; a set with no text column stays as it is."""
        foreign = {c for fk in info.foreign_keys for c in fk.columns}
        for unique in info.uniques:
            texts = [info.index(c) for c in unique if c not in foreign and info.column(c).category == "S"]
            if not texts or not rows:
                continue
            at = [info.index(c) for c in unique]
            found = self.lookup(info, unique, (tuple(r.new[j] for j in at) for r in rows))
            assert self.new_key is not None
            for row in rows:
                if tuple(row.new[j] for j in at) in found:
                    for j in texts:
                        value = decode_field(row.new[j])
                        if value is not None:
                            row.new[j] = encode_field(variant(value, self.new_key))

    def check_user(self, info: TableInfo, rows: list[Pending]) -> None:
        """The user brought in must not be someone the target already has (unless an earlier import brought them)."""
        at = info.index(self.users.key)
        for row in rows:
            if row.role != "owned" or row.fate:
                continue
            key = (row.new[at],)
            if self.lookup(info, (self.users.key,), [key]):
                raise self.taken(str(decode_field(row.new[at])))

    def taken(self, value: str) -> Refused:
        return Refused(
            f"{self.users.table} already has a user with {self.users.key} = {value!r}, not brought in by an "
            "earlier import of this user; nothing was imported",
            f"import them as a new user: --as NEW{self.users.key.upper()}",
        )

    def preflight(self) -> None:
        """Before any backup or lock: the user is not someone else already there (the revision is checked too)."""
        info = self.graph.table(self.users.table)
        key = (
            encode_field(self.new_key)
            if self.new_key is not None
            else self.file.tables[info.name].rows["owned"][0].split(b"\t")[info.index(self.users.key)]
        )
        if self.memory.of(info.name) or not self.lookup(info, (self.users.key,), [(key,)]):
            return
        raise self.taken(str(decode_field(key)))

    def make_keys(self, info: TableInfo, rows: list[Pending], counts: Counts) -> None:
        """Own keys where free; new ones (sequence or uuid) where they would collide."""
        maker = info.key_maker
        if maker is None or not rows:
            counts.kept += len(rows)
            return
        column, generator = maker
        at = info.index(column)
        values = [r.new[at] for r in rows]
        used = (
            {k[0] for k in self.lookup(info, (column,), [(v,) for v in values])}
            if self.may_clash(info, column, values)
            else set()
        )
        clash: list[Pending] = []
        if used or len(set(values)) != len(values):
            for row, value in zip(rows, values, strict=True):
                if value in used:
                    clash.append(row)
                else:
                    used.add(value)
        if not clash:
            counts.kept += len(rows)
            return
        self.wait()
        keys = KeyMaker(self.conn, generator, self.writing)
        if clash and generator != "uuid":
            self.hold(info.name)
            clashing = {id(r) for r in clash}
            kept = [int(r.new[at]) for r in rows if id(r) not in clashing]
            table = sql.SQL("{}.{}").format(sql.Identifier(info.live.schema), sql.Identifier(info.live.name))
            keys.move_past(table, column, max(kept, default=0))
        for row, key in zip(clash, keys.make(len(clash), {u.decode() for u in used}), strict=True):
            row.new[at] = key.encode()
        counts.kept += len(rows) - len(clash)
        counts.new_keys += len(clash)

    def may_clash(self, info: TableInfo, column: str, values: list[bytes]) -> bool:
        """Whether any of `values` could be a key the target has: not when the target's keys are all below or
        above them (an empty table, a sequence far from the source's), found by one look at the key's index."""
        kind = info.column(column)
        if not values or not (kind.category == "N" or kind.base_type == "uuid"):
            return True
        row = self.bounds[info.name] if info.name in self.bounds else self.key_range(info, column)
        if row is None or row[0] is None or row[1] is None:
            return False
        ours = [int(v) for v in values] if kind.category == "N" else [v.decode() for v in values]
        low, high = (int(row[0]), int(row[1])) if kind.category == "N" else (str(row[0]), str(row[1]))
        return not (max(ours) < low or min(ours) > high)  # type: ignore[operator]

    def key_range(self, info: TableInfo, column: str) -> tuple[str | None, str | None] | None:
        """The target's smallest and largest key in `column` (text), by one look at its index."""
        uuid = info.column(column).base_type == "uuid"
        self.wait()
        row = self.conn.execute(
            sql.SQL("SELECT min(t.{0}{1})::text, max(t.{0}{1})::text FROM {2}").format(
                sql.Identifier(column), sql.SQL("::text" if uuid else ""), info.source
            )
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def read_bounds(self, order: Sequence[str]) -> None:
        """Every table's key range, before any row is written: a table's own rows do not change until its turn,
        and then its preparation need not wait for the COPY of the table before it."""
        for name in order:
            info = self.graph.table(name)
            maker = info.key_maker
            if maker is not None and self.file.tables[name].rows:
                kind = info.column(maker[0])
                if kind.category == "N" or kind.base_type == "uuid":
                    self.bounds[name] = self.key_range(info, maker[0])

    def insert(self, info: TableInfo, rows: list[bytes]) -> None:
        """COPY the rows in (`copy_in`): on `pool`'s thread where there is one, so the server writes them (indexes,
        foreign-key checks) while the next table is prepared here; the connection's lock keeps this side's next
        query waiting until the COPY is over."""
        if not rows or not self.writing:
            return
        if self.pool is None:
            self.copy_in(info, rows)
            return
        self.wait()
        self.pending = self.pool.submit(self.copy_in, info, rows)

    def wait(self) -> None:
        """The COPY under way, over (its error raised here): before this side uses the connection again, since a COPY
        that failed leaves the transaction aborted until its savepoint is rolled back."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()

    def copy_in(self, info: TableInfo, rows: list[bytes]) -> None:
        """COPY the rows in, under a savepoint; rows that do not fit are counted, by constraint, and reported."""
        copy_sql = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
            sql.Identifier(info.live.schema),
            sql.Identifier(info.live.name),
            sql.SQL(", ").join(sql.Identifier(c) for c in info.columns),
        )
        try:
            with self.conn.transaction(), self.conn.cursor().copy(copy_sql) as copy:
                for start in range(0, len(rows), BATCH):
                    copy.write(b"\n".join(rows[start : start + BATCH]) + b"\n")
        except psycopg.Error as exc:
            self.report_rows(info, rows, copy_sql, exc)

    def report_rows(self, info: TableInfo, rows: list[bytes], copy_sql: sql.Composed, first: psycopg.Error) -> None:
        why: dict[str, int] = {}
        tried = rows[:REPORT_ROWS]
        for row in tried:
            try:
                with self.conn.transaction(), self.conn.cursor().copy(copy_sql) as copy:
                    copy.write(row + b"\n")
            except psycopg.Error as exc:
                diag = exc.diag
                what = diag.constraint_name or (diag.message_primary or str(exc)).splitlines()[0]
                why[what] = why.get(what, 0) + 1
        if not why:  # each fits alone: they clash with each other
            primary = first.diag.message_primary or str(first).splitlines()[0]
            why[first.diag.constraint_name or primary] = 1
        more = f" (of the first {len(tried):,} tried)" if len(rows) > len(tried) else ""
        for what, n in why.items():
            self.fail(info.name, f"{n:,} row(s) would break {what}{more}")

    # -- after every table ---------------------------------------------------------------------
    def set_deferred(self) -> None:
        for fk, pairs in self.deferred_rows.items():
            info = self.graph.table(fk.table)
            mapping = self.maps.get((fk.parent, fk.parent_columns), {})
            updates = [(pk, mapping[old]) for pk, old in pairs if old in mapping]
            if not updates or not self.writing:
                continue
            pk_cols, cols = info.primary_key, fk.columns
            names = [f"k{i}" for i in range(len(pk_cols))] + [f"v{i}" for i in range(len(cols))]
            arrays = [
                sql.SQL("{}::text[]").format(sql.Literal([str(decode_field(u[0][i])) for u in updates]))
                for i in range(len(pk_cols))
            ] + [
                sql.SQL("{}::text[]").format(sql.Literal([str(decode_field(u[1][i])) for u in updates]))
                for i in range(len(cols))
            ]
            statement = sql.SQL("UPDATE {}.{} t SET {} FROM unnest({}) AS u({}) WHERE {}").format(
                sql.Identifier(info.live.schema),
                sql.Identifier(info.live.name),
                sql.SQL(", ").join(
                    sql.SQL("{} = u.{}::{}").format(
                        sql.Identifier(c), sql.Identifier(f"v{i}"), sql.SQL(info.column(c).type_name)
                    )
                    for i, c in enumerate(cols)
                ),
                sql.SQL(", ").join(arrays),
                sql.SQL(", ").join(sql.Identifier(n) for n in names),
                sql.SQL(" AND ").join(
                    sql.SQL("t.{} = u.{}::{}").format(
                        sql.Identifier(c), sql.Identifier(f"k{i}"), sql.SQL(info.column(c).type_name)
                    )
                    for i, c in enumerate(pk_cols)
                ),
            )
            try:
                with self.conn.transaction():
                    self.conn.execute(statement)
            except psycopg.Error as exc:
                self.fail(fk.table, f"{len(updates):,} row(s) would break {exc.diag.constraint_name or fk.name}")

    def move_sequences(self) -> None:
        for name, counts in self.counts.items():
            info = self.graph.table(name)
            if not counts.inserted:
                continue
            for column, generator in info.generated.items():
                if generator != "uuid":
                    self.hold(name)
                    table = sql.SQL("{}.{}").format(sql.Identifier(info.live.schema), sql.Identifier(info.live.name))
                    KeyMaker(self.conn, generator, self.writing).move_past(table, column)


def check_revision(ctx: TaskContext, conn: Connection, file: ExportFile, path: Path) -> None:
    wanted, found = file.manifest.get("revision"), current_revision(conn)
    if wanted == found:
        return
    env = ctx.tier.value
    order = [r.revision for r in script_directory(ctx.settings).walk_revisions()]  # head first

    def age(revision: object) -> int:  # 0 for head; base (None) the oldest
        return order.index(revision) if revision in order else len(order)

    if age(found) < age(wanted):  # the target is newer: migrating it back would drop what came since
        fix = f"export the user again from a tier migrated to {found} (invoke db.migrate --env <source tier>)"
    elif wanted == head(ctx.settings):
        fix = f"invoke db.migrate --env {env}"
    else:
        fix = f"invoke db.migrate --env {env} --to {wanted}"
    raise Refused(
        f"{path.name} was exported at revision {wanted or 'base'}; {ctx.target.dbname} is at "
        f"{found or 'base (empty: no revision yet)'}: nothing was imported",
        fix,
    )


def check_tables(ctx: TaskContext, graph: Graph, file: ExportFile) -> None:
    for name, table in file.tables.items():
        info = graph.tables.get(name)
        if info is None or info.columns != table.columns:
            what = "has no table" if info is None else "has other columns in table"
            raise Refused(
                f"{ctx.target.dbname} {what} {name} than the file; nothing was imported",
                f"invoke db.migrate --env {ctx.tier.value}",
            )


def show_counts(ctx: TaskContext, run: Import, order: Sequence[str]) -> None:
    table = new_table(
        "import plan" if not run.writing else "imported",
        "table",
        "rows in file",
        "already here",
        "matched (natural key)",
        "inserted (own key)",
        "inserted (new key)",
    )
    for name in order:
        c = run.counts.get(name, Counts())
        add_row(table, name, f"{c.rows:,}", f"{c.remembered:,}", f"{c.matched:,}", f"{c.kept:,}", f"{c.new_keys:,}")
    ctx.out.table(table)


def import_task(ctx: TaskContext, *, from_: str, as_: str | None) -> int:
    if not from_:
        raise Refused("--from is required: the file db.export-user wrote", "pass --from FILE")
    path = Path(from_).expanduser()
    with gc_paused():
        file = read_export(path)
    manifest = file.manifest
    if not signing.check(ctx.settings, path, file.manifest_bytes, file.signature):
        authorize_step(  # another machine's key: its manifest's tier and sanitizing cannot be believed
            "import-foreign-file",
            ctx.tier,
            ctx.caller,
            name=ctx.target.dbname,
            action=f"importing {path.name}, signed on another machine (its tier and sanitizing cannot be checked), "
            f"into {ctx.tier.value.upper()}",
            dry_run=ctx.dry_run,
        )
    elif manifest.get("tier") == Tier.PROD.value and manifest.get("sanitized") != "yes" and ctx.tier is not Tier.PROD:
        authorize_step(
            "import-prod-data",
            ctx.tier,
            ctx.caller,
            name=ctx.target.dbname,
            action=f"importing a PROD user's unsanitized rows into {ctx.tier.value.upper()}",
            dry_run=ctx.dry_run,
        )
    users = UserTable(str(manifest["user_table"]), str(manifest["user_key"]))
    user_key = as_ or str(manifest["user"])
    began = time.monotonic()
    if ctx.dry_run:
        with ctx.target.connect(read_only=True) as conn:
            run, order = plan_import(ctx, conn, file, path, users, as_, user_key, writing=False)
        show_counts(ctx, run, order)
        report_failures(ctx, run)
        steps = ["back up the target"] if ctx.clearance.rule.backup_first else []
        ctx.out.plan(", then ".join([*steps, "insert these rows in one transaction"]))
        return 0
    if ctx.clearance.rule.backup_first:  # without a backup, the import's own check of the user refuses as early
        with ctx.target.connect(read_only=True) as conn:
            prepare(ctx, conn, file, path, users, as_, user_key, writing=False).preflight()
    with exclusive(ctx.target, "import a user"):
        if ctx.clearance.rule.backup_first:
            backup = take_backup(ctx.settings, ctx.target, ctx.out, reason="before import-user")
            ctx.facts["backup"] = backup.path.name
        with ctx.target.connect() as conn, locking.bounded(ctx.settings, ctx.tier.value, "db.import-user"):
            run, order = plan_import(ctx, conn, file, path, users, as_, user_key, writing=True)
            report_failures(ctx, run)
            saved = run.memory.save(conn)
            failpoint("import-user:before-commit")
            conn.commit()
    show_counts(ctx, run, order)
    inserted = sum(c.inserted for c in run.counts.values())
    ctx.facts.update({"file": path.name, "inserted": inserted, "as": as_ or ""})
    ctx.out.ok(
        f"imported {user_key!r} from {path.name} into {ctx.target.dbname} in one transaction: {inserted:,} rows "
        f"inserted, {sum(c.matched for c in run.counts.values()):,} matched, "
        f"{sum(c.remembered for c in run.counts.values()):,} already here, in {time.monotonic() - began:.1f}s"
        + ("" if saved or inserted else " (nothing changed)")
    )
    return 0


def plan_import(
    ctx: TaskContext,
    conn: Connection,
    file: ExportFile,
    path: Path,
    users: UserTable,
    as_: str | None,
    user_key: str,
    *,
    writing: bool,
) -> tuple[Import, list[str]]:
    run = prepare(ctx, conn, file, path, users, as_, user_key, writing=writing)
    order, deferred = run.order()
    run.read_bounds(order)
    with gc_paused(), ThreadPoolExecutor(1, thread_name_prefix="import") as pool:
        run.pool = pool
        try:
            for name in order:
                run.place(name, deferred)
            if writing:
                run.memory.packed()  # while the last COPY runs
        finally:
            run.pool = None
            run.wait()
    run.set_deferred()
    if not run.failures:
        run.move_sequences()
    return run, order


def prepare(
    ctx: TaskContext,
    conn: Connection,
    file: ExportFile,
    path: Path,
    users: UserTable,
    as_: str | None,
    user_key: str,
    *,
    writing: bool,
) -> Import:
    """The session set, the revision and the tables checked, the tables locked for a write, the memory read."""
    for statement in SESSION:
        conn.execute(statement)
    check_revision(ctx, conn, file, path)
    graph = read_graph(conn)
    check_tables(ctx, graph, file)
    users.check(graph)
    if writing:  # ROW EXCLUSIVE, what the inserts take anyway: the app's own writes go on beside the import
        locking.limit(conn, ctx.settings)
        locking.lock_tables(conn, list(file.tables), "ROW EXCLUSIVE", ctx.settings, ctx.tier.value, "db.import-user")
    memory = KeyMemory.load(conn, str(file.manifest["origin"]), user_key)
    return Import(conn, graph, file, users, as_, memory, writing, env=ctx.tier.value, settings=ctx.settings)


def report_failures(ctx: TaskContext, run: Import) -> None:
    if not run.failures:
        return
    table = new_table("rows that would break a constraint", "table", "problem")
    for name, problems in run.failures.items():
        for problem in problems:
            add_row(table, name, problem)
    ctx.out.table(table)
    summary = "; ".join(f"{name}: {problems[0]}" for name, problems in run.failures.items())
    raise Failed(
        f"nothing was imported: rows in {len(run.failures)} table(s) would break a constraint ({summary})",
        "import into a tier without those rows, or under another user with --as NEWKEY",
    )
