"""The schema's post-data part, cut into steps that can start as soon as their tables are ready.

pg_dump's post-data section (keys, indexes, foreign keys, triggers, ...) is restored entry by entry
with `pg_restore --use-list`. Each entry is placed by what PROD's catalog says it is built on:
- `keys:<table>`: the table's primary key, unique, exclusion and check constraints, together;
- `index:<id>`: one plain index (several indexes of one table may be built at the same time);
- `fk:<id>`: one foreign key, which needs both its tables' keys and indexes;
- `rest`: everything else (triggers, rules, policies, ...), after all of the above.
What must always hold: every post-data entry of the archive is in exactly one step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dbguard.guard.connect import Connection
from dbguard.roles.names import roles_policy

_ENTRY = re.compile(r"^(?P<id>\d+); (?P<catalog>\d+) (?P<oid>\d+) (?P<what>.*)$")
PG_CLASS, PG_CONSTRAINT = 1259, 2606


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # keys, index, fk, rest
    lines: tuple[str, ...]  # the archive's table-of-contents lines to restore, in order
    table: str = ""  # schema.table it builds on ("" for the rest)
    references: str = ""  # a foreign key's referenced table


def plan_post_data(conn: Connection, lines: tuple[str, ...]) -> list[Step]:
    """Steps for the post-data `lines` (pg_restore --list), from PROD's catalog (`conn`: the snapshot)."""
    entries = []
    for line in lines:
        if roles_policy(line):  # db.roles makes these from the matrix, for the roles of STG's own server
            continue
        match = _ENTRY.match(line)
        entries.append((line, int(match["catalog"]), int(match["oid"]), match["id"]) if match else (line, 0, 0, ""))
    constraint_oids = [oid for _, catalog, oid, _ in entries if catalog == PG_CONSTRAINT]
    index_oids = [oid for _, catalog, oid, _ in entries if catalog == PG_CLASS]
    constraints = {
        int(oid): (str(kind), str(table), str(referenced or ""))
        for oid, kind, table, referenced in conn.execute(
            "SELECT c.oid, c.contype, format('%%s.%%s', n.nspname, r.relname), "
            "CASE WHEN f.oid IS NOT NULL THEN format('%%s.%%s', fn.nspname, f.relname) END "
            "FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace "
            "LEFT JOIN pg_class f ON f.oid = c.confrelid LEFT JOIN pg_namespace fn ON fn.oid = f.relnamespace "
            "WHERE c.oid = ANY(%s)",
            (constraint_oids,),
        ).fetchall()
    }
    indexes = {
        int(oid): str(table)
        for oid, table in conn.execute(
            "SELECT i.indexrelid, format('%%s.%%s', n.nspname, r.relname) FROM pg_index i "
            "JOIN pg_class r ON r.oid = i.indrelid JOIN pg_namespace n ON n.oid = r.relnamespace "
            "WHERE i.indexrelid = ANY(%s) AND NOT r.relispartition AND r.relkind = 'r'",
            (index_oids,),
        ).fetchall()
    }
    keys: dict[str, list[str]] = {}
    steps: list[Step] = []
    rest: list[str] = []
    for line, catalog, oid, entry_id in entries:
        if catalog == PG_CONSTRAINT and oid in constraints:
            kind, table, referenced = constraints[oid]
            if kind == "f" and referenced:
                steps.append(Step(f"fk:{entry_id}", "fk", (line,), table, referenced))
                continue
            if kind in ("p", "u", "x", "c"):
                keys.setdefault(table, []).append(line)
                continue
        if catalog == PG_CLASS and oid in indexes:
            steps.append(Step(f"index:{entry_id}", "index", (line,), indexes[oid]))
            continue
        rest.append(line)
    steps = [Step(f"keys:{table}", "keys", tuple(found), table) for table, found in keys.items()] + steps
    if rest:
        steps.append(Step("rest", "rest", tuple(rest)))
    return steps
