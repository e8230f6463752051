"""What the database's catalog says now about the roles and objects the matrix covers. Read-only.

Everything comes from the catalog in one transaction of the caller's connection: pg_roles (attributes,
memberships), pg_class / pg_namespace / pg_database (owners, and each ACL entry by grantee through
aclexplode), pg_default_acl, pg_policies and the tables' row-level security flags. The roles' passwords
are read (pg_authid) only where the connection may, to tell whether a login password must change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from dbguard.guard.connect import Connection

PUBLIC = "PUBLIC"
Key = tuple[str, str]  # (object, grantee)


# the role attributes that let a role create or own more than its grants say
POWERS = ("SUPERUSER", "CREATEROLE", "CREATEDB", "BYPASSRLS", "REPLICATION")


@dataclass(frozen=True)
class RoleRow:
    login: bool
    superuser: bool
    createrole: bool
    createdb: bool
    bypassrls: bool
    replication: bool
    member_of: frozenset[str]
    config: frozenset[str] = frozenset()  # ALTER ROLE ... SET settings, as "name=value"

    @property
    def powers(self) -> list[str]:
        """The attributes that let a role create or own more than its grants say."""
        flags = (self.superuser, self.createrole, self.createdb, self.bypassrls, self.replication)
        return [w for f, w in zip(flags, POWERS, strict=True) if f]


@dataclass(frozen=True)
class Policy:
    command: str
    roles: frozenset[str]
    comment: str


@dataclass
class State:
    database: str
    current_user: str
    superuser: bool
    roles: dict[str, RoleRow] = field(default_factory=dict)
    schema_owner: dict[str, str] = field(default_factory=dict)
    table_owner: dict[str, str] = field(default_factory=dict)  # schema.table -> owner
    column_type: dict[Key, str] = field(default_factory=dict)  # (schema.table, column) -> format_type
    sequences: dict[str, list[str]] = field(default_factory=dict)  # schema.table -> its owned sequences
    rls: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # enabled, forced
    db_privs: dict[str, frozenset[str]] = field(default_factory=dict)  # grantee -> privileges
    schema_privs: dict[Key, frozenset[str]] = field(default_factory=dict)
    table_privs: dict[Key, frozenset[str]] = field(default_factory=dict)
    sequence_privs: dict[Key, frozenset[str]] = field(default_factory=dict)
    default_privs: dict[tuple[str, str, str, str], frozenset[str]] = field(default_factory=dict)
    policies: dict[Key, Policy] = field(default_factory=dict)  # (schema.table, name)
    verifiers: dict[str, str | None] = field(default_factory=dict)  # role -> SCRAM verifier (readable only)

    def privs(self, table: str, grantee: str) -> frozenset[str]:
        return self.table_privs.get((table, grantee), frozenset())


def _grouped(rows: Iterable[tuple[str, str, str]]) -> dict[Key, frozenset[str]]:
    found: dict[Key, set[str]] = {}
    for obj, grantee, privilege in rows:
        found.setdefault((obj, grantee), set()).add(privilege)
    return {k: frozenset(v) for k, v in found.items()}


GRANTEE = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END"


def read_state(conn: Connection, schemas: Iterable[str], roles: Iterable[str]) -> State:
    """The state of `schemas` (their tables and sequences) and of the named roles, as this database has it."""
    schemas, roles = sorted(set(schemas)), sorted(set(roles))
    row = conn.execute(
        "SELECT current_database(), current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    state = State(str(row[0]), str(row[1]), bool(row[2]))
    for name, login, superuser, createrole, createdb, bypassrls, replication, member_of, config in conn.execute(
        "SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, "
        "r.rolreplication, ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE m.member = r.oid ORDER BY 1), coalesce(r.rolconfig, '{}') FROM pg_roles r "
        "WHERE r.rolname = ANY(%s) OR r.rolname = current_user",
        (roles,),
    ).fetchall():
        state.roles[str(name)] = RoleRow(
            bool(login),
            bool(superuser),
            bool(createrole),
            bool(createdb),
            bool(bypassrls),
            bool(replication),
            frozenset(member_of),
            frozenset(config),
        )
    args = {"s": schemas}
    state.schema_owner = {
        str(n): str(o)
        for n, o in conn.execute(
            "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = ANY(%(s)s)", args
        ).fetchall()
    }
    relations = (
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(s)s) "
        "AND c.relkind IN ('r', 'p')"
    )
    for name, owner, enabled, forced in conn.execute(
        f"SELECT format('%%s.%%s', n.nspname, c.relname), pg_get_userbyid(c.relowner), c.relrowsecurity, "
        f"c.relforcerowsecurity {relations}",
        args,
    ).fetchall():
        state.table_owner[str(name)] = str(owner)
        state.rls[str(name)] = (bool(enabled), bool(forced))
    for table, column, kind in conn.execute(
        f"SELECT format('%%s.%%s', n.nspname, c.relname), a.attname, format_type(a.atttypid, a.atttypmod) "
        f"{relations.replace('FROM pg_class c', 'FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid')} "
        "AND a.attnum > 0 AND NOT a.attisdropped",
        args,
    ).fetchall():
        state.column_type[(str(table), str(column))] = str(kind)
    for table, sequence in conn.execute(
        "SELECT format('%%s.%%s', tn.nspname, t.relname), format('%%s.%%s', sn.nspname, s.relname) "
        "FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
        "JOIN pg_namespace sn ON sn.oid = s.relnamespace JOIN pg_class t ON t.oid = d.refobjid "
        "JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
        "AND d.deptype IN ('a', 'i') AND tn.nspname = ANY(%(s)s) ORDER BY 1, 2",
        args,
    ).fetchall():
        state.sequences.setdefault(str(table), []).append(str(sequence))
    state.db_privs = {
        grantee: privs
        for (_, grantee), privs in _grouped(
            conn.execute(
                f"SELECT d.datname, {GRANTEE}, a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
                "WHERE d.datname = current_database() AND a.grantee <> d.datdba"
            ).fetchall()
        ).items()
    }
    state.schema_privs = _grouped(
        conn.execute(
            f"SELECT n.nspname, {GRANTEE}, a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a "
            "WHERE n.nspname = ANY(%(s)s) AND a.grantee <> n.nspowner",
            args,
        ).fetchall()
    )
    acl = (
        f"SELECT format('%%s.%%s', n.nspname, c.relname), {GRANTEE}, a.privilege_type "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
        "WHERE n.nspname = ANY(%(s)s) AND a.grantee <> c.relowner AND c.relkind IN "
    )
    state.table_privs = _grouped(conn.execute(acl + "('r', 'p')", args).fetchall())
    state.sequence_privs = _grouped(conn.execute(acl + "('S')", args).fetchall())
    for owner, schema, kind, grantee, privilege in conn.execute(
        f"SELECT pg_get_userbyid(d.defaclrole), coalesce(n.nspname, ''), d.defaclobjtype::text, {GRANTEE}, "
        "a.privilege_type FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, "
        "aclexplode(d.defaclacl) a WHERE a.grantee <> d.defaclrole"
    ).fetchall():
        key = (str(owner), str(schema), str(kind), str(grantee))
        state.default_privs[key] = state.default_privs.get(key, frozenset()) | {str(privilege)}
    for schema, table, name, command, policy_roles, comment in conn.execute(
        "SELECT p.schemaname, p.tablename, p.policyname, p.cmd, p.roles::text[], "
        "coalesce(obj_description(pol.oid, 'pg_policy'), '') FROM pg_policies p "
        "JOIN pg_namespace n ON n.nspname = p.schemaname JOIN pg_class c ON c.relnamespace = n.oid "
        "AND c.relname = p.tablename JOIN pg_policy pol ON pol.polrelid = c.oid AND pol.polname = p.policyname "
        "WHERE p.schemaname = ANY(%(s)s)",
        args,
    ).fetchall():
        state.policies[(f"{schema}.{table}", str(name))] = Policy(str(command), frozenset(policy_roles), str(comment))
    state.verifiers = _verifiers(conn, roles)
    return state


def _verifiers(conn: Connection, roles: list[str]) -> dict[str, str | None]:
    """Each role's stored password (a SCRAM verifier), where this connection may read pg_authid."""
    readable = conn.execute("SELECT has_table_privilege('pg_authid', 'SELECT')").fetchone()
    if not (readable and readable[0]):
        return {}
    try:
        with conn.transaction():
            rows = conn.execute(
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)", (roles,)
            ).fetchall()
    except psycopg.Error:
        return {}
    return {str(name): (str(pw) if pw is not None else None) for name, pw in rows}


def verifier_matches(verifier: str | None, password: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier was made from `password` (RFC 5803's format)."""
    if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
        return False
    try:
        head, keys = verifier.split("$", 1)[1].split("$", 1)
        iterations, salt = head.split(":", 1)
        stored_key = keys.split(":", 1)[0]
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(hashlib.sha256(client_key).digest()).decode(), stored_key)
