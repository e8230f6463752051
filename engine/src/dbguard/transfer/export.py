"""db.export-user: one user's foreign-key closed slice, read in one snapshot, written to one private file.

What must always hold:
- one snapshot: every read is in one REPEATABLE READ, READ ONLY transaction (a second connection that
  reads a large slice's rows imports its snapshot), so the slice is of one moment even while the source
  takes writes; PROD is opened read-only by the guard;
- the slice is closed (dbguard.transfer.slice): every row in the file finds every row it references
  in the file too;
- from PROD nothing personal leaves the server unsanitized: rows are selected through the same
  masking expressions as db.refresh-staging (refresh/rules.py, refresh/expressions.py: the same
  policy, the same salt, so a co-worker's fake email here is their fake email in a refreshed STG),
  strict coverage and the rules' constraint checks (refresh/constraints.py) included. `--raw` keeps the
  user's own rows as they are; it is allowed only to a human at a terminal (policy row 'export-raw'),
  and even then other people's rows stay sanitized.
  INT and STG hold no real people: their rows are exported as they are.
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from psycopg import IsolationLevel, sql

from dbguard import __version__
from dbguard.cli.console import add_row, new_table
from dbguard.cli.runner import TaskContext
from dbguard.errors import Refused
from dbguard.guard.connect import Connection
from dbguard.guard.door import authorize_step
from dbguard.guard.tiers import Tier
from dbguard.migrations.history import current_revision
from dbguard.refresh.constraints import constraint_conflicts, require_kept
from dbguard.refresh.expressions import SanitizeKey, sanitized_select
from dbguard.refresh.rules import MaskRule, check_coverage, live_schema, load_policy, require_coverage
from dbguard.reports.status import human_size
from dbguard.transfer import signing
from dbguard.transfer.manifest import NULL, ROLES, TableData, decode_field, split_lines, write_export
from dbguard.transfer.slice import Graph, TableInfo, UserTable, app_schemas, read_graph, row_owners

BATCH = 50_000  # key values per query
PARALLEL = True  # a round of the walk that reads two or more tables shares them between two connections
# every session that writes or compares COPY text: the same text for the same value on any server
SESSION = (
    "SET TIME ZONE 'UTC'",
    "SET DateStyle = 'ISO, MDY'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
)
Row = tuple[bytes, ...]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a slice's hundreds of thousands of rows are held as lists: none of them
    forms a cycle, and each collection would walk them all again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def array_literal(values: Iterable[str], *, plain: bool = False) -> sql.Literal:
    """A text[] literal for `values`, for `= ANY(...)` and unnest(): every element quoted, unless `plain` says
    they are numbers or uuids (nothing in them to quote)."""
    if plain:
        return sql.Literal("{" + ",".join(values) + "}")
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return sql.Literal("{" + ",".join(quoted) + "}")


def decode_text(raw: bytes) -> str:
    """A COPY text field that is not NULL, as its value's text."""
    return raw.decode() if b"\\" not in raw else str(decode_field(raw))


def plain_type(info: TableInfo, column: str) -> bool:
    """Numbers and uuids: their COPY text needs no decoding and no quoting in an array."""
    found = info.column(column)
    return found.category == "N" or found.base_type == "uuid"


def matching(info: TableInfo, columns: Sequence[str], values: Sequence[tuple[str, ...]]) -> sql.Composed:
    """`t.(columns)` is one of `values` (text, cast to each column's type): an index lookup where there is one."""
    if len(columns) == 1:
        kind = sql.SQL(info.column(columns[0]).type_name)
        plain = plain_type(info, columns[0])
        return sql.SQL("t.{} = ANY({}::text[]::{}[])").format(
            sql.Identifier(columns[0]), array_literal((v[0] for v in values), plain=plain), kind
        )
    arrays = [
        sql.SQL("{}::text[]::{}[]").format(array_literal(v[i] for v in values), sql.SQL(info.column(c).type_name))
        for i, c in enumerate(columns)
    ]
    return sql.SQL("({}) IN (SELECT * FROM unnest({}))").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns), sql.SQL(", ").join(arrays)
    )


Keys = tuple[str, ...]
Ask = tuple[tuple[str, ...], set[Keys]]  # rows whose columns hold one of these values
Values = dict[tuple[str, ...], set[Keys]]  # per column set, the value tuples (no NULL in them)


@dataclass
class Part:
    """The rows taken from one table: first only their names and the values the walk follows (`walk`), then their
    rows (`collect`).

    A row is named by its primary key, or by where it lies (`ctid`, and `tableoid` for a partitioned table) in a
    table without one: both hold still inside the one snapshot the export reads. `sets` are the column sets the walk
    follows from this table: the sets foreign keys point at, and this table's own foreign keys.
    """

    info: TableInfo
    identity: tuple[str, ...]
    sets: tuple[tuple[str, ...], ...]
    owned: set[Keys] = field(default_factory=set)
    reference: set[Keys] = field(default_factory=set)
    values: Values = field(default_factory=dict)  # of every row taken
    data: dict[str, bytes] = field(default_factory=dict)  # role -> the rows, COPY text

    def add(self, names: list[Keys], values: Values, owned: bool) -> bool:
        """Take the rows `names` (whose `values` they hold); whether any was not taken before."""
        into = self.owned if owned else self.reference
        before = len(self.owned) + len(self.reference)
        into.update(names)
        for columns, found in values.items():
            self.values.setdefault(columns, set()).update(found)
        return len(self.owned) + len(self.reference) > before

    def taken_values(self, columns: tuple[str, ...]) -> set[Keys]:
        return self.values.setdefault(columns, set())

    def named(self, keys: Iterable[Keys]) -> sql.Composable:
        """The rows named by `keys` (identities): by primary key, or by ctid (and tableoid)."""
        info, chosen = self.info, list(keys)
        if info.primary_key:
            return matching(info, info.primary_key, chosen)
        if not info.partitioned:
            return sql.SQL("t.ctid = ANY({}::tid[])").format(array_literal(str(k[0]) for k in chosen))
        return sql.SQL("(t.tableoid, t.ctid) IN (SELECT * FROM unnest({}::oid[], {}::tid[]))").format(
            array_literal((str(k[0]) for k in chosen), plain=True), array_literal(str(k[1]) for k in chosen)
        )


def as_text(column: str) -> sql.Composable:
    return (
        sql.SQL("t.{}::text").format(sql.Identifier(column))
        if column not in ("ctid", "tableoid")
        else sql.SQL("t." + column + "::text")
    )


@dataclass
class Export:
    """One export's run: the snapshot's connection, the graph, what is taken, and how rows are selected."""

    conn: Connection
    graph: Graph
    users: UserTable
    rules: dict[str, dict[str, MaskRule]] | None  # None: rows are taken as they are (INT, STG)
    raw_own: bool = False  # PROD with --raw: the user's own rows unsanitized
    root_key: str = ""
    parts: dict[str, Part] = field(default_factory=dict)
    queries: int = 0
    row_owners: dict[str, str] = field(default_factory=dict)
    read: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)  # (table, role) -> COPY text read
    second: Callable[[], Connection] | None = None  # opens another connection to the source
    other: Connection | None = None

    def part(self, table: str) -> Part:
        if table not in self.parts:
            info = self.graph.table(table)
            named = info.primary_key or (("ctid",) if not info.partitioned else ("tableoid", "ctid"))
            sets = [*self.graph.referenced_sets(table), *(fk.columns for fk in info.foreign_keys)]
            self.parts[table] = Part(info, named, tuple(dict.fromkeys(s for s in sets if s != named)))
        return self.parts[table]

    def select(
        self, info: TableInfo, where: sql.Composable, *, own: bool, named: bool = False, conn: Connection | None = None
    ) -> bytes:
        """The rows of `info` that `where` picks, as COPY text; sanitized unless they are the user's own under
        --raw (an owned row pointing at another user counts as that person's, and stays sanitized). `named`: each
        line starts with where its row lies (ctid, and tableoid for a partitioned table), for a table without a key."""
        conn = conn or self.conn
        lead = (sql.SQL("t.ctid, ") if not info.partitioned else sql.SQL("t.tableoid, t.ctid, ")) if named else None
        columns = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in info.columns)
        if lead is not None:
            columns = lead + columns
        if self.rules is None:
            return self.copy_out(sql.SQL("SELECT {} FROM {} WHERE {}").format(columns, info.source, where), conn)
        text = sanitized_select(info.live, self.rules[info.name]).as_string(conn)
        if info.partitioned:  # the masking SELECT reads FROM ONLY the table; a partitioned one's rows are elsewhere
            text = text.replace(" FROM ONLY ", " FROM ", 1)
        if lead is not None:
            assert text.startswith("SELECT ")
            text = "SELECT " + lead.as_string(conn) + text[len("SELECT ") :]
        masked = sql.SQL(text)  # composed by sanitized_select, not from input
        if not (own and self.raw_own):
            return self.copy_out(sql.SQL("{} WHERE {}").format(masked, where), conn)
        mine = self.only_this_user(info)
        plain = sql.SQL("SELECT {} FROM {} WHERE ({}) AND {}").format(columns, info.source, where, mine)
        others = sql.SQL("{} WHERE ({}) AND NOT {}").format(masked, where, mine)
        return self.copy_out(plain, conn) + self.copy_out(others, conn)

    def only_this_user(self, info: TableInfo) -> sql.Composable:
        user_pk = self.graph.table(self.users.table).primary_key[0]
        checks: list[sql.Composable] = [sql.SQL("true")]
        for fk in info.foreign_keys:
            if fk.parent == self.users.table and fk.parent_columns == (user_pk,):
                checks.append(
                    sql.SQL("coalesce(t.{} = {}, true)").format(
                        sql.Identifier(fk.columns[0]), sql.Literal(self.root_key)
                    )
                )
        if info.name == self.users.table:
            checks.append(sql.SQL("t.{} = {}").format(sql.Identifier(user_pk), sql.Literal(self.root_key)))
        return sql.SQL("({})").format(sql.SQL(" AND ").join(checks))

    def copy_out(self, query: sql.Composable, conn: Connection) -> bytes:
        self.queries += 1
        with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT").format(query)) as copy:
            return b"".join([bytes(chunk) for chunk in copy])

    def fetch_round(self, asks: dict[str, list[Ask]], *, owned: bool) -> dict[str, Values]:
        """One round of the walk: each table's rows that the asks name, the tables of a round shared between this
        connection and a second one that reads the same snapshot (`second`), where there are two or more."""
        tables = sorted(asks, key=lambda t: -sum(len(v) for _, v in asks[t]))
        if self.second is None or not PARALLEL or len(tables) < 2:
            got = {t: self.fetch(t, asks[t], owned=owned) for t in tables}
            return {t: v for t, v in got.items() if v}
        other = self.other_connection()
        with ThreadPoolExecutor(1, thread_name_prefix="export") as pool:
            theirs = {t: pool.submit(self.fetch, t, asks[t], owned=owned, conn=other) for t in tables[1::2]}
            got = {t: self.fetch(t, asks[t], owned=owned) for t in tables[0::2]}
            got.update({t: job.result() for t, job in theirs.items()})
        return {t: v for t, v in got.items() if v}

    def other_connection(self) -> Connection:
        """The second connection, opened once: it imports this transaction's snapshot (pg_export_snapshot), so both
        read the same moment."""
        if self.other is None:
            assert self.second is not None
            row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            other = self.second()
            other.isolation_level = IsolationLevel.REPEATABLE_READ
            other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(str(row[0]))))
            for statement in SESSION:
                other.execute(statement)
            self.other = other
        return self.other

    def close(self) -> None:
        if self.other is not None:
            self.other.close()
            self.other = None

    def fetch(self, table: str, asks: list[Ask], *, owned: bool, conn: Connection | None = None) -> Values | None:
        """Read the rows of `table` not taken yet whose columns hold one of the values of any of `asks` (one query
        for all of them where they are few enough), as they go into the file; return the values of the walk's
        column sets in them, or None when there were none. Each row of the slice is read once."""
        part = self.part(table)
        info = part.info
        taken = part.owned | part.reference
        skip = sql.SQL(" AND NOT {}").format(part.named(taken)) if taken else sql.SQL("")
        wanted = [(columns, list(values)) for columns, values in asks if values]
        if sum(len(values) for _, values in wanted) <= BATCH:
            batches = [wanted]
        else:
            batches = [[(c, v[start : start + BATCH])] for c, v in wanted for start in range(0, len(v), BATCH)]
        found: Values = {}
        names: list[Keys] = []
        role = "owned" if owned else "reference"
        for batch in batches:
            if not batch:
                continue
            where = sql.SQL(" OR ").join(sql.SQL("({})").format(matching(info, c, v)) for c, v in batch)
            where = sql.SQL("({}){}").format(where, skip)
            data = self.select(info, where, own=owned, named=not info.primary_key, conn=conn)
            data, new = self.parse(part, data, found, taken if len(batches) > 1 else None)
            self.read.setdefault((table, role), []).append(data)
            names += new
            if len(batches) > 1:
                taken = taken | set(new)
        if not names:
            return None
        found[part.identity] = set(names)
        part.add(names, found, owned)
        return found

    def parse(self, part: Part, data: bytes, found: Values, taken: set[Keys] | None) -> tuple[bytes, list[Keys]]:
        """The rows' names and the values of the walk's column sets (into `found`), from their COPY text; the text
        without the rows in `taken` (a row two batches both found) and the leading names of a table without a key."""
        info = part.info
        lines = split_lines(data)
        if not lines:
            return b"", []
        lead = 0 if info.primary_key else len(part.identity)  # ctid (tableoid) first, where there is no key
        name_at = [info.index(c) + lead for c in info.primary_key] or list(range(lead))
        set_at = [(cols, [info.index(c) + lead for c in cols]) for cols in part.sets]
        last = max([*name_at, *(j for _, at in set_at for j in at)]) + 1
        rows = [line.split(b"\t", last) for line in lines]
        names: list[Keys]
        if len(name_at) == 1:  # zip of one column: its values as 1-tuples, at C speed
            plain = part.identity[0] == "ctid" or plain_type(info, part.identity[0])
            names = list(zip(map(bytes.decode if plain else decode_text, map(itemgetter(name_at[0]), rows))))
        else:
            names = [tuple([decode_text(r[i]) for i in name_at]) for r in rows]
        keep: list[int] | None = None
        if taken is not None:
            seen = set(taken)
            keep = []
            for n, name in enumerate(names):
                if name not in seen:
                    seen.add(name)
                    keep.append(n)
            names = [names[n] for n in keep]
            lines = [lines[n] for n in keep]
            rows = [rows[n] for n in keep]
        for cols, at in set_at:
            values: set[Keys]
            if len(at) == 1:
                (j,) = at
                raw = set(map(itemgetter(j), rows))
                raw.discard(NULL)
                values = set(zip(map(bytes.decode if plain_type(info, cols[0]) else decode_text, raw)))
            else:
                tuples = {tuple([r[j] for j in at]) for r in rows}
                values = {tuple([decode_text(v) for v in t]) for t in tuples if NULL not in t}
            found.setdefault(cols, set()).update(values)
        if lead:
            lines = [line.split(b"\t", lead)[lead] for line in lines]
        elif keep is None:
            return data, names
        return b"".join(line + b"\n" for line in lines), names

    def walk(self, key: str) -> None:
        """The user's row, every row that belongs to them, then every row those point at (slice.py): names only.

        Both walks go in rounds: each round reads, for each table, the rows that any foreign key points at (or
        from) the rows the last round found, in one query."""
        users = self.graph.table(self.users.table)
        user_pk = users.primary_key[0]
        found = self.conn.execute(
            sql.SQL("SELECT {}::text FROM ONLY {}.{} WHERE {} = %s").format(
                sql.Identifier(user_pk),
                sql.Identifier(users.live.schema),
                sql.Identifier(users.live.name),
                sql.Identifier(self.users.key),
            ),
            (key,),
        ).fetchall()
        if len(found) != 1:
            raise Refused(
                f"no user with {self.users.key} = {key!r} in {self.users.table}",
                f"check the key, or set user_key in [tool.dbguard] (now {self.users.key})",
            )
        self.root_key = str(found[0][0])
        fresh: dict[str, Values] = {}
        if got := self.fetch(self.users.table, [((user_pk,), {(self.root_key,)})], owned=True):
            fresh[self.users.table] = got
        owners = {t: c for t, c in self.row_owners.items() if t in self.graph.tables and t != self.users.table}
        for table, column in owners.items():
            if got := self.fetch(table, [((column,), {(self.root_key,)})], owned=True):
                fresh[table] = got
        while fresh:  # owned rows: towards the user, to a fixed point
            asks: dict[str, list[Ask]] = {}
            for parent, values in fresh.items():
                for fk in self.graph.referencing(parent):
                    if fk.table == self.users.table or fk.table in owners:
                        continue
                    if wanted := values.get(fk.parent_columns):
                        asks.setdefault(fk.table, []).append((fk.columns, wanted))
            fresh = self.fetch_round(asks, owned=True)
        fresh = {t: dict(p.values) for t, p in list(self.parts.items()) if p.owned}
        while fresh:  # reference rows: what the slice points at, upwards only
            asks = {}
            for child, values in fresh.items():
                for fk in self.graph.table(child).foreign_keys:
                    wanted = values.get(fk.columns, set()) - self.part(fk.parent).taken_values(fk.parent_columns)
                    if wanted:
                        asks.setdefault(fk.parent, []).append((fk.parent_columns, wanted))
            fresh = self.fetch_round(asks, owned=False)

    def collect(self) -> None:
        """The rows the walk read, per table and role, as the file holds them."""
        for part in self.parts.values():
            for role in ("owned", "reference"):
                part.data[role] = b"".join(self.read.get((part.info.name, role), []))


def default_out(ctx: TaskContext, key: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]  # the key itself (an email) stays out of file names
    return ctx.settings.backups_dir / "exports" / f"{ctx.tier.value}-user-{digest}-{stamp}.tar"


def origin_of(ctx: TaskContext) -> str:
    """Which database the rows came from: the import's memory of what it already brought in is kept per origin."""
    pin = ctx.target.pin
    return f"{pin.system_identifier}:{pin.database_oid}" if pin else f"{ctx.target.host}/{ctx.target.dbname}"


def export_task(ctx: TaskContext, *, user: str, out: str | None, raw: bool) -> int:
    settings, source = ctx.settings, ctx.target
    if not user:
        raise Refused("--user is required: the user's key", "pass --user KEY (matched on [tool.dbguard] user_key)")
    sanitize = ctx.tier is Tier.PROD
    if raw and sanitize:
        authorize_step(
            "export-raw",
            ctx.tier,
            ctx.caller,
            name=source.dbname,
            action="an unsanitized export of a PROD user's own data",
            dry_run=ctx.dry_run,
        )
    elif raw:
        ctx.out.info(f"{ctx.tier.value.upper()} holds no real people: its rows are exported as they are anyway")
    users = UserTable.of(settings)
    key = SanitizeKey.of(settings) if sanitize else None
    began = time.monotonic()
    options = key.options if key else ""
    with source.connect(read_only=True, options=options) as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        for statement in SESSION:
            conn.execute(statement)
        graph = read_graph(conn)
        users.check(graph)
        rules = None
        if sanitize:
            live = live_schema(conn, app_schemas(conn))
            coverage = check_coverage(load_policy(settings), live)
            require_coverage(coverage)
            require_kept(constraint_conflicts(source, live, coverage), ctx.out)  # the refresh's own checks
            rules = coverage.rules
            require_kept_keys(graph, rules)
        revision = current_revision(conn)
        run = Export(conn, graph, users, rules, raw_own=raw and sanitize, row_owners=row_owners(settings))
        run.second = lambda: source.connect(read_only=True, options=options)
        try:
            with gc_paused():
                run.walk(user)
                run.collect()
        finally:
            run.close()
        conn.rollback()
    parts = [p for p in run.parts.values() if p.owned or p.reference]
    exported_key = exported_user_key(run)
    show_slice(ctx, parts, time.monotonic() - began, run.queries)
    if ctx.dry_run:
        ctx.out.plan("write these rows to " + str(Path(out) if out else default_out(ctx, user)) + " (mode 0600)")
        return 0
    path = Path(out).expanduser() if out else default_out(ctx, user)
    if path.exists():
        raise Refused(f"{path} already exists", "pass another --out FILE, or remove it first")
    manifest: dict[str, Any] = {
        "engine_version": __version__,
        "revision": revision,
        "tier": ctx.tier.value,
        "source": source.describe(),
        "origin": origin_of(ctx),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sanitized": "no" if not sanitize else ("own rows raw" if raw else "yes"),
        "user_table": users.table,
        "user_key": users.key,
        "user": exported_key,
    }
    tables = []
    for p in parts:
        data = TableData(p.info.name, p.info.columns)
        data.text = {role: p.data.get(role, b"") for role in ROLES}
        tables.append(data)
    written = write_export(path, manifest, tables, signing.signer(settings))
    rows = sum(t["owned"]["rows"] + t["reference"]["rows"] for t in written["tables"])
    ctx.facts.update({"file": path.name, "tables": len(tables), "rows": rows, "revision": revision})
    ctx.out.ok(
        f"exported {rows:,} rows of {len(tables)} tables to {path} ({human_size(path.stat().st_size)}, mode 0600) "
        f"in {time.monotonic() - began:.1f}s; revision {revision}"
        + ("; sanitized with refresh-staging's policy" if sanitize and not raw else "")
    )
    return 0


def exported_user_key(run: Export) -> str:
    """The user's key as the file holds it (sanitized from PROD): what db.import-user matches on."""
    part = run.parts[run.users.table]
    line = split_lines(part.data["owned"])[0]
    return str(decode_field(line.split(b"\t")[part.info.index(run.users.key)]))


def require_kept_keys(graph: Graph, rules: dict[str, dict[str, MaskRule]]) -> None:
    """A key or foreign-key column masked by the policy would break the slice's references: refused."""
    for info in graph.tables.values():
        keys = set(info.primary_key) | {c for fk in info.foreign_keys for c in fk.columns}
        keys |= {c for fk in graph.referencing(info.name) for c in fk.parent_columns}
        for column in sorted(keys):
            rule = rules.get(info.name, {}).get(column)
            if rule is not None and rule.kind != "keep":
                raise Refused(
                    f"{info.name}.{column} is a key that foreign keys use, and the sanitizing policy masks it "
                    f"({rule}); the slice's references would not hold",
                    "give key columns the rule keep (PII.NONE)",
                )


def show_slice(ctx: TaskContext, parts: list[Part], seconds: float, queries: int) -> None:
    table = new_table("user slice", "table", "owned rows", "reference rows", "natural key")
    for p in parts:
        natural = ", ".join("(" + ", ".join(u) + ")" for u in p.info.uniques) or "-"
        add_row(table, p.info.name, f"{len(p.owned):,}", f"{len(p.reference):,}", natural)
    ctx.out.table(table)
    total = sum(len(p.owned) + len(p.reference) for p in parts)
    ctx.out.info(f"{total:,} rows in one snapshot, {queries} queries, {seconds:.1f}s")
