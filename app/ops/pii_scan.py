"""After a refresh, before the swap: prove no PROD email, name or phone value reached the STG copy.

PROD's side never sends values: only 8-byte keyed hashes (sha256 of salt and the lowercased value)
of every email, name and phone it holds, taken in the refresh's snapshot. The copy's side hashes
every text value and every string inside JSON the same way, inside its own server, and counts
matches per column.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from app.ops.connect import Connection
from app.ops.sanitize_policy import Coverage, LiveTable
from app.ops.sanitize_sql import fake_parts, inline, lists_cte, word_lists

LIST_NAMES = ("first", "last", "street", "city", "sentence", "paragraph", "domain", "area")

SCANNED_KINDS = {"email", "name", "phone"}
TEXT_CATEGORIES = {"S"}
JSON_TYPES = {"json", "jsonb"}


def _hash(expr: sql.Composable, salt: str) -> sql.Composed:
    return sql.SQL("substr(sha256(convert_to({} || lower(trim({})), 'UTF8')), 1, 8)").format(sql.Literal(salt), expr)


def prod_pii_hashes(conn: Connection, tables: list[LiveTable], coverage: Coverage, salt: str) -> set[bytes]:
    """Keyed hashes of PROD's email, name and phone values (in the caller's snapshot)."""
    found: set[bytes] = set()
    for table in tables:
        rules = coverage.rules.get(table.qualified, {})
        for column in table.columns:
            rule = rules.get(column.name)
            if rule is None or rule.kind not in SCANNED_KINDS:
                continue
            col = sql.SQL("{}::text").format(sql.Identifier(column.name))
            query = sql.SQL("SELECT DISTINCT {} FROM ONLY {}.{} WHERE {} IS NOT NULL").format(
                _hash(col, salt), sql.Identifier(table.schema), sql.Identifier(table.name), sql.Identifier(column.name)
            )
            found.update(bytes(row[0]) for row in conn.execute(query))
    return found


@dataclass(frozen=True)
class Leak:
    where: str
    values: int


def load_probe(conn: Connection, prod_hashes: set[bytes]) -> None:
    conn.execute("CREATE TEMP TABLE pii_probe (h bytea PRIMARY KEY) ON COMMIT DROP")
    with conn.cursor() as cur, cur.copy("COPY pii_probe (h) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["bytea"])
        for h in prod_hashes:
            copy.write_row((h,))


REROLLED_KINDS = {"email", "name", "phone", "address"}


def reroll_coincidences(
    conn: Connection, tables: list[LiveTable], coverage: Coverage, salt: str, rounds: int = 8
) -> int:
    """A fake can coincide with a real value (a made-up 'Ann Lee' while PROD has an Ann Lee): draw such
    fakes again, from a hash of the fake itself, until none coincides. Deterministic for the same PROD.

    One pass over the column finds the coincidences; later rounds work on those rows only.
    """
    words, fixed = word_lists(), 0
    for table in tables:
        rules = coverage.rules.get(table.qualified, {})
        for column in table.columns:
            rule = rules.get(column.name)
            if rule is None or rule.kind not in REROLLED_KINDS or column.category not in TEXT_CATEGORIES:
                continue
            source = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))
            col = sql.Identifier(column.name)
            conn.execute("DROP TABLE IF EXISTS pii_hits")
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE pii_hits ON COMMIT DROP AS SELECT ctid AS row_id, {c}::text AS fake_value "
                    "FROM ONLY {src} WHERE {h} IN (SELECT h FROM pii_probe)"
                ).format(c=col, src=source, h=_hash(col, salt))
            )
            hits = conn.execute("SELECT count(*) FROM pii_hits").fetchone()
            if not hits or not hits[0]:
                continue
            fixed += int(hits[0])
            for n in range(rounds):
                again = f"sha256(convert_to({sql.Literal(salt).as_string(conn)} || 'again:{n}:' || fake_value, 'UTF8'))"
                fake = inline(fake_parts(rule.kind, "fake_value", again, "r", words))
                reroll = sql.SQL("{} UPDATE pii_hits SET fake_value = {} WHERE {} IN (SELECT h FROM pii_probe)")
                query = reroll.format(
                    lists_cte(words, set(LIST_NAMES)), sql.SQL(fake), _hash(sql.SQL("fake_value"), salt)
                )
                changed = conn.execute(query).rowcount
                if changed <= 0:
                    break
            conn.execute(
                sql.SQL(
                    "UPDATE ONLY {src} t SET {c} = h.fake_value::{ty} FROM pii_hits h WHERE t.ctid = h.row_id"
                ).format(src=source, c=col, ty=sql.SQL(column.type_name))
            )
    return fixed


def scan_copy(conn: Connection, tables: list[LiveTable], salt: str) -> list[Leak]:
    """Every text and JSON column of the copy, checked against PROD's hashes (already in pii_probe)."""
    leaks = []
    for table in tables:
        for column in table.columns:
            col = sql.Identifier(column.name)
            source = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))
            if column.category in TEXT_CATEGORIES:
                values = sql.SQL("SELECT {}::text AS v FROM ONLY {} WHERE {} IS NOT NULL").format(col, source, col)
            elif column.base_type in JSON_TYPES:
                values = sql.SQL(
                    "SELECT s #>> '{{}}' AS v FROM ONLY {src}, LATERAL jsonb_path_query({c}::jsonb, 'strict $.**') s "
                    "WHERE jsonb_typeof(s) = 'string'"
                ).format(src=source, c=col)
            else:
                continue
            query = sql.SQL("SELECT count(*) FROM ({}) x JOIN pii_probe p ON p.h = {}").format(
                values, _hash(sql.SQL("x.v"), salt)
            )
            row = conn.execute(query).fetchone()
            if row and row[0]:
                leaks.append(Leak(f"{table.qualified}.{column.name}", int(row[0])))
    return leaks
