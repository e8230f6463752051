"""Keys on import: which rows were brought in before, and a key for each row that needs one.

What must always hold:
- a row keeps its own key where that key is free in the target, and gets a new one only where it
  would collide: the next value of its column's sequence (serial, identity) or a fresh uuid; the
  sequence is moved past every key the import wrote, so the app's next insert cannot collide;
- re-importing changes nothing: the target remembers, per origin database and user, which source key
  became which target key (`dbguard.transfer_keys`, written in the import's own transaction), and a
  row it remembers (whose target row still exists) is not inserted again.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from itertools import count

from psycopg import sql

from dbguard.guard.connect import Connection

MEMORY = sql.SQL("dbguard.transfer_keys")
CREATE_MEMORY = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {} (origin text NOT NULL, user_key text NOT NULL, table_name text NOT NULL, "
    "keys text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (origin, user_key, table_name))"
).format(MEMORY)


def pack(keys: dict[str, str]) -> str:
    """The keys as JSON text: those that stayed the same as a list, the others as source -> target."""
    kept = [source for source, target in keys.items() if source == target]
    moved = {source: target for source, target in keys.items() if source != target}
    return json.dumps({"kept": kept, "moved": moved}, separators=(",", ":"))


def unpack(text: str) -> dict[str, str]:
    data = json.loads(text)
    return {**{k: k for k in data.get("kept", [])}, **data.get("moved", {})}


@dataclass
class KeyMemory:
    """Source key -> target key, per table, for one origin and user (keys as COPY text, columns joined by tabs)."""

    origin: str
    user_key: str
    tables: dict[str, dict[str, str]] = field(default_factory=dict)
    loaded: dict[str, dict[str, str]] = field(default_factory=dict)
    changed: dict[str, str] | None = None  # table -> its keys packed, where they changed (`packed`)

    @classmethod
    def load(cls, conn: Connection, origin: str, user_key: str) -> KeyMemory:
        memory = cls(origin, user_key)
        exists = conn.execute("SELECT to_regclass('dbguard.transfer_keys') IS NOT NULL").fetchone()
        if exists and exists[0]:
            rows = conn.execute(
                sql.SQL("SELECT table_name, keys FROM {} WHERE origin = %s AND user_key = %s").format(MEMORY),
                (origin, user_key),
            ).fetchall()
            memory.tables = {str(t): unpack(str(k)) for t, k in rows}
        memory.loaded = {t: dict(k) for t, k in memory.tables.items()}
        return memory

    def of(self, table: str) -> dict[str, str]:
        return self.tables.setdefault(table, {})

    def packed(self) -> dict[str, str]:
        """The tables whose keys changed, packed (once: db.import-user packs them while its last COPY runs)."""
        if self.changed is None:
            self.changed = {t: pack(k) for t, k in self.tables.items() if k and k != self.loaded.get(t)}
        return self.changed

    def save(self, conn: Connection) -> int:
        """Write the tables whose keys changed; return how many."""
        changed = self.packed()
        if not changed:
            return 0
        conn.execute(CREATE_MEMORY)
        for table, keys in changed.items():
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (origin, user_key, table_name, keys) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (origin, user_key, table_name) DO UPDATE SET keys = excluded.keys, updated_at = now()"
                ).format(MEMORY),
                (self.origin, self.user_key, table, keys),
            )
        return len(changed)


@dataclass
class KeyMaker:
    """New keys for one generated column: its sequence's next values, or uuids. A dry run makes placeholders."""

    conn: Connection
    generator: str  # a sequence's name, or "uuid"
    writing: bool
    placeholders: count[int] = field(default_factory=lambda: count(1))

    def make(self, n: int, taken: set[str]) -> list[str]:
        """`n` keys, none of them in `taken` (the keys in the target and those this import already wrote)."""
        if n == 0:
            return []
        if self.generator == "uuid":
            return [str(uuid.uuid4()) for _ in range(n)]
        if not self.writing:
            return [f"-{next(self.placeholders)}" for _ in range(n)]
        made: list[str] = []
        while len(made) < n:
            rows = self.conn.execute(
                "SELECT nextval(%s)::text FROM generate_series(1, %s)", (self.generator, n - len(made))
            ).fetchall()
            made += [str(r[0]) for r in rows if str(r[0]) not in taken]
        return made

    def move_past(self, table: sql.Composable, column: str, at_least: int = 0) -> None:
        """Move the sequence past the column's largest value and `at_least`, where it is not past them yet."""
        if self.generator == "uuid" or not self.writing:
            return
        self.conn.execute(
            sql.SQL(
                "SELECT setval(%s, m) FROM (SELECT greatest(max({})::bigint, %s) AS m FROM {}) t, pg_sequences s "
                "WHERE format('%%I.%%I', s.schemaname, s.sequencename)::regclass = %s::regclass "
                "AND m > coalesce(s.last_value, 0)"
            ).format(sql.Identifier(column), table),
            (self.generator, at_least, self.generator),
        )
