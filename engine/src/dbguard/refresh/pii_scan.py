"""After a refresh copied a table, before the swap: prove no PROD email, name or phone value reached it.

PROD's side never sends values: only 8-byte keyed hashes (sha256 of the key and the lowercased value)
of every email, name and phone it holds, taken in the refresh's snapshot. The copy's side hashes its
values the same way, inside its own server, and counts matches per column. Every text and JSON value
of the copy is covered, each column the cheapest complete way:
- a column a fake generator filled from a keyed hash (email, name, phone, address): fully, by the pass
  that draws again any fake that happens to equal a real value (`reroll_table`), which reports any it
  could not redraw;
- a free-text column: every value it can hold is one of the word lists' sentences and paragraphs, so
  those are checked (`check_constants`), once;
- a `fixed:` column: its one value, once;
- every other text or JSON column (`keep`, `sql:`, `ip` on text): every distinct value (`scan_table`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from dbguard.guard.connect import Connection
from dbguard.refresh.expressions import KEY, fake, free_text_values
from dbguard.refresh.rules import Coverage, LiveColumn, LiveTable, MaskRule

SCANNED_KINDS = {"email", "name", "phone"}
TEXT_CATEGORIES = {"S"}
JSON_TYPES = {"json", "jsonb"}
REROLLED_KINDS = {"email", "name", "phone", "address"}
PROBE_SCHEMA = "dbguard_verify"  # lives in the scratch copy only while it is verified, then dropped
PROBE = sql.SQL(PROBE_SCHEMA + ".pii_probe")


def _hash(expr: sql.Composable) -> sql.Composed:
    return sql.SQL("substr(sha256({} || convert_to(lower(trim({})), 'UTF8')), 1, 8)").format(KEY, expr)


def prod_pii_hashes(conn: Connection, tables: list[LiveTable], coverage: Coverage) -> set[bytes]:
    """Keyed hashes of PROD's email, name and phone values (in the caller's snapshot; a keyed session)."""
    found: set[bytes] = set()
    for table in tables:
        rules = coverage.rules.get(table.qualified, {})
        for column in table.columns:
            rule = rules.get(column.name)
            if rule is None or rule.kind not in SCANNED_KINDS:
                continue
            col = sql.SQL("{}::text").format(sql.Identifier(column.name))
            query = sql.SQL("SELECT DISTINCT {} FROM {} WHERE {} IS NOT NULL").format(
                _hash(col), table.relation, sql.Identifier(column.name)
            )
            found.update(bytes(row[0]) for row in conn.execute(query))
    return found


@dataclass(frozen=True)
class Leak:
    where: str
    values: int


def load_probe(conn: Connection, prod_hashes: set[bytes]) -> None:
    """PROD's hashes as an unlogged table in the copy, shared by every verifying session."""
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(PROBE_SCHEMA)))
    conn.execute(sql.SQL("CREATE UNLOGGED TABLE {} (h bytea PRIMARY KEY)").format(PROBE))
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} (h) FROM STDIN (FORMAT BINARY)").format(PROBE)) as copy:
        copy.set_types(["bytea"])
        for h in prod_hashes:
            copy.write_row((h,))
    conn.execute(sql.SQL("ANALYZE {}").format(PROBE))


def drop_probe(conn: Connection) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(PROBE_SCHEMA)))


def _name(table: LiveTable) -> sql.Composed:
    return table.relation  # ONLY the table, or a partitioned one with its partitions


def rerolled(column: LiveColumn, rule: MaskRule | None) -> bool:
    return rule is not None and rule.kind in REROLLED_KINDS and column.category in TEXT_CATEGORIES


@dataclass
class Rerolled:
    fixed: int = 0  # fakes that equalled a real value and were drawn again
    unresolved: list[Leak] = field(default_factory=list)  # still equal to a real value after every round


def reroll_table(conn: Connection, table: LiveTable, rules: dict[str, MaskRule], rounds: int = 32) -> Rerolled:
    """A fake can coincide with a real value (a made-up 'Ann Lee' while PROD has an Ann Lee): draw such
    fakes again, from a keyed hash of the fake itself, until none coincides. Deterministic for the same PROD.

    One pass over the table finds the coinciding values of every such column; later rounds work on those
    values only, and every row holding one gets the same new fake. `conn` is a keyed session on the copy.
    """
    result = Rerolled()
    columns = [c for c in table.columns if rerolled(c, rules.get(c.name))]
    if not columns:
        return result
    values = sql.SQL(", ").join(
        sql.SQL("({}, {}::text)").format(sql.Literal(c.name), sql.SQL("t.{}").format(sql.Identifier(c.name)))
        for c in columns
    )
    coincides = sql.SQL("EXISTS (SELECT 1 FROM {} p WHERE p.h = {})").format(PROBE, _hash(sql.SQL("fake_value")))
    with conn.transaction():
        find = sql.SQL(
            "CREATE TEMP TABLE pii_hits ON COMMIT DROP AS SELECT DISTINCT x.col, x.v AS old_value, x.v AS fake_value, "
            "0 AS drawn "
            "FROM {src} t CROSS JOIN LATERAL (VALUES {values}) x(col, v) "
            "WHERE x.v IS NOT NULL AND {h} IN (SELECT h FROM {probe})"
        )
        hits = conn.execute(find.format(src=_name(table), values=values, h=_hash(sql.SQL("x.v")), probe=PROBE)).rowcount
        if hits <= 0:
            return result
        result.fixed = hits
        conn.execute("ANALYZE pii_hits")
        for n in range(rounds + 1):
            if n == rounds:  # every round used: what still coincides is reported, never copied silently
                row = conn.execute(
                    sql.SQL("SELECT col, count(*) FROM pii_hits WHERE drawn = %s AND {} GROUP BY col").format(
                        coincides
                    ),
                    (n,),
                )
                result.unresolved += [Leak(f"{table.qualified}.{col}", int(count)) for col, count in row.fetchall()]
                break
            # the new draw's hash computed once per row (a.h), not once per word it picks
            redrawn = sql.SQL(" ").join(
                sql.SQL("WHEN {} THEN {}").format(
                    sql.Literal(c.name), sql.SQL(fake(rules[c.name].kind, "t.fake_value", "a.h"))
                )
                for c in columns
            )
            # round n redraws what round n - 1 drew and still coincides (at first: all, found coinciding)
            redraw = sql.SQL(
                "UPDATE pii_hits t SET fake_value = CASE t.col {redrawn} END, drawn = {next} FROM (SELECT ctid AS "
                "row_id, sha256({key} || convert_to({again} || fake_value, 'UTF8')) AS h FROM pii_hits "
                "WHERE drawn = {n} AND {coincides} OFFSET 0) a WHERE t.ctid = a.row_id"
            ).format(
                redrawn=redrawn,
                next=sql.Literal(n + 1),
                key=KEY,
                again=sql.Literal(f"again:{n}:"),
                n=sql.Literal(n),
                coincides=coincides,
            )
            if conn.execute(redraw).rowcount <= 0:  # none coincided any more
                break
        for column in columns:
            apply = sql.SQL(
                "UPDATE {src} t SET {c} = h.fake_value::{ty} FROM pii_hits h "
                "WHERE h.col = {name} AND t.{c}::text = h.old_value"
            )
            conn.execute(
                apply.format(
                    src=_name(table),
                    c=sql.Identifier(column.name),
                    ty=sql.SQL(column.type_name),
                    name=sql.Literal(column.name),
                )
            )
    return result


def needs_scan(column: LiveColumn, rule: MaskRule | None) -> bool:
    """Whether every value of the column must be scanned (see the module's opening)."""
    if column.category not in TEXT_CATEGORIES and column.base_type not in JSON_TYPES:
        return False
    if rule is None:
        return True
    if rule.kind in ("null", "fixed", "free_text"):
        return False
    return not rerolled(column, rule)


def scan_table(conn: Connection, table: LiveTable, rules: dict[str, MaskRule]) -> list[Leak]:
    """How many distinct values of each column `needs_scan` names are PROD emails, names or phones."""
    leaks = []
    for column in table.columns:
        if not needs_scan(column, rules.get(column.name)):
            continue
        col = sql.Identifier(column.name)
        if column.category in TEXT_CATEGORIES:
            values = sql.SQL("SELECT {}::text AS v FROM {} WHERE {} IS NOT NULL").format(col, _name(table), col)
        else:
            values = sql.SQL(
                "SELECT s #>> '{{}}' AS v FROM {src}, LATERAL jsonb_path_query({c}::jsonb, 'strict $.**') s "
                "WHERE jsonb_typeof(s) = 'string'"
            ).format(src=_name(table), c=col)
        # DISTINCT first: hashing a value once, not once per row (copied columns repeat a lot)
        query = sql.SQL("SELECT count(*) FROM (SELECT DISTINCT v FROM ({}) a) x JOIN {} p ON p.h = {}").format(
            values, PROBE, _hash(sql.SQL("x.v"))
        )
        row = conn.execute(query).fetchone()
        if row and row[0]:
            leaks.append(Leak(f"{table.qualified}.{column.name}", int(row[0])))
    return leaks


def check_constants(conn: Connection, tables: list[LiveTable], coverage: Coverage) -> list[Leak]:
    """The values a free-text fake can take, and each `fixed:` value of a text or JSON column, against PROD's."""
    leaks = []
    for table in tables:
        rules = coverage.rules.get(table.qualified, {})
        for column in table.columns:
            rule = rules.get(column.name)
            if rule is None or rule.kind not in ("free_text", "fixed"):
                continue
            if column.category not in TEXT_CATEGORIES and column.base_type not in JSON_TYPES:
                continue
            where = f"{table.qualified}.{column.name}"
            if rule.kind == "free_text":
                values: list[str] = list(free_text_values())
            else:
                values = [rule.argument]
            if column.base_type in JSON_TYPES:
                strings = sql.SQL(
                    "SELECT s #>> '{}' FROM unnest(%s::text[]) j, "
                    "LATERAL jsonb_path_query(j::jsonb, 'strict $.**') s WHERE jsonb_typeof(s) = 'string'"
                )
            else:
                strings = sql.SQL("SELECT v FROM unnest(%s::text[]) v")
            query = sql.SQL("SELECT count(*) FROM ({}) x(v) JOIN {} p ON p.h = {}").format(
                strings, PROBE, _hash(sql.SQL("x.v"))
            )
            row = conn.execute(query, (values,)).fetchone()
            if row and row[0]:
                leaks.append(Leak(where, int(row[0])))
    return leaks
