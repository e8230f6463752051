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

from dbguard.errors import Refused
from dbguard.guard.connect import Connection
from dbguard.pii import PII, pii_of
from dbguard.refresh.safe_sql import Node, RuleSyntaxError, parse_expression
from dbguard.settings import Settings

RULE_KINDS = ("email", "name", "phone", "address", "free_text", "ip", "null", "fixed", "keep", "sql")
FROM_PII = {
    PII.NONE: "keep",
    PII.EMAIL: "email",
    PII.NAME: "name",
    PII.PHONE: "phone",
    PII.ADDRESS: "address",
    PII.FREE_TEXT: "free_text",
    PII.IP: "ip",
    PII.PERSONAL_JSON: "fixed:{}",
    PII.SECRET: "null",
}
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
    for table in settings.project.metadata.sorted_tables:
        rules = {}
        for column in table.columns:
            pii = pii_of(column)
            if pii is not None:
                rules[column.name] = MaskRule.parse(FROM_PII[pii], f"{table.name}.{column.name}")
        policy.tables[(table.schema or "public", table.name)] = rules
    path = settings.sanitize_policy_file
    if path.exists():
        _merge_file(policy, path)
    return policy


def _merge_file(policy: Policy, path: Path) -> None:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise Refused(f"the sanitizing policy {path.name} is not valid TOML ({exc})", f"fix {path}") from None
    for name, columns in dict(data.get("tables", {})).items():
        key = _split(name)
        rules = policy.tables.setdefault(key, {})
        for column, text in dict(columns).items():
            rules[column] = MaskRule.parse(str(text), f"{name}.{column} in {path.name}")
    for name in list(dict(data.get("skip", {})).get("tables", [])):
        policy.skipped.add(_split(str(name)))


@dataclass(frozen=True)
class LiveColumn:
    name: str
    type_name: str  # format_type(): what the copy casts each expression back to
    category: str
    base_type: str


@dataclass(frozen=True)
class LiveTable:
    schema: str
    name: str
    columns: tuple[LiveColumn, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def live_schema(conn: Connection, schemas: tuple[str, ...] = ("public",)) -> list[LiveTable]:
    """PROD's tables and columns as they are now (not as the models say)."""
    rows = conn.execute(
        """
        SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory,
               coalesce(bt.typname, t.typname)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%s)
          AND a.attgenerated = ''
        ORDER BY n.nspname, c.relname, a.attnum
        """,
        (list(schemas),),
    ).fetchall()
    tables: dict[tuple[str, str], list[LiveColumn]] = {}
    for schema, table, column, type_name, category, base in rows:
        tables.setdefault((str(schema), str(table)), []).append(
            LiveColumn(str(column), str(type_name), str(category), str(base))
        )
    return [LiveTable(s, t, tuple(cols)) for (s, t), cols in tables.items()]


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
