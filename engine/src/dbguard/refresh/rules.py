"""The sanitizing policy: a rule for every column copied from PROD, and strict coverage of PROD's live schema.

Rules come from the PII classes declared with the models (app/pii.py), plus an optional TOML file
(SANITIZE_POLICY, default sanitize_policy.toml) for tables that have no model or columns that need
another rule:

    [tables.audit_events]          # a table with no model
    actor_email = "email"
    payload = "fixed:{}"
    note = "sql:left(note, 0)"     # one SQL expression over the table's columns (refresh/safe_sql.py)
    [skip]
    tables = ["sessions"]          # copied empty

Strict: a table nobody classified, or a text, JSON, bytes or array column with no rule, stops the
refresh before anything is copied (Snaplet's strict mode, PostgreSQL Anonymizer's privacy by default).
Keys, numbers, booleans and timestamps may default to `keep`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from dbguard.errors import Refused
from dbguard.guard.connect import Connection
from dbguard.pii import PII, pii_of
from dbguard.refresh.safe_sql import Node, RuleSyntaxError, parse_expression
from dbguard.settings import Settings

RULE_KINDS = (
    "email",
    "name",
    "username",
    "phone",
    "address",
    "free_text",
    "ip",
    "secret",
    "null",
    "fixed",
    "keep",
    "sql",
)
FROM_PII = {
    PII.NONE: "keep",
    PII.EMAIL: "email",
    PII.NAME: "name",
    PII.USERNAME: "username",
    PII.PHONE: "phone",
    PII.ADDRESS: "address",
    PII.FREE_TEXT: "free_text",
    PII.IP: "ip",
    PII.PERSONAL_JSON: "fixed:{}",
    PII.SECRET: "secret",  # a made-up token per row: NULL stays NULL, the value itself is never read
}
# Rules whose fakes stay distinct when their sources are: a keyed hash of the exact value (email, username)
# or of the row's key (secret), with enough bits that a million rows do not coincide; the copy's check
# redraws any that still do (constraints.py) before the unique index is built.
UNIQUE_KINDS = {"keep", "email", "username", "secret", "sql"}
# pg_type.typcategory values whose columns may be copied as they are without a declared rule:
# booleans, numbers, dates and times, time spans, enums; plus uuid (keys).
SAFE_CATEGORIES = {"B", "N", "D", "T", "E"}
SAFE_TYPES = {"uuid", "oid"}
ALWAYS_KEPT = {("public", "alembic_version")}  # the revision must equal PROD's


SQL_RULE_FIX = (
    "write one expression over the table's own columns, e.g. sql:left(note, 0); the functions and types it may "
    "use are listed in docs/operations.md"
)


@dataclass(frozen=True)
class MaskRule:
    kind: str
    argument: str = ""
    expression: Node | None = None  # a `sql:` rule, parsed (refresh/safe_sql.py); the SQL is rendered from it

    @classmethod
    def parse(cls, text: str, where: str) -> MaskRule:
        kind, _, argument = text.partition(":")
        kind = kind.strip()
        if kind not in RULE_KINDS:
            raise Refused(f"unknown sanitizing rule '{text}' for {where}", f"use one of: {', '.join(RULE_KINDS)}")
        if kind in {"fixed", "sql"} and not argument:
            raise Refused(f"rule '{kind}' for {where} needs a value ('{kind}:...')", "fix the policy file")
        if kind != "sql":
            return cls(kind, argument)
        try:
            expression = parse_expression(argument)
        except RuleSyntaxError as exc:
            raise Refused(f"the sql: rule for {where} is not one SQL expression: {exc}", SQL_RULE_FIX) from None
        return cls(kind, argument, expression)

    def __str__(self) -> str:
        return f"{self.kind}:{self.argument}" if self.argument else self.kind


@dataclass
class Policy:
    tables: dict[tuple[str, str], dict[str, MaskRule]] = field(
        default_factory=dict
    )  # (schema, table) -> column -> rule
    skipped: set[tuple[str, str]] = field(default_factory=set)


def _split(name: str) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    return (schema or "public", table)


def load_policy(settings: Settings) -> Policy:
    policy = Policy()
    declared: dict[tuple[str, str], dict[str, PII]] = {}
    for table in settings.project.metadata.sorted_tables:
        rules = {}
        for column in table.columns:
            pii = pii_of(column)
            if pii is not None:
                rules[column.name] = MaskRule.parse(FROM_PII[pii], f"{table.name}.{column.name}")
                if pii is not PII.NONE:
                    declared.setdefault((table.schema or "public", table.name), {})[column.name] = pii
        policy.tables[(table.schema or "public", table.name)] = rules
    path = settings.sanitize_policy_file
    if path.exists():
        _merge_file(policy, path, declared)
    return policy


def _merge_file(policy: Policy, path: Path, declared: dict[tuple[str, str], dict[str, PII]]) -> None:
    """The file's rules over the models' classes. It may change how a column the models declare personal is
    masked, never let its value (or another personal column's) through: `keep`, or a `sql:` rule reading a
    declared column, is refused -- the file may come from SANITIZE_POLICY in a `.env`, the models are code
    that is reviewed, so only the models can say a column is not personal (PII.NONE)."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise Refused(f"the sanitizing policy {path.name} is not valid TOML ({exc})", f"fix {path}") from None
    for name, columns in dict(data.get("tables", {})).items():
        key = _split(name)
        rules = policy.tables.setdefault(key, {})
        personal = declared.get(key, {})
        for column, text in dict(columns).items():
            rule = MaskRule.parse(str(text), f"{name}.{column} in {path.name}")
            reads = (rule.expression.columns() if rule.expression is not None else set()) & set(personal)
            if reads or (column in personal and rule.kind == "keep"):
                bad = sorted(reads) if reads else [column]
                what = f"read {', '.join(bad)} into" if reads else "keep the value of"
                classes = ", ".join(f"{c}: PII.{personal[c].name}" for c in bad)
                raise Refused(
                    f"{path.name} would {what} {name}.{column}, declared personal in the models ({classes}): "
                    "a policy file may not weaken a declared class",
                    f"give {name}.{column} a masking rule, or declare {', '.join(bad)} PII.NONE in the models "
                    "(a reviewed change)",
                )
            rules[column] = rule
    for name in list(dict(data.get("skip", {})).get("tables", [])):
        policy.skipped.add(_split(str(name)))


@dataclass(frozen=True)
class LiveColumn:
    name: str
    type_name: str  # format_type(): what the copy casts each expression back to
    category: str
    base_type: str
    not_null: bool = False
    max_length: int | None = None  # varchar(n) / char(n): n characters; None when unbounded


@dataclass(frozen=True)
class LiveConstraint:
    """A constraint of PROD's live schema that a rule could break: a unique index (primary keys and UNIQUE
    constraints included), a CHECK, or a foreign key."""

    kind: str  # unique, check, fk
    name: str
    columns: tuple[str, ...]  # the table's columns it reads
    definition: str = ""  # unique: the key expressions, comma-separated; check: the expression
    predicate: str = ""  # a partial unique index's WHERE
    nulls_distinct: bool = True
    references: str = ""  # fk: the referenced schema.table
    referenced_columns: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # unique: each key expression (a column's name, or an expression over columns)


@dataclass(frozen=True)
class LiveTable:
    schema: str
    name: str
    columns: tuple[LiveColumn, ...]
    key: tuple[str, ...] = ()  # the primary key's columns (a secret is derived from them)
    constraints: tuple[LiveConstraint, ...] = ()
    partitioned: bool = False  # its rows live in its partitions

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def relation(self) -> sql.Composed:
        """The table in FROM or UPDATE: ONLY itself (not its children), or, partitioned, with its partitions."""
        name = sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.name))
        return name if self.partitioned else sql.SQL("ONLY {}").format(name)

    def column(self, name: str) -> LiveColumn | None:
        return next((c for c in self.columns if c.name == name), None)


def live_schema(conn: Connection, schemas: tuple[str, ...] = ("public",)) -> list[LiveTable]:
    """PROD's tables and columns as they are now (not as the models say)."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory,
               coalesce(bt.typname, t.typname), a.attnotnull,
               CASE WHEN coalesce(bt.typname, t.typname) IN ('varchar', 'bpchar') AND a.atttypmod > 4
                    THEN a.atttypmod - 4 END,
               c.relkind = 'p'
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
          AND a.attgenerated = ''
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype = 'e')
        ORDER BY n.nspname, c.relname, a.attnum
        """,
        (list(schemas),),
    ).fetchall()
    tables: dict[tuple[str, str], list[LiveColumn]] = {}
    partitioned: set[tuple[str, str]] = set()
    for schema, table, column, type_name, category, base, not_null, length, is_partitioned in rows:
        tables.setdefault((str(schema), str(table)), []).append(
            LiveColumn(str(column), str(type_name), str(category), str(base), bool(not_null), length)
        )
        if is_partitioned:
            partitioned.add((str(schema), str(table)))
    keys, constraints = live_constraints(conn, schemas)
    return [
        LiveTable(s, t, tuple(cols), keys.get((s, t), ()), tuple(constraints.get((s, t), [])), (s, t) in partitioned)
        for (s, t), cols in tables.items()
    ]


def app_schemas(conn: Connection) -> tuple[str, ...]:
    """The schemas that hold the app's tables: all but PostgreSQL's, the tools' own and extensions'."""
    rows = conn.execute(
        """
        SELECT n.nspname FROM pg_namespace n
        WHERE n.nspname NOT IN ('information_schema', 'dbguard', 'dbguard_verify') AND n.nspname NOT LIKE 'pg\\_%'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
                          AND d.deptype = 'e')
        ORDER BY 1
        """
    ).fetchall()
    return tuple(str(r[0]) for r in rows)


def live_constraints(
    conn: Connection, schemas: tuple[str, ...]
) -> tuple[dict[tuple[str, str], tuple[str, ...]], dict[tuple[str, str], list[LiveConstraint]]]:
    """Each table's primary key columns, and its unique indexes, CHECKs and foreign keys, from PROD's catalog."""
    keys: dict[tuple[str, str], tuple[str, ...]] = {}
    found: dict[tuple[str, str], list[LiveConstraint]] = {}
    # NULLS NOT DISTINCT came with PostgreSQL 15: an older PROD has none
    distinct = "NOT i.indnullsnotdistinct" if conn.info.server_version >= 150000 else "true"
    uniques = conn.execute(
        """
        SELECT n.nspname, c.relname, ic.relname, i.indisprimary,
               ARRAY(SELECT a.attname FROM pg_depend d JOIN pg_attribute a
                       ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                     WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
                       AND d.refobjid = i.indrelid AND d.refobjsubid > 0
                     UNION SELECT a.attname FROM pg_attribute a
                     WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[]) AND a.attnum > 0),
               ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k),
               coalesce(pg_get_expr(i.indpred, i.indrelid, true), ''), {distinct},
               ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, o)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.o)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.indisunique AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
        ORDER BY 1, 2, 3
        """.replace("{distinct}", distinct),
        (list(schemas),),
    ).fetchall()
    for schema, table, name, primary, columns, exprs, predicate, nulls_distinct, key_columns in uniques:
        where = (str(schema), str(table))
        if primary:
            keys[where] = tuple(str(c) for c in key_columns)
        found.setdefault(where, []).append(
            LiveConstraint(
                "unique",
                str(name),
                tuple(sorted(str(c) for c in columns)),
                ", ".join(str(e) for e in exprs),
                str(predicate),
                bool(nulls_distinct),
                keys=tuple(str(e) for e in exprs),
            )
        )
    others = conn.execute(
        """
        SELECT n.nspname, c.relname, k.conname, k.contype,
               ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY x(attnum, o)
                     JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.attnum ORDER BY x.o),
               CASE WHEN k.contype = 'c' THEN pg_get_expr(k.conbin, k.conrelid, true) ELSE '' END,
               coalesce(format('%%s.%%s', fn.nspname, f.relname), ''),
               ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY x(attnum, o)
                     JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.attnum ORDER BY x.o)
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_class f ON f.oid = k.confrelid
        LEFT JOIN pg_namespace fn ON fn.oid = f.relnamespace
        WHERE k.contype IN ('c', 'f') AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
        ORDER BY 1, 2, 3
        """,
        (list(schemas),),
    ).fetchall()
    for schema, table, name, kind, columns, definition, references, referenced in others:
        found.setdefault((str(schema), str(table)), []).append(
            LiveConstraint(
                "check" if kind == "c" else "fk",
                str(name),
                tuple(str(c) for c in columns),
                str(definition or ""),
                references=str(references),
                referenced_columns=tuple(str(c) for c in referenced),
            )
        )
    return keys, found


@dataclass
class Coverage:
    rules: dict[str, dict[str, MaskRule]]  # qualified table -> column -> rule (defaults filled in)
    unclassified_tables: list[str]
    unclassified_columns: list[str]  # "schema.table.column (type)"
    skipped: list[str]

    @property
    def complete(self) -> bool:
        return not self.unclassified_tables and not self.unclassified_columns


def may_default_to_keep(column: LiveColumn) -> bool:
    return column.category in SAFE_CATEGORIES or column.base_type in SAFE_TYPES


def check_coverage(policy: Policy, tables: list[LiveTable]) -> Coverage:
    coverage = Coverage({}, [], [], [])
    for table in tables:
        key = (table.schema, table.name)
        if key in policy.skipped:
            coverage.skipped.append(table.qualified)
            continue
        if key in ALWAYS_KEPT:
            coverage.rules[table.qualified] = {c.name: MaskRule("keep") for c in table.columns}
            continue
        declared = policy.tables.get(key)
        if declared is None:
            coverage.unclassified_tables.append(table.qualified)
            continue
        rules: dict[str, MaskRule] = {}
        names = {c.name for c in table.columns}
        for column in table.columns:
            rule = declared.get(column.name)
            unknown = sorted(rule.expression.columns() - names) if rule and rule.expression else []
            if unknown:
                raise Refused(
                    f"the sql: rule for {table.qualified}.{column.name} names {', '.join(unknown)}, not a column "
                    f"of {table.qualified}",
                    SQL_RULE_FIX,
                )
            if rule is None and may_default_to_keep(column):
                rule = MaskRule("keep")
            if rule is None:
                coverage.unclassified_columns.append(f"{table.qualified}.{column.name} ({column.type_name})")
            else:
                rules[column.name] = rule
        coverage.rules[table.qualified] = rules
    return coverage


def require_coverage(coverage: Coverage) -> None:
    if coverage.complete:
        return
    parts = []
    if coverage.unclassified_tables:
        parts.append("tables nobody classified: " + ", ".join(coverage.unclassified_tables))
    if coverage.unclassified_columns:
        parts.append("columns nobody classified: " + ", ".join(coverage.unclassified_columns))
    raise Refused(
        "PROD's live schema is not covered by the sanitizing policy; nothing was copied (" + "; ".join(parts) + ")",
        "give each a PII class in app/models.py, or a rule in the SANITIZE_POLICY file; "
        "check with: invoke db.sanitize-check",
    )
