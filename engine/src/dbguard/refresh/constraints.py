"""What a sanitizing rule must not break: the NOT NULL, UNIQUE, CHECK and foreign keys of PROD's live schema.

What must always hold: a policy whose rule would break one of PROD's constraints is refused before anything
is copied (db.sanitize-check, db.refresh-staging and its --dry-run, the ladder), each conflict on one line
naming table.column, the constraint and the rule to use instead. Read from PROD's catalog, never the models:
- NOT NULL: `null` on a NOT NULL column (every other rule keeps NULL as NULL and a value as a value);
- UNIQUE (primary keys, UNIQUE constraints, unique indexes, single or composite): every column of the key
  must keep distinct values distinct: `keep`, `email`, `username`, `secret` (or a `sql:` rule, the
  user's own), or `null` where NULLs are distinct; `name`, `phone`, `address`, `ip`, `free_text` and `fixed`
  make equal values from different ones;
- a length limit (varchar(n)) too short for an email or username fake's unique suffix, on a unique column;
- CHECK: the constraint's own expression evaluated on the sanitized values of PROD's first rows (inside
  PROD, read-only, under a throwaway key: nothing leaves the server but a count);
- FOREIGN KEY: the referencing column's rule is the referenced column's, so equal values stay equal (a
  `secret` is drawn per row, so it cannot be on both ends); a skipped (empty) referenced table takes `null`.

The copy's own check (`redraw_duplicates`) then makes the guarantee exact: a unique key whose fakes still
coincide (a chance of about one in 10^5 for a million rows) has the later rows' fakes drawn again before the
unique index is built.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql

from dbguard.cli.console import Output
from dbguard.errors import Failed, OpsError, Refused
from dbguard.guard.cleared import Cleared
from dbguard.guard.connect import Connection
from dbguard.refresh.expressions import KEY, SanitizeKey, fake, longest, sanitized_select, shortest_room
from dbguard.refresh.rules import (
    UNIQUE_KINDS,
    Coverage,
    LiveColumn,
    LiveConstraint,
    LiveTable,
    MaskRule,
    app_schemas,
    check_coverage,
    live_schema,
    load_policy,
)
from dbguard.settings import Settings

CHECK_SAMPLE = 1000  # PROD rows a CHECK is evaluated on, per table
SECRET_TYPES = {"bytea", "uuid"}  # besides text: the types a secret is made for
VALUE_DERIVED = {"keep", "email", "username", "name", "phone", "address", "ip", "free_text", "fixed", "sql"}
REDRAWN_KINDS = {"email", "username", "secret"}  # what the copy's check draws again when a unique key coincides
FIX = (
    "give those columns the rules named, in the SANITIZE_POLICY file or as PII classes in app/models.py "
    "(docs/sanitizing.md); check with: invoke db.sanitize-check"
)


@dataclass(frozen=True)
class Conflict:
    where: str  # schema.table.column
    constraint: str
    rule: str
    instead: str

    def line(self) -> str:
        return f"{self.where}: rule '{self.rule}' would break {self.constraint} -> use {self.instead}"


def _unique_instead(rule: MaskRule, column: LiveColumn) -> str:
    if rule.kind == "name":
        return "'username' (a unique made-up username)"
    if rule.kind == "null" and not column.not_null:
        return "'null' only where NULLs are distinct, else 'secret' (a made-up value per row)"
    return "'secret' (a made-up value per row, as long as the original and from its alphabet)"


def _not_null_instead(column: LiveColumn, in_fk: bool) -> str:
    if in_fk:
        return "'keep' (the referenced row's key)"
    if column.category == "S" or column.base_type in SECRET_TYPES:
        return "'secret' (a made-up value per row, never NULL where the original is not)"
    return "'keep', or 'fixed:<a value>'"


def static_conflicts(tables: list[LiveTable], coverage: Coverage) -> list[Conflict]:
    """Conflicts the rules and PROD's catalog show without reading a row."""
    found: list[Conflict] = []
    by_name = {t.qualified: t for t in tables}
    for table in tables:
        rules = coverage.rules.get(table.qualified)
        if rules is None:  # skipped, or not covered (require_coverage says so)
            continue
        fk_columns = {c for k in table.constraints if k.kind == "fk" for c in k.columns}
        for column in table.columns:
            rule = rules.get(column.name)
            where = f"{table.qualified}.{column.name}"
            if rule is None:
                continue
            if rule.kind == "null" and column.not_null:
                found.append(
                    Conflict(where, "NOT NULL", str(rule), _not_null_instead(column, column.name in fk_columns))
                )
            if rule.kind == "secret" and column.category != "S" and column.base_type not in SECRET_TYPES:
                instead = "'keep', or 'fixed:<a value>'" if column.not_null else "'null'"
                found.append(
                    Conflict(
                        where, f"its type {column.type_name} (a secret is text, bytea or uuid)", str(rule), instead
                    )
                )
        for constraint in table.constraints:
            if constraint.kind == "unique":
                found += _unique_conflicts(table, rules, constraint)
            elif constraint.kind == "fk":
                found += _fk_conflicts(table, rules, constraint, coverage, by_name)
    return found


def _held_by_kept_key(table: LiveTable, rules: dict[str, MaskRule], constraint: LiveConstraint) -> bool:
    """Whether `constraint` holds whatever its other columns get: it covers a unique key of plain columns that
    are all kept (UNIQUE (id, email) with `id` the kept primary key)."""
    return any(
        k.kind == "unique"
        and not k.predicate
        and set(k.keys) == set(k.columns)
        and set(k.columns) <= set(constraint.columns)
        and all(rules.get(c) is not None and rules[c].kind == "keep" for c in k.columns)
        for k in table.constraints
    )


def _unique_conflicts(table: LiveTable, rules: dict[str, MaskRule], constraint: LiveConstraint) -> list[Conflict]:
    found: list[Conflict] = []
    if _held_by_kept_key(table, rules, constraint):
        return found
    what = f"UNIQUE {constraint.name} ({constraint.definition})"
    for name in constraint.columns:
        column, rule = table.column(name), rules.get(name)
        if column is None or rule is None:
            continue
        where = f"{table.qualified}.{name}"
        if rule.kind == "null" and constraint.nulls_distinct:
            continue
        if rule.kind not in UNIQUE_KINDS:
            found.append(Conflict(where, what, str(rule), _unique_instead(rule, column)))
        elif rule.kind in ("email", "username") and (column.max_length or 10**6) < shortest_room(rule.kind):
            found.append(
                Conflict(
                    where,
                    f"{what} in {column.type_name}: its fakes need {shortest_room(rule.kind)} characters to stay "
                    "unique",
                    str(rule),
                    "'secret' (as long as the original), or widen the column",
                )
            )
    return found


def _cut_at(rule: MaskRule, column: LiveColumn | None) -> int | None:
    """The length an email or username fake is cut to in `column` (None: not cut)."""
    if rule.kind not in ("email", "username") or column is None or column.max_length is None:
        return None
    return column.max_length if column.max_length < longest(rule.kind) else None


def _fk_conflicts(
    table: LiveTable,
    rules: dict[str, MaskRule],
    constraint: LiveConstraint,
    coverage: Coverage,
    tables: dict[str, LiveTable],
) -> list[Conflict]:
    found = []
    what = f"FOREIGN KEY {constraint.name} -> {constraint.references}"
    referenced = coverage.rules.get(constraint.references)
    for name, ref_name in zip(constraint.columns, constraint.referenced_columns, strict=False):
        rule = rules.get(name)
        if rule is None or rule.kind == "null":
            continue  # NULL satisfies a foreign key (NOT NULL is checked on its own)
        where = f"{table.qualified}.{name}"
        if referenced is None:
            if constraint.references in coverage.skipped:
                found.append(Conflict(where, f"{what} (skipped: copied empty)", str(rule), "'null', or copy the table"))
            continue
        ref_rule = referenced.get(ref_name)
        if ref_rule is None:
            continue
        same = rule.kind == ref_rule.kind and rule.argument == ref_rule.argument and rule.kind in VALUE_DERIVED
        if not same:
            instead = (
                f"'{ref_rule}', the rule of {constraint.references}.{ref_name}"
                if ref_rule.kind in VALUE_DERIVED
                else f"'keep' on both ends ({constraint.references}.{ref_name} is drawn per row)"
            )
            found.append(Conflict(where, f"{what}({ref_name})", str(rule), instead))
            continue
        parent = tables.get(constraint.references)
        ref_column = parent.column(ref_name) if parent else None
        if _cut_at(rule, table.column(name)) != _cut_at(ref_rule, ref_column):
            found.append(
                Conflict(
                    where,
                    f"{what}({ref_name}): its fakes are cut to fit {ref_column.type_name if ref_column else '?'} "
                    "there and not here",
                    str(rule),
                    f"the type of {constraint.references}.{ref_name} for this column too",
                )
            )
    return found


def check_conflicts(conn: Connection, tables: list[LiveTable], coverage: Coverage) -> list[Conflict]:
    """Each CHECK over a sanitized column, evaluated on the sanitized values of the table's first rows.

    `conn`: a read-only session opened with `throwaway_key().options`."""
    found = []
    for table in tables:
        rules = coverage.rules.get(table.qualified)
        if rules is None or any(c.name not in rules for c in table.columns):
            continue  # skipped or not covered: nothing to evaluate
        for constraint in table.constraints:
            changed = [c for c in constraint.columns if rules.get(c) and rules[c].kind != "keep"]
            if constraint.kind != "check" or not changed:
                continue
            where = ", ".join(f"{table.qualified}.{c}" for c in changed)
            rule = ", ".join(str(rules[c]) for c in changed)
            what = f"CHECK {constraint.name} ({constraint.definition})"
            query = sql.SQL("SELECT count(*) FROM ({} LIMIT {}) t WHERE NOT ({})").format(
                sanitized_select(table, rules), sql.Literal(CHECK_SAMPLE), sql.SQL(constraint.definition)
            )
            try:
                with conn.transaction():
                    row = conn.execute(query).fetchone()
            except psycopg.Error as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                found.append(Conflict(where, f"{what}: its values fail ({first})", rule, "a rule whose values fit"))
                continue
            if row and row[0]:
                found.append(
                    Conflict(
                        where,
                        f"{what} ({row[0]} of the first {CHECK_SAMPLE} rows fail)",
                        rule,
                        "a rule whose values pass it (a built-in, or sql:<an expression>)",
                    )
                )
    return found


def constraint_conflicts(source: Cleared, tables: list[LiveTable], coverage: Coverage) -> list[Conflict]:
    """Every conflict between the rules and `source`'s live constraints (static ones, then CHECKs on rows)."""
    found = static_conflicts(tables, coverage)
    with source.connect(read_only=True, options=throwaway_key().options) as conn:
        found += check_conflicts(conn, tables, coverage)
    return found


def kept_on(source: Cleared, settings: Settings) -> tuple[bool, str]:
    """The ladder's row: do the sanitizing rules keep `source`'s constraints? (ok, detail)"""
    try:
        with source.connect(read_only=True, options=throwaway_key().options) as conn:
            tables = live_schema(conn, app_schemas(conn))
            coverage = check_coverage(load_policy(settings), tables)
            conflicts = static_conflicts(tables, coverage) + check_conflicts(conn, tables, coverage)
    except OpsError as exc:
        return False, exc.one_line()
    if not conflicts:
        kept = sum(len(t.constraints) for t in tables if t.qualified in coverage.rules)
        return True, f"NOT NULL columns and {kept} unique, check and foreign key constraints kept"
    return False, "; ".join(c.line() for c in conflicts[:3]) + (
        f"; {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
    ) + " (invoke db.sanitize-check)"


def throwaway_key() -> SanitizeKey:
    """A key for trying rules out: their values' shape is what matters, not which fakes they are."""
    return SanitizeKey(secrets.token_hex(32))


def require_kept(conflicts: list[Conflict], out: Output) -> None:
    """One line per conflict, then the refusal."""
    if not conflicts:
        return
    for conflict in conflicts:
        out.error(conflict.line())
    columns = ", ".join(dict.fromkeys(c.where for c in conflicts))
    raise Refused(
        f"the sanitizing policy would break {len(conflicts)} constraint(s) of PROD's live schema ({columns}; each "
        "named above); nothing was copied",
        FIX,
    )


def redraw_duplicates(conn: Connection, table: LiveTable, rules: dict[str, MaskRule], rounds: int = 16) -> int:
    """Draw again the fakes that make a unique key of `table` coincide in the copy, before its index is built.

    Among rows whose key is equal, the first (ordered by the row's text) keeps its fakes; the others get new
    ones from a keyed hash of the old fake and their place. Deterministic for the same PROD. `conn`: a keyed
    session on the copy. Returns how many values were drawn again."""
    redrawn = 0
    for constraint in table.constraints:
        if constraint.kind != "unique":
            continue
        targets = [c for c in constraint.columns if rules.get(c) and rules[c].kind in REDRAWN_KINDS]
        if not targets:
            continue
        column = table.column(targets[0])
        assert column is not None
        redrawn += _redraw(conn, table, rules[column.name], column, constraint, rounds)
    return redrawn


def _redraw(
    conn: Connection, table: LiveTable, rule: MaskRule, column: LiveColumn, constraint: LiveConstraint, rounds: int
) -> int:
    name = table.relation
    key = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(e)) for e in constraint.keys)
    conditions = [sql.SQL("({}) IS NOT NULL").format(sql.SQL(e)) for e in constraint.keys]
    if constraint.predicate:
        conditions.append(sql.SQL("({})").format(sql.SQL(constraint.predicate)))
    where = sql.SQL(" AND ").join(conditions)
    duplicated = sql.SQL("SELECT {key} FROM {t} WHERE {where} GROUP BY {key} HAVING count(*) > 1").format(
        key=key, t=name, where=where
    )
    col = sql.Identifier(column.name)
    made = fake(rule.kind, "d.old", "d.h", column.max_length, column.base_type)
    total = 0
    for n in range(rounds + 1):
        row = conn.execute(sql.SQL("SELECT EXISTS ({})").format(duplicated)).fetchone()
        if not row or not row[0]:
            break
        if n == rounds:
            raise Failed(
                f"the sanitized copy of {table.qualified} still repeats values of its unique key {constraint.name} "
                f"after {rounds} redraws of {column.name}; STG is untouched",
                f"give {table.qualified}.{column.name} a rule that keeps values apart ('secret' or 'keep'); check "
                "with: invoke db.sanitize-check",
            )
        place = sql.SQL("row_number() OVER (PARTITION BY {} ORDER BY t::text)").format(key)
        find = sql.SQL(
            "SELECT tableoid AS table_id, ctid AS row_id, {c} AS old, {place} AS place, "
            "sha256({k} || convert_to({again} || {place} || "
            "':' || {c}::text, 'UTF8')) AS h FROM {t} t WHERE ({key}) IN ({duplicated})"
        ).format(c=col, place=place, k=KEY, again=sql.Literal(f"unique:{n}:"), t=name, key=key, duplicated=duplicated)
        update = sql.SQL(
            "UPDATE {t} t SET {c} = ({made})::{ty} FROM ({find}) d "
            "WHERE t.tableoid = d.table_id AND t.ctid = d.row_id AND d.place > 1"
        ).format(t=name, c=col, made=sql.SQL(made), ty=sql.SQL(column.type_name), find=find)
        total += conn.execute(update).rowcount
        conn.commit()
    return total
