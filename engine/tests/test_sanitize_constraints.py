"""Sanitizing knows PROD's constraints: rules that would break a NOT NULL, UNIQUE, CHECK or foreign key are
refused up front (db.sanitize-check, --dry-run, the refresh itself), the built-in rules keep them, and a
refresh that still breaks one says which rule did it, never "restore", and "run again" only where it helps.

On real clusters: PROD (the prod_server) holds an `accounts` table shaped like the issue's app: 2,000 users
with a UNIQUE username, a NOT NULL token, a composite UNIQUE (org_id, handle), a CHECK on the email and a
text foreign key to the username.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from dbguard.guard.tiers import Tier
from dbguard.refresh.constraints import redraw_duplicates
from dbguard.refresh.expressions import KEY, KEY_SETTING, fake, keyed_hash, sanitized_select
from dbguard.refresh.failures import RETRY_FIX, refresh_failed
from dbguard.refresh.rules import Coverage, LiveColumn, LiveConstraint, LiveTable, MaskRule
from psycopg import sql

from tests.support.cli import invoke_cli
from tests.support.clusters import ThrowawayCluster
from tests.support.setup import Tiers
from tests.test_refresh import env_for, fill

USERS = 2_000
ACCOUNTS = f"""
CREATE TABLE accounts (
    id bigint PRIMARY KEY,
    username text NOT NULL UNIQUE,
    token text NOT NULL,
    email varchar(120) NOT NULL CHECK (email LIKE '%@%'),
    org_id int NOT NULL,
    handle text,
    UNIQUE (org_id, handle)
);
INSERT INTO accounts
SELECT g, 'user' || g, md5(g::text), 'User' || g || '@corp.test', g % 10, 'Ann Lee ' || g
FROM generate_series(1, {USERS}) g;
CREATE TABLE invites (id int PRIMARY KEY, account_username text NOT NULL REFERENCES accounts (username));
INSERT INTO invites SELECT g, 'user' || g FROM generate_series(1, 300) g;
"""
# what a new user writes first: a name fake on usernames and handles, the secret class's old NULL on tokens
BREAKING = """
[tables.accounts]
username = "name"
token = "null"
email = "email"
handle = "name"
[tables.invites]
account_username = "keep"
"""
BUILT_INS = """
[tables.accounts]
username = "username"
token = "secret"
email = "email"
handle = "username"
[tables.invites]
account_username = "username"
"""
USERNAME = re.compile(r"^[a-z]+_[a-z]+_[0-9a-f]{10}$")


@pytest.fixture
def prod_with_accounts(tiers: Tiers) -> Tiers:
    fill(tiers, Tier.PROD, seed_value=41)
    fill(tiers, Tier.STG, seed_value=42, scenario="minimal")
    tiers.sql(Tier.PROD, ACCOUNTS)
    return tiers


def policy_env(tiers: Tiers, tmp_path: Path, text: str) -> dict[str, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    return env_for(tiers, tmp_path, SANITIZE_POLICY=str(policy))


def stg_tables(tiers: Tiers) -> str:
    return tiers.sql(
        Tier.STG,
        "SELECT string_agg(tablename, ',' ORDER BY tablename) || ' ' || (SELECT count(*) FROM users) FROM pg_tables "
        "WHERE schemaname = 'public'",
    )


def test_rules_that_break_prods_constraints_are_refused_up_front(prod_with_accounts: Tiers, tmp_path: Path) -> None:
    tiers = prod_with_accounts
    env = policy_env(tiers, tmp_path, BREAKING)
    before = stg_tables(tiers)
    expected = [
        "public.accounts.token: rule 'null' would break NOT NULL -> use 'secret'",
        "public.accounts.username: rule 'name' would break UNIQUE accounts_username_key (username) -> use 'username'",
        "public.accounts.handle: rule 'name' would break UNIQUE accounts_org_id_handle_key (org_id, handle) -> use "
        "'username'",
        "public.invites.account_username: rule 'keep' would break FOREIGN KEY invites_account_username_fkey -> "
        "public.accounts(username) -> use 'name', the rule of public.accounts.username",
    ]
    for args in (("db.sanitize-check",), ("db.refresh-staging", "--dry-run"), ("db.refresh-staging",)):
        proc = invoke_cli(*args, env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        for line in expected:
            assert line in proc.stderr, (args, proc.stderr)
        assert "the sanitizing policy would break 4 constraint(s) of PROD's live schema" in proc.stderr
        assert "nothing was copied -> " in proc.stderr and "check with: invoke db.sanitize-check" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert stg_tables(tiers) == before  # STG untouched: no accounts table arrived


def test_the_built_in_rules_keep_every_constraint_at_2000_users(prod_with_accounts: Tiers, tmp_path: Path) -> None:
    tiers = prod_with_accounts
    # a table with no key: a secret is drawn from the row's other columns, so equal rows draw equal secrets,
    # which its UNIQUE token would refuse: the copy's check draws the repeats again
    tiers.sql(
        Tier.PROD,
        "CREATE TABLE devices (owner text, token text NOT NULL UNIQUE); "
        "INSERT INTO devices SELECT 'same owner', md5(g::text) FROM generate_series(1, 5) g",
    )
    env = policy_env(tiers, tmp_path, BUILT_INS + '[tables.devices]\nowner = "keep"\ntoken = "secret"\n')
    check = invoke_cli("db.sanitize-check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "its rules keep PROD's NOT NULL columns and" in check.stdout
    proc = invoke_cli("db.refresh-staging", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 fake(s) that repeated in a unique key drawn again" in proc.stdout
    with psycopg.connect(tiers.urls[Tier.STG]) as stg, psycopg.connect(tiers.urls[Tier.PROD]) as prod:
        devices = stg.execute("SELECT count(DISTINCT token), min(char_length(token)) FROM devices").fetchone()
        assert devices == (5, 32)
        usernames = [str(r[0]) for r in stg.execute("SELECT username FROM accounts")]
        assert len(usernames) == len(set(usernames)) == USERS
        assert all(USERNAME.match(u) for u in usernames), usernames[:3]
        handles = stg.execute("SELECT count(DISTINCT handle), count(*) FROM accounts").fetchone()
        assert handles == (USERS, USERS)
        # every token a made-up one: as long as PROD's (md5: 32 hex digits), none of PROD's
        tokens = {str(r[0]) for r in stg.execute("SELECT token FROM accounts")}
        assert len(tokens) == USERS and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tokens)
        assert not tokens & {str(r[0]) for r in prod.execute("SELECT token FROM accounts")}
        # the CHECK and the constraints were built on the copy and hold
        built = stg.execute(
            "SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint "
            "WHERE conrelid IN ('accounts'::regclass, 'invites'::regclass) AND convalidated"
        ).fetchone()
        assert built == (
            "accounts_email_check,accounts_org_id_handle_key,accounts_pkey,accounts_username_key,"
            "invites_account_username_fkey,invites_pkey",
        )
        assert stg.execute("SELECT count(*) FROM accounts WHERE email NOT LIKE '%@%'").fetchone() == (0,)
        # the foreign key's ends got the same fake: every invite still finds its account
        joined = stg.execute("SELECT count(*) FROM invites i JOIN accounts a ON a.username = i.account_username")
        assert joined.fetchone() == (300,)
        assert not {str(r[0]) for r in prod.execute("SELECT username FROM accounts")} & set(usernames)


def test_a_check_the_fakes_fail_is_refused_and_one_they_pass_is_kept(prod_with_accounts: Tiers, tmp_path: Path) -> None:
    tiers = prod_with_accounts
    tiers.sql(Tier.PROD, "ALTER TABLE accounts ADD CONSTRAINT short_username CHECK (char_length(username) <= 12)")
    env = policy_env(tiers, tmp_path, BUILT_INS)
    proc = invoke_cli("db.sanitize-check", env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(
        r"public\.accounts\.username: rule 'username' would break CHECK short_username "
        r"\(char_length\(username\) <= 12\) \(\d+ of the first 1000 rows fail\) -> use a rule whose values pass it",
        proc.stderr,
    ), proc.stderr
    assert "public.accounts.email" not in proc.stderr  # its CHECK (email LIKE '%@%') holds for the email fakes
    # a varchar too short for the username's unique suffix is named with the length it needs
    tiers.sql(Tier.PROD, "ALTER TABLE accounts DROP CONSTRAINT short_username, ALTER COLUMN username TYPE varchar(12)")
    proc = invoke_cli("db.sanitize-check", env=env)
    assert proc.returncode == 2
    assert (
        "public.accounts.username: rule 'username' would break UNIQUE accounts_username_key (username) in "
        "character varying(12): its fakes need 14 characters to stay unique" in proc.stderr
    )
    # varchar(20): the name part is cut, the suffix kept whole, all distinct; the foreign key's other end must
    # cut the same way
    tiers.sql(Tier.PROD, "ALTER TABLE accounts ALTER COLUMN username TYPE varchar(20)")
    proc = invoke_cli("db.sanitize-check", env=env)
    assert proc.returncode == 2
    assert (
        "public.invites.account_username: rule 'username' would break FOREIGN KEY invites_account_username_fkey -> "
        "public.accounts(username): its fakes are cut to fit character varying(20) there and not here -> use the "
        "type of public.accounts.username for this column too"
    ) in proc.stderr
    tiers.sql(Tier.PROD, "ALTER TABLE invites ALTER COLUMN account_username TYPE varchar(20)")
    proc = invoke_cli("db.refresh-staging", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = tiers.sql(Tier.STG, "SELECT count(DISTINCT username) || ' ' || max(char_length(username)) FROM accounts")
    assert row == f"{USERS} 20"


def test_a_refresh_that_breaks_a_constraint_names_the_rule_and_never_says_restore(
    prod_with_accounts: Tiers, tmp_path: Path
) -> None:
    """The issue's two failures, on real clusters, through `sql:` rules (the user's own, not checked up front)."""
    tiers = prod_with_accounts
    nulls = BUILT_INS.replace('token = "secret"', 'token = "sql:CASE WHEN id > 0 THEN NULL ELSE token END"')
    proc = invoke_cli("db.refresh-staging", env=policy_env(tiers, tmp_path, nulls))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        'writing public.accounts into the copy failed: ERROR:  null value in column "token" of relation '
        '"accounts" violates not-null constraint; the sanitized values break a constraint of PROD\'s schema '
        "(public.accounts.token: rule 'sql:CASE WHEN id > 0 THEN NULL ELSE token END'); STG is untouched -> change "
        "that rule (the SANITIZE_POLICY file or the column's PII class); check with: invoke db.sanitize-check"
    ) in proc.stderr
    tiers.sql(Tier.PROD, "DROP TABLE invites")
    collide = BUILT_INS.replace('username = "username"', 'username = "sql:left(username, 5)"').replace(
        'account_username = "username"', 'account_username = "sql:left(account_username, 5)"'
    )
    proc = invoke_cli("db.refresh-staging", env=policy_env(tiers, tmp_path, collide))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(
        r"building keys and checks of public\.accounts in the copy failed: .*could not create unique index "
        r"\"accounts_username_key\"; the sanitized values break a constraint of PROD's schema "
        r"\(public\.accounts\.username: rule 'sql:left\(username, 5\)'\); STG is untouched -> change that rule",
        proc.stderr,
    ), proc.stderr
    for text in (proc.stdout + proc.stderr).lower(), proc.stderr.lower():
        assert "restore" not in text and "run the refresh again" not in text
    assert "accounts" not in stg_tables(tiers)


@pytest.mark.parametrize(
    "line, retry",
    [
        ("ERROR:  could not serialize access due to concurrent update", True),
        ("ERROR:  canceling statement due to lock timeout", True),
        ("server closed the connection unexpectedly", True),
        ('connection to server at "db" (10.0.0.1), port 5432 failed: Connection refused', True),
        ("FATAL:  the database system is shutting down", True),
        ("ERROR:  deadlock detected", True),
        ('ERROR:  duplicate key value violates unique constraint "accounts_username_key"', False),
        ('ERROR:  new row for relation "accounts" violates check constraint "accounts_email_check"', False),
        ("ERROR:  value too long for type character varying(12)", False),
        ("ERROR:  permission denied for table accounts", False),
    ],
)
def test_run_again_only_where_retrying_can_help(line: str, retry: bool) -> None:
    table = LiveTable(
        "public",
        "accounts",
        (LiveColumn("username", "text", "S", "text"), LiveColumn("email", "text", "S", "text")),
        constraints=(
            LiveConstraint("unique", "accounts_username_key", ("username",), "username", keys=("username",)),
            LiveConstraint("check", "accounts_email_check", ("email",), "email ~~ '%@%'::text"),
        ),
    )
    coverage = Coverage(
        {"public.accounts": {"username": MaskRule("name"), "email": MaskRule("fixed", "x")}}, [], [], []
    )
    failed = refresh_failed("copying public.accounts", line, [table], coverage)
    assert (failed.fix == RETRY_FIX) is retry
    assert "restore" not in failed.one_line().lower()
    if "unique constraint" in line:
        assert "(public.accounts.username: rule 'name')" in failed.message and "db.sanitize-check" in str(failed.fix)
    if "check constraint" in line:
        assert "(public.accounts.email: rule 'fixed:x')" in failed.message


def _keyed(cluster: ThrowawayCluster) -> psycopg.Connection:
    conn = psycopg.connect(cluster.socket_url("postgres"), autocommit=True)
    conn.execute(sql.SQL("SELECT set_config({}, %s, false)").format(sql.Literal(KEY_SETTING)), ("ab" * 32,))
    return conn


def test_a_million_usernames_emails_and_secrets_never_collide(local_server: ThrowawayCluster) -> None:
    """The unique rules' fakes for 1,000,000 distinct sources: all distinct, and the same on a second run."""
    drawn = {
        "username": fake("username", "v", "k.h"),
        "email": fake("email", "v", "k.h"),
        "secret": fake("secret", "md5(v)", "k.h"),
    }
    h = keyed_hash(sql.SQL("'source ' || g")).as_string(None)
    with _keyed(local_server) as conn:
        for kind, made in drawn.items():
            query = (
                f"SELECT count(DISTINCT f), count(*), md5(string_agg(f, ',' ORDER BY g)) FROM (SELECT g, {made} AS f "
                f"FROM (SELECT g, 'source ' || g AS v, {h} AS h FROM generate_series(1, 1000000) g OFFSET 0) k) s"
            )
            first = conn.execute(query).fetchone()
            assert first is not None and first[0] == first[1] == 1_000_000, kind
            assert conn.execute(query).fetchone() == first, kind  # deterministic
        sample = conn.execute(
            f"SELECT {drawn['secret']} FROM (SELECT g, md5(g::text) AS v, {h} AS h FROM generate_series(1, 3) g) k"
        ).fetchall()
        assert all(re.fullmatch(r"[0-9a-f]{32}", str(r[0])) for r in sample)
    assert KEY.as_string(None).startswith("(SELECT decode(current_setting(")


def test_fakes_that_repeat_in_a_unique_key_are_drawn_again_deterministically(local_server: ThrowawayCluster) -> None:
    """The copy's check: rows whose unique key repeats (here on purpose) keep one fake, the others get new ones."""
    table = LiveTable(
        "public",
        "people",
        (
            LiveColumn("id", "integer", "N", "int4"),
            LiveColumn("login", "character varying(16)", "S", "varchar", True, 16),
        ),
        ("id",),
        (LiveConstraint("unique", "people_login_key", ("login",), "lower(login)", keys=("lower(login)",)),),
    )
    rules = {"id": MaskRule("keep"), "login": MaskRule("username")}
    results = []
    for _ in range(2):
        with _keyed(local_server) as conn:
            conn.execute("DROP TABLE IF EXISTS people")
            conn.execute("CREATE TABLE people (id int PRIMARY KEY, login varchar(16))")
            conn.execute(
                "INSERT INTO people SELECT g, CASE WHEN g % 3 = 0 THEN 'Same' ELSE 'same' END "
                "FROM generate_series(1, 30) g"
            )
            conn.autocommit = False
            redrawn = redraw_duplicates(conn, table, rules)
            conn.commit()
            conn.autocommit = True
            assert redrawn == 29
            rows = conn.execute("SELECT id, login FROM people ORDER BY id").fetchall()
            assert len({str(r[1]).lower() for r in rows}) == 30
            assert all(char_length <= 16 for char_length in (len(str(r[1])) for r in rows))
            conn.execute("CREATE UNIQUE INDEX ON people (lower(login))")  # what the copy builds next
            results.append(rows)
    assert results[0] == results[1]


def test_the_ladder_checks_the_rules_against_prods_live_constraints(prod_with_accounts: Tiers, tmp_path: Path) -> None:
    from tests.test_ladder import check, migrations_copy, run

    tiers = prod_with_accounts
    policy = tmp_path / "policy.toml"
    policy.write_text(BREAKING)
    settings = tiers.settings.with_values(MIGRATIONS_DIR=str(migrations_copy(tmp_path)), SANITIZE_POLICY=str(policy))
    ladder = run(settings)
    [row] = check(ladder, "the sanitizing rules keep the constraints at head")  # the models' schema: kept
    assert re.fullmatch(r"pass: NOT NULL columns and \d+ unique, check and foreign key constraints kept", row), row
    [row] = check(ladder, "the sanitizing rules keep PROD's constraints")
    assert row.startswith("fail: public.accounts.token: rule 'null' would break NOT NULL -> use 'secret' ("), row
    assert "public.accounts.username: rule 'name' would break UNIQUE accounts_username_key (username)" in row
    assert row.endswith("; 1 more (invoke db.sanitize-check)")
    policy.write_text(BUILT_INS)
    [row] = check(run(settings), "the sanitizing rules keep PROD's constraints")
    assert row.startswith("pass: NOT NULL columns and"), row


def test_emails_that_differ_only_in_case_get_their_own_fakes(local_server: ThrowawayCluster) -> None:
    """Two rows under a case-sensitive UNIQUE (email) stay apart; an email already in lower case keeps the fake
    it always had (the hash of the value itself)."""
    table = LiveTable(
        "pg_temp",
        "mails",
        (LiveColumn("id", "integer", "N", "int4", True), LiveColumn("email", "text", "S", "text")),
        ("id",),
    )
    rules = {"id": MaskRule("keep"), "email": MaskRule("email")}
    with _keyed(local_server) as conn:
        conn.execute("CREATE TEMP TABLE mails (id int PRIMARY KEY, email text)")
        conn.execute("INSERT INTO mails VALUES (1, 'Ann@x.org'), (2, 'ann@x.org'), (3, ' ann@x.org'), (4, NULL)")
        query = sql.SQL("SELECT id, email FROM ({}) s").format(sanitized_select(table, rules))
        fakes: dict[int, str | None] = {int(i): e for i, e in conn.execute(query)}
        assert fakes[4] is None and len({fakes[1], fakes[2], fakes[3]}) == 3
        h = keyed_hash(sql.SQL("'ann@x.org'")).as_string(None)
        row = conn.execute(f"SELECT {fake('email', 'v', 'k.h')} FROM (SELECT {h} AS h) k").fetchone()
        assert row == (fakes[2],)


def test_a_unique_key_that_holds_a_kept_unique_key_needs_nothing_of_its_other_columns() -> None:
    from dbguard.refresh.constraints import static_conflicts

    columns = (LiveColumn("id", "bigint", "N", "int8", True), LiveColumn("nick", "text", "S", "text"))
    pkey = LiveConstraint("unique", "people_pkey", ("id",), "id", keys=("id",))
    pair = LiveConstraint("unique", "people_id_nick_key", ("id", "nick"), "id, nick", keys=("id", "nick"))
    alone = LiveConstraint("unique", "people_nick_key", ("nick",), "nick", keys=("nick",))
    rules = {"id": MaskRule("keep"), "nick": MaskRule("name")}
    held = LiveTable("public", "people", columns, ("id",), (pkey, pair))
    assert static_conflicts([held], Coverage({"public.people": rules}, [], [], [])) == []
    broken = LiveTable("public", "people", columns, ("id",), (pkey, pair, alone))
    [conflict] = static_conflicts([broken], Coverage({"public.people": rules}, [], [], []))
    assert conflict.line().startswith("public.people.nick: rule 'name' would break UNIQUE people_nick_key (nick)")
    masked_key = {"id": MaskRule("sql", "id + 1"), "nick": MaskRule("name")}
    [conflict] = static_conflicts([held], Coverage({"public.people": masked_key}, [], [], []))
    assert "people_id_nick_key" in conflict.line()


@pytest.mark.parametrize(
    "value, base_type, shape",
    [
        ("'4f1c2d9e8a7b6c5d4e3f2a1b0c9d8e7f'", "text", r"[0-9a-f]{32}"),
        ("'4F1C2D9E8A7B'", "text", r"[0-9A-F]{12}"),
        ("'00012345678901234567'", "text", r"[0-9]{20}"),
        ("'ghp_R2d2C3po4Bb8Yoda'", "text", r"[A-Za-z0-9_-]{20}"),
        ("'Abc123xyZ'", "text", r"[A-Za-z0-9]{9}"),
        ("'$2b$12$' || repeat('a', 300)", "text", r"[A-Za-z0-9+/]{307}"),
        (
            "'a7d8c2a0-1b2c-4d5e-8f90-0123456789ab'::uuid",
            "uuid",
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ),
        ("'\\x00ff10'::bytea", "bytea", r"\\x[0-9a-f]{6}"),
    ],
)
def test_a_secret_keeps_the_length_and_alphabet_of_what_it_replaces(
    local_server: ThrowawayCluster, value: str, base_type: str, shape: str
) -> None:
    h = keyed_hash(sql.SQL("'row 1'")).as_string(None)
    with _keyed(local_server) as conn:
        row = conn.execute(
            f"SELECT ({fake('secret', 'k.v', 'k.h', None, base_type)})::text, k.v::text "
            f"FROM (SELECT {value} AS v, {h} AS h) k"
        ).fetchone()
    assert row is not None and re.fullmatch(shape, str(row[0])), row
    assert row[0] != row[1]
