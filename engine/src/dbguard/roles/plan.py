"""The ownership matrix as the state it asks for, and the difference from the catalog as changes.

What must hold after every change of a plan is applied: reading the state again yields an empty plan
(re-running changes nothing), and
- `<app>_<tier>_migrator` owns each schema holding a matrix table and each such table (with its sequences);
- each component's group role holds, on each table, exactly the matrix's privileges (SELECT for a
  reader; SELECT, INSERT, UPDATE, DELETE for a writer), USAGE and SELECT on the sequences of the
  tables it writes, USAGE on the schemas it uses, CONNECT on the database, and nothing else: no CREATE
  anywhere, no other attribute; tables the migrator adds later give the writers their sequences;
- login roles hold nothing themselves: each is a member of its group role only;
- PUBLIC holds nothing on the matrix's tables and may not create in their schemas;
- a table with `row_owner` has row-level security enabled, with one policy `dbguard_own_rows` for its
  writers: a row is theirs when `<row_owner> = current_setting('dbguard.user_id', true)` (unset or ''
  after a transaction-local setting ended: no row); a table with `rows_via` the same, a row being theirs
  when the row its foreign key points at is (a task through its project); the table's readers, processes
  that serve every user, read every row (`dbguard_readers_all_rows`). It is not FORCEd: component roles
  never own a table, so the policy always binds them, while the owner (the migrator, and a migration or backup role that
  is a member of it) keeps every row: a data migration that saw no rows would change nothing, silently;
- on PROD (not the embedded stand-in) the tools' read-only role may SELECT every matrix table, and
  every row of those with row-level security (`dbguard_reader_all_rows`: backups and refreshes read
  PROD through it; pg_dump runs with --enable-row-security).
Policies whose name does not start with `dbguard_` are the app's own, and left alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from psycopg import sql

from dbguard.ownership import Ownership
from dbguard.roles.names import OWN_ROWS, POLICY_PREFIX, READER_ROWS, READERS_ROWS, RoleNames
from dbguard.roles.state import PUBLIC, Policy, RoleRow, State, verifier_matches

WRITE = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
SEQUENCE = frozenset({"USAGE", "SELECT"})
GROUP_ATTRIBUTES = "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
LOGIN_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
USER_SETTING = "dbguard.user_id"


@dataclass(frozen=True)
class Change:
    """One difference between the database and the matrix, and the SQL that removes it."""

    object: str
    role: str
    change: str
    statements: tuple[sql.Composed, ...] = field(compare=False)
    cluster: bool = False  # a role's own attributes or memberships (server-wide), not this database's objects
    password: tuple[str, str] | None = field(default=None, compare=False, repr=False)  # (role, password)


@dataclass(frozen=True)
class Wanted:
    """What the plan needs besides the matrix and the state."""

    names: RoleNames
    matrix: list[tuple[str, Ownership]]
    passwords: dict[str, tuple[str, str]] | None = None  # component -> (password, where it came from)
    reader: str | None = None  # PROD: the tools' read-only role
    roles: bool = True  # False: this database's objects only (the roles exist already)
    applying: bool = False  # True: the connected role is the one to apply the plan (it must be able to hand over)
    idle_timeout: str | None = None  # login roles: idle_in_transaction_session_timeout (COMPONENT_IDLE_TIMEOUT)
    # rows_via: table -> (its column, the parent table, the parent's column)
    parents: dict[str, tuple[str, str, str]] = field(default_factory=dict)


def _id(qualified: str) -> sql.Composable:
    return sql.Identifier(*qualified.split(".", 1))


def _privs(privileges: frozenset[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(p) for p in sorted(privileges))


def _words(privileges: frozenset[str]) -> str:
    return ", ".join(sorted(privileges))


def _grants(
    kind: str, obj: str, role: str, have: frozenset[str], want: frozenset[str], scope: str | None = None
) -> list[Change]:
    """GRANT what is missing and REVOKE what is extra of one role's privileges on one object."""
    target = sql.SQL(kind + " {}").format(_id(obj) if scope is None else sql.Identifier(obj))
    who = sql.SQL("PUBLIC") if role == PUBLIC else sql.Identifier(role)
    out = []
    missing, extra = want - have, have - want
    label = f"{kind.lower()} {obj}"
    if missing:
        out.append(
            Change(
                label,
                role,
                "+ " + _words(missing),
                (sql.SQL("GRANT {} ON {} TO {}").format(_privs(missing), target, who),),
            )
        )
    if extra:
        out.append(
            Change(
                label,
                role,
                "- " + _words(extra),
                (sql.SQL("REVOKE {} ON {} FROM {}").format(_privs(extra), target, who),),
            )
        )
    return out


def _role(name: str, have: RoleRow | None, login: bool) -> list[Change]:
    attributes = LOGIN_ATTRIBUTES if login else GROUP_ATTRIBUTES
    if have is None:
        return [
            Change(
                "role",
                name,
                "create (" + ("LOGIN" if login else "NOLOGIN") + ")",
                (sql.SQL("CREATE ROLE {} " + attributes).format(sql.Identifier(name)),),
                cluster=True,
            )
        ]
    wrong = have.powers + (["LOGIN" if have.login else "NOLOGIN"] if have.login != login else [])
    if not wrong:
        return []
    return [
        Change(
            "role",
            name,
            f"{', '.join(wrong)} -> {attributes.split(' INHERIT')[0]}",
            (sql.SQL("ALTER ROLE {} " + attributes).format(sql.Identifier(name)),),
            cluster=True,
        )
    ]


IDLE_SETTING = "idle_in_transaction_session_timeout"


def _idle_timeout(name: str, have: RoleRow | None, value: str | None) -> list[Change]:
    """A component's session left idle inside a transaction (holding its locks) is ended by the server."""
    if value is None:
        return []
    current = {c for c in (have.config if have else frozenset()) if c.startswith(IDLE_SETTING + "=")}
    if current == {f"{IDLE_SETTING}={value}"}:
        return []
    step = sql.SQL("ALTER ROLE {} SET {} = {}").format(
        sql.Identifier(name), sql.Identifier(IDLE_SETTING), sql.Literal(value)
    )
    was = ", ".join(sorted(c.split("=", 1)[1] for c in current)) or "none"
    return [Change("role", name, f"{IDLE_SETTING}: {was} -> {value}", (step,), cluster=True)]


def _membership(member: str, have: RoleRow | None, want: frozenset[str]) -> list[Change]:
    current = have.member_of if have is not None else frozenset()
    out = [
        Change(
            "membership",
            member,
            f"+ member of {g}",
            (sql.SQL("GRANT {} TO {}").format(*map(sql.Identifier, (g, member))),),
            True,
        )
        for g in sorted(want - current)
    ]
    out += [
        Change(
            "membership",
            member,
            f"- member of {g}",
            (sql.SQL("REVOKE {} FROM {}").format(*map(sql.Identifier, (g, member))),),
            True,
        )
        for g in sorted(current - want)
    ]
    return out


def _password(name: str, state: State, given: tuple[str, str] | None, new: bool) -> list[Change]:
    """A password change only where it differs (readable) or the role is new; None: leave it."""
    if given is None:
        return []
    password, source = given
    if not new and (name not in state.verifiers or verifier_matches(state.verifiers[name], password)):
        return []  # the same, or not readable by this connection: left as it is
    # the SQL is made when it runs (`apply`), with a SCRAM verifier computed on this side: no password
    # reaches the server's statement log, the screen or the audit line
    return [Change("role", name, f"password from {source}", (), True, (name, password))]


def policy_comment(definition: str) -> str:
    return "dbguard:" + hashlib.sha256(definition.encode()).hexdigest()[:16]


def _policy(
    table: str, name: str, want: tuple[str, frozenset[str], sql.Composed] | None, have: Policy | None
) -> list[Change]:
    """Create, replace or drop one of db.roles' policies; `want` = (command, roles, the CREATE POLICY)."""
    drop = sql.SQL("DROP POLICY IF EXISTS {} ON {}").format(sql.Identifier(name), _id(table))
    if want is None:
        return [Change(f"policy {name}", table, "drop", (drop,))] if have is not None else []
    command, roles, create = want
    text = create.as_string(None)
    comment = policy_comment(text)
    if have is not None and have.comment == comment and have.roles == roles and have.command == command:
        return []
    steps = (
        drop,
        create,
        sql.SQL("COMMENT ON POLICY {} ON {} IS {}").format(sql.Identifier(name), _id(table), sql.Literal(comment)),
    )
    what = "create" if have is None else "replace"
    return [Change(f"policy {name}", table, f"{what} for {', '.join(sorted(roles))}", steps)]


def plan(state: State, wanted: Wanted) -> list[Change]:
    """Every change that makes the database match the matrix, in an order that can run in one transaction."""
    names = wanted.names
    migrator = names.migrator
    present = [(t, o) for t, o in wanted.matrix if t in state.table_owner]
    schemas = sorted({t.split(".", 1)[0] for t, _ in present})
    out: list[Change] = []
    # -- roles (server-wide)
    if wanted.roles:
        out += _role(migrator, state.roles.get(migrator), login=False)
        for component in names.components:
            group, login = names.group(component), names.login(component)
            out += _role(group, state.roles.get(group), login=False)
            out += _membership(group, state.roles.get(group), frozenset())
            out += _role(login, state.roles.get(login), login=True)
            out += _idle_timeout(login, state.roles.get(login), wanted.idle_timeout)
            out += _membership(login, state.roles.get(login), frozenset({group}))
            given = (wanted.passwords or {}).get(component)
            out += _password(login, state, given, new=login not in state.roles)
        if (
            wanted.applying
            and not state.superuser
            and migrator not in state.roles.get(state.current_user, _NOBODY).member_of
        ):
            out.append(
                Change(
                    "membership",
                    state.current_user,
                    f"+ member of {migrator} (to hand it the tables)",
                    (sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(migrator)),),
                    cluster=True,
                )
            )
    # -- the database
    for role in (migrator, *names.groups):
        have = state.db_privs.get(role, frozenset())
        out += _grants("DATABASE", state.database, role, have, (have - {"CREATE"}) | {"CONNECT"}, scope="db")
    for role in (*names.logins, PUBLIC):
        have = state.db_privs.get(role, frozenset())
        out += _grants("DATABASE", state.database, role, have, have - {"CREATE"}, scope="db")
    # -- schemas
    for schema in schemas:
        if state.schema_owner.get(schema) != migrator:
            out.append(
                Change(
                    f"schema {schema}",
                    migrator,
                    f"owner {state.schema_owner.get(schema)} -> {migrator}",
                    (sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), sql.Identifier(migrator)),),
                )
            )
        in_schema = [o for t, o in present if t.startswith(schema + ".")]
        for component in names.components:
            uses = any(o.privileges(component) for o in in_schema)
            out += _grants(
                "SCHEMA",
                schema,
                names.group(component),
                state.schema_privs.get((schema, names.group(component)), frozenset()),
                frozenset({"USAGE"}) if uses else frozenset(),
                scope="schema",
            )
            writes = frozenset(SEQUENCE) if any(component in o.writers for o in in_schema) else frozenset()
            key = (migrator, schema, "S", names.group(component))
            have = state.default_privs.get(key, frozenset())
            if have != writes:
                verb = "GRANT {} ON SEQUENCES TO {}" if writes else "REVOKE ALL ON SEQUENCES FROM {}"
                parts = (
                    [_privs(writes), sql.Identifier(names.group(component))]
                    if writes
                    else [sql.Identifier(names.group(component))]
                )
                out.append(
                    Change(
                        f"default privileges in {schema}",
                        names.group(component),
                        ("sequences: + " + _words(writes)) if writes else "sequences: - " + _words(have),
                        (
                            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} " + verb).format(
                                sql.Identifier(migrator), sql.Identifier(schema), *parts
                            ),
                        ),
                    )
                )
        for role in (*names.logins, PUBLIC):
            have = state.schema_privs.get((schema, role), frozenset())
            out += _grants("SCHEMA", schema, role, have, have - {"CREATE"}, scope="schema")
        if wanted.reader:
            have = state.schema_privs.get((schema, wanted.reader), frozenset())
            out += _grants("SCHEMA", schema, wanted.reader, have, frozenset({"USAGE"}), scope="schema")
    # -- tables, their sequences and their rows
    for table, owner in present:
        if state.table_owner[table] != migrator:
            out.append(
                Change(
                    f"table {table}",
                    migrator,
                    f"owner {state.table_owner[table]} -> {migrator}",
                    (sql.SQL("ALTER TABLE {} OWNER TO {}").format(_id(table), sql.Identifier(migrator)),),
                )
            )
        for component in names.components:
            group = names.group(component)
            out += _grants("TABLE", table, group, state.privs(table, group), owner.privileges(component))
            seq_want = SEQUENCE if component in owner.writers else frozenset()
            for sequence in state.sequences.get(table, []):
                have = state.sequence_privs.get((sequence, group), frozenset())
                out += _grants("SEQUENCE", sequence, group, have, frozenset(seq_want))
        for role in (*names.logins, PUBLIC):
            out += _grants("TABLE", table, role, state.privs(table, role), frozenset())
            for sequence in state.sequences.get(table, []):
                out += _grants(
                    "SEQUENCE", sequence, role, state.sequence_privs.get((sequence, role), frozenset()), frozenset()
                )
        if wanted.reader:
            have = state.privs(table, wanted.reader)
            out += _grants("TABLE", table, wanted.reader, have, frozenset({"SELECT"}))
        out += _rows(state, table, owner, names, wanted.reader, wanted.parents.get(table))
    return out


_NOBODY = RoleRow(False, False, False, False, False, False, frozenset())


def _rows(
    state: State,
    table: str,
    owner: Ownership,
    names: RoleNames,
    reader: str | None,
    parent: tuple[str, str, str] | None,
) -> list[Change]:
    """Row-level security for a row-scoped table: its writers act for one user at a time and reach only that
    user's rows (`dbguard_own_rows`); its readers are cross-user processes (a worker serving everyone) and
    read every row (`dbguard_readers_all_rows`); PROD's read-only role reads every row."""
    out: list[Change] = []
    ours = {n: p for (t, n), p in state.policies.items() if t == table and n.startswith(POLICY_PREFIX)}
    if not owner.row_scoped or (owner.rows_via and parent is None):
        for name in sorted(ours):
            out += _policy(table, name, None, ours[name])
        return out
    enabled, forced = state.rls.get(table, (False, False))
    if not enabled:
        out.append(
            Change(
                f"table {table}",
                "",
                "row-level security: enable",
                (sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(_id(table)),),
            )
        )
    if forced:  # the owner (the migrator, and roles acting as it) keeps every row, see above
        out.append(
            Change(
                f"table {table}",
                "",
                "row-level security: no force",
                (sql.SQL("ALTER TABLE {} NO FORCE ROW LEVEL SECURITY").format(_id(table)),),
            )
        )
    if owner.row_owner:
        column_type = state.column_type.get((table, owner.row_owner), "text")
        # NULLIF: once a transaction that named a user has ended, the setting reads '' (not NULL) on that
        # connection, and ''::bigint would fail every later query instead of showing no rows
        mine: sql.Composable = sql.SQL("{} = NULLIF(current_setting({}, true), '')::{}").format(
            sql.Identifier(owner.row_owner), sql.Literal(USER_SETTING), sql.SQL(column_type)
        )
    else:
        assert parent is not None
        column, parent_table, parent_column = parent
        # the parent's own policy filters this subquery for the same role: a row is visible, and may be
        # written, exactly when the row it belongs to is the user's
        mine = sql.SQL("EXISTS (SELECT 1 FROM {} AS parent WHERE parent.{} = {}.{})").format(
            _id(parent_table), sql.Identifier(parent_column), _id(table), sql.Identifier(column)
        )
    writers = frozenset(names.group(c) for c in owner.writers)
    create = sql.SQL("CREATE POLICY {} ON {} AS PERMISSIVE FOR ALL TO {} USING ({}) WITH CHECK ({})").format(
        sql.Identifier(OWN_ROWS), _id(table), sql.SQL(", ").join(map(sql.Identifier, sorted(writers))), mine, mine
    )
    want: dict[str, tuple[str, frozenset[str], sql.Composed] | None] = {OWN_ROWS: ("ALL", writers, create)}
    if owner.readers:
        readers = frozenset(names.group(c) for c in owner.readers)
        every = sql.SQL("CREATE POLICY {} ON {} AS PERMISSIVE FOR SELECT TO {} USING (true)").format(
            sql.Identifier(READERS_ROWS), _id(table), sql.SQL(", ").join(map(sql.Identifier, sorted(readers)))
        )
        want[READERS_ROWS] = ("SELECT", readers, every)
    if reader:
        every = sql.SQL("CREATE POLICY {} ON {} AS PERMISSIVE FOR SELECT TO {} USING (true)").format(
            sql.Identifier(READER_ROWS), _id(table), sql.Identifier(reader)
        )
        want[READER_ROWS] = ("SELECT", frozenset({reader}), every)
    for name in sorted(set(want) | set(ours)):
        out += _policy(table, name, want.get(name), ours.get(name))
    return out


def missing_tables(state: State, matrix: list[tuple[str, Ownership]]) -> list[str]:
    """Matrix tables the database does not have yet (not migrated)."""
    return [t for t, _ in matrix if t not in state.table_owner]
