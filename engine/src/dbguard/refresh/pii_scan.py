"""After a refresh, before the swap: prove no PROD email, name or phone value reached the STG copy.

PROD's side never sends values: only 8-byte keyed hashes (sha256 of salt and the lowercased value)
of every email, name and phone it holds, taken in the refresh's snapshot. The copy's side hashes
every text value and every string inside JSON the same way, inside its own server, and counts
matches per column.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from psycopg import sql

from dbguard.guard.cleared import Cleared
from dbguard.guard.connect import Connection
from dbguard.refresh.expressions import fake_parts, inline, word_lists
from dbguard.refresh.rules import Coverage, LiveTable

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


PROBE_SCHEMA = "dbguard_verify"  # lives in the scratch copy only while it is verified, then dropped


def load_probe(conn: Connection, prod_hashes: set[bytes]) -> None:
    """PROD's hashes as an unlogged table in the copy, shared by every verifying session."""
    conn.execute(f"CREATE SCHEMA {PROBE_SCHEMA}")
    conn.execute(f"CREATE UNLOGGED TABLE {PROBE_SCHEMA}.pii_probe (h bytea NOT NULL)")
    with conn.cursor() as cur, cur.copy(f"COPY {PROBE_SCHEMA}.pii_probe (h) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["bytea"])
        for h in prod_hashes:
            copy.write_row((h,))
    conn.execute(f"ANALYZE {PROBE_SCHEMA}.pii_probe")


def drop_probe(conn: Connection) -> None:
    conn.execute(f"DROP SCHEMA IF EXISTS {PROBE_SCHEMA} CASCADE")


REROLLED_KINDS = {"email", "name", "phone", "address"}


def reroll_coincidences(
    conn: Connection, tables: list[LiveTable], coverage: Coverage, salt: str, rounds: int = 32
) -> int:
    """A fake can coincide with a real value (a made-up 'Ann Lee' while PROD has an Ann Lee): draw such
    fakes again, from a hash of the fake itself, until none coincides. Deterministic for the same PROD.

    One pass over the column finds the coinciding values; later rounds work on those values only, and
    every row holding one gets the same new fake.
    """
    words, fixed = word_lists(), 0
    literal_salt = sql.Literal(salt).as_string(conn)
    for table in tables:
        rules = coverage.rules.get(table.qualified, {})
        for column in table.columns:
            rule = rules.get(column.name)
            if rule is None or rule.kind not in REROLLED_KINDS or column.category not in TEXT_CATEGORIES:
                continue
            source = sql.SQL("{}.{}").format(sql.Identifier(table.schema), sql.Identifier(table.name))
            col = sql.Identifier(column.name)
            conn.execute("DROP TABLE IF EXISTS pii_hits")
            find = sql.SQL(
                "CREATE TEMP TABLE pii_hits ON COMMIT DROP AS SELECT DISTINCT {c}::text AS old_value, "
                "{c}::text AS fake_value FROM ONLY {src} WHERE {h} IN (SELECT h FROM dbguard_verify.pii_probe)"
            )
            conn.execute(find.format(c=col, src=source, h=_hash(col, salt)))
            hits = conn.execute("SELECT count(*) FROM pii_hits").fetchone()
            if not hits or not hits[0]:
                continue
            fixed += int(hits[0])
            for n in range(rounds):
                again = f"sha256(convert_to({literal_salt} || 'again:{n}:' || fake_value, 'UTF8'))"
                fake = inline(fake_parts(rule.kind, "fake_value", again, "r", words), words)
                reroll = sql.SQL(
                    "UPDATE pii_hits SET fake_value = {} WHERE {} IN (SELECT h FROM dbguard_verify.pii_probe)"
                )
                if conn.execute(reroll.format(sql.SQL(fake), _hash(sql.SQL("fake_value"), salt))).rowcount <= 0:
                    break
            apply = sql.SQL(
                "UPDATE ONLY {src} t SET {c} = h.fake_value::{ty} FROM pii_hits h WHERE t.{c}::text = h.old_value"
            )
            conn.execute(apply.format(src=source, c=col, ty=sql.SQL(column.type_name)))
    return fixed


def scan_queries(tables: list[LiveTable], salt: str) -> list[tuple[str, sql.Composed]]:
    """One query per text or JSON column: how many distinct values of it are PROD emails, names or phones."""
    queries = []
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
            # DISTINCT first: hashing a value once, not once per row (sanitized columns repeat a lot)
            query = sql.SQL(
                "SELECT count(*) FROM (SELECT DISTINCT v FROM ({}) a) x JOIN dbguard_verify.pii_probe p ON p.h = {}"
            ).format(values, _hash(sql.SQL("x.v"), salt))
            queries.append((f"{table.qualified}.{column.name}", query))
    return queries


def scan_copy(target: Cleared, tables: list[LiveTable], salt: str, workers: int = 2) -> list[Leak]:
    """Every text and JSON column of the copy against PROD's hashes (see load_probe), several sessions at once."""
    pending = scan_queries(tables, salt)
    leaks: list[Leak] = []
    lock = threading.Lock()

    def work() -> None:
        with target.connect() as conn:
            while True:
                with lock:
                    if not pending:
                        return
                    where, query = pending.pop(0)
                row = conn.execute(query).fetchone()
                if row and row[0]:
                    with lock:
                        leaks.append(Leak(where, int(row[0])))

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(work) for _ in range(workers)]:
            future.result()
    return sorted(leaks, key=lambda leak: leak.where)
