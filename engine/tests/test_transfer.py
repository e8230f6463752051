"""db.export-user and db.import-user on real clusters: one user's slice from one tier into another."""

from __future__ import annotations

import json
import re
import stat
import tarfile
from pathlib import Path

import psycopg
import pytest
from dbguard.guard.tiers import Tier
from dbguard.transfer.keys import unpack

from tests.support.cli import invoke_cli
from tests.support.setup import Tiers, state_values

TABLES = ("users", "projects", "tasks", "comments")
FKS = {  # child table -> (column, parent table)
    "projects": (("owner_id", "users"),),
    "tasks": (("project_id", "projects"), ("assignee_id", "users")),
    "comments": (("task_id", "tasks"), ("author_id", "users")),
}


def env_for(tiers: Tiers, tmp_path: Path, **extra: str) -> dict[str, str]:
    return state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()} | extra


def fill(tiers: Tier | Tiers, tier: Tier, seed_value: int, users: int = 30) -> None:
    """Migrate to head and fill with `users` people, their projects, tasks and comments (plain SQL, seeded)."""
    from dbguard.migrations.schema import drop_app_schemas, sa_connection, upgrade
    from sqlalchemy import text

    assert isinstance(tiers, Tiers)
    with sa_connection(tiers.target(tier)) as conn, conn.begin():
        drop_app_schemas(conn)
        upgrade(tiers.settings, conn, "head")
        for statement in FILL:
            conn.execute(text(statement.format(users=users, seed=seed_value / 1000, tag=seed_value)))


FILL = (
    "SELECT setseed({seed})",
    "INSERT INTO users (email, full_name, phone, address, last_login_ip, preferences) SELECT "
    "'person' || i || '.s{tag}@mail.test', 'Person ' || i, '+1-555-01' || lpad(i::text, 2, '0'), "
    "i || ' Main Street', ('192.168.0.' || i)::inet, jsonb_build_object('theme', 'dark', 'n', i) "
    "FROM generate_series(1, {users}) i",
    "INSERT INTO projects (owner_id, name, description) SELECT u.id, 'Project ' || u.id || '-' || k, "
    "CASE WHEN k = 1 THEN NULL ELSE 'About ' || u.full_name END FROM users u, generate_series(1, 1 + u.id % 3) k",
    "INSERT INTO tasks (project_id, assignee_id, title, status, priority, due_date) SELECT p.id, "
    "CASE WHEN random() < 0.3 THEN NULL ELSE 1 + (random() * ({users} - 1))::int END, 'Task ' || p.id || '.' || k, "
    "(ARRAY['todo', 'doing', 'done'])[1 + k % 3], 1 + k % 4, date '2026-01-01' + k FROM projects p, "
    "generate_series(1, 4) k",
    "INSERT INTO comments (task_id, author_id, body) SELECT t.id, 1 + (random() * ({users} - 1))::int, "
    "E'Comment\\twith a tab ' || t.id || '.' || k FROM tasks t, generate_series(1, 2) k",
)


def snapshot(tiers: Tiers, tier: Tier) -> dict[str, str]:
    """Every table's rows, hashed: equal before and after means untouched."""
    return {
        t: tiers.sql(
            tier, f"SELECT count(*) || ' ' || coalesce(md5(string_agg(x::text, ',' ORDER BY id)), '') FROM {t} x"
        )
        for t in TABLES
    }


def busiest_user(tiers: Tiers, tier: Tier) -> tuple[int, str]:
    row = tiers.sql(
        tier,
        "SELECT u.id || ' ' || u.email FROM users u ORDER BY (SELECT count(*) FROM tasks t JOIN projects p "
        "ON p.id = t.project_id WHERE p.owner_id = u.id) DESC, u.id LIMIT 1",
    )
    uid, email = row.split(" ", 1)
    return int(uid), email


def memory(url: str, origin_user: str) -> dict[str, dict[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, keys FROM dbguard.transfer_keys WHERE user_key = %s", (origin_user,)
        ).fetchall()
    return {str(t).removeprefix("public."): unpack(str(k)) for t, k in rows}


def rows_by_id(url: str, table: str) -> dict[str, dict[str, object]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")
        names = [d.name for d in cur.description or []]
        return {str(r[0]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}


@pytest.fixture
def stg_and_int(tiers: Tiers) -> Tiers:
    fill(tiers, Tier.STG, seed_value=42)
    fill(tiers, Tier.INT, seed_value=7, users=20)  # rows with the same ids as STG's: every key of the slice collides
    return tiers


def test_round_trip_stg_to_int_under_a_new_key(stg_and_int: Tiers, tmp_path: Path) -> None:
    tiers = stg_and_int
    env = env_for(tiers, tmp_path)
    uid, email = busiest_user(tiers, Tier.STG)
    stg_before, int_before = snapshot(tiers, Tier.STG), snapshot(tiers, Tier.INT)
    out = tmp_path / "user.tar"

    plan = invoke_cli("db.export-user", "--env", "stg", "--user", email, "--out", str(out), "--dry-run", env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "user slice" in plan.stdout and not out.exists()

    proc = invoke_cli("db.export-user", "--env", "stg", "--user", email, "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with tarfile.open(out) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["revision"] == tiers.sql(Tier.STG, "SELECT version_num FROM alembic_version")
    assert manifest["user"] == email and manifest["tier"] == "stg" and manifest["engine_version"]
    counted = {
        t["name"].removeprefix("public."): (t["owned"]["rows"], t["reference"]["rows"]) for t in manifest["tables"]
    }
    # owned rows, counted here independently of the tool: the user, their projects, the tasks in them or
    # assigned to them, the comments on those tasks or written by them
    owned_tasks = (
        f"SELECT t.id FROM tasks t JOIN projects p ON p.id = t.project_id WHERE p.owner_id = {uid} "
        f"OR t.assignee_id = {uid}"
    )
    assert counted["users"][0] == 1
    assert counted["projects"][0] == int(tiers.sql(Tier.STG, f"SELECT count(*) FROM projects WHERE owner_id = {uid}"))
    assert counted["tasks"][0] == int(tiers.sql(Tier.STG, f"SELECT count(*) FROM ({owned_tasks}) x"))
    assert counted["comments"][0] == int(
        tiers.sql(Tier.STG, f"SELECT count(*) FROM comments WHERE task_id IN ({owned_tasks}) OR author_id = {uid}")
    )
    assert counted["tasks"][0] > 0 and counted["users"][1] > 0  # co-workers came along as reference rows

    new_email = "copy.of.user@example.org"
    imported = invoke_cli("db.import-user", "--env", "int", "--from", str(out), "--as", new_email, env=env)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert snapshot(tiers, Tier.STG) == stg_before  # the source is untouched

    # row by row, after key mapping: every row of the file is in INT, its references rewired
    keys = memory(tiers.urls[Tier.INT], new_email)
    stg_rows = {t: rows_by_id(tiers.urls[Tier.STG], t) for t in TABLES}
    int_rows = {t: rows_by_id(tiers.urls[Tier.INT], t) for t in TABLES}
    for table in TABLES:
        owned, reference = counted[table]
        assert len(keys[table]) == owned + reference
        for source_id, target_id in keys[table].items():
            want = dict(stg_rows[table][source_id])
            got = dict(int_rows[table][target_id])
            want["id"] = int(target_id)
            for column, parent in FKS.get(table, ()):
                if want[column] is not None:
                    want[column] = int(keys[parent][str(want[column])])
            if table == "users" and source_id == str(uid):
                assert got["email"] == new_email
                want["email"] = new_email
            assert got == want, (table, source_id)
    # every key collided with INT's own rows: the user's rows got new keys, and INT's own rows are all still there
    assert keys["users"][str(uid)] != str(uid)
    for table in TABLES:
        assert set(rows_by_id(tiers.urls[Tier.INT], table)) >= {
            str(i) for i in range(1, int(int_before[table].split()[0]) + 1)
        }
    # the sequences moved past the rows written: the app's next insert does not collide
    assert int(tiers.sql(Tier.INT, "SELECT last_value FROM tasks_id_seq")) >= int(
        tiers.sql(Tier.INT, "SELECT max(id) FROM tasks")
    )

    # importing it again changes nothing
    int_after = snapshot(tiers, Tier.INT)
    again = invoke_cli("db.import-user", "--env", "int", "--from", str(out), "--as", new_email, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(nothing changed)" in again.stdout
    assert snapshot(tiers, Tier.INT) == int_after


def texts_of(path: Path) -> bytes:
    with tarfile.open(path) as tar:
        return b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())  # type: ignore[union-attr]


def test_from_prod_no_real_person_leaves_and_coworkers_match_a_refreshed_stg(tiers: Tiers, tmp_path: Path) -> None:
    fill(tiers, Tier.PROD, seed_value=41)
    env = env_for(tiers, tmp_path)
    _, email = busiest_user(tiers, Tier.PROD)
    out = tmp_path / "prod-user.tar"
    proc = invoke_cli("db.export-user", "--env", "prod", "--user", email, "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sanitized with refresh-staging's policy" in proc.stdout
    data = texts_of(out)
    people = tiers.sql(
        Tier.PROD, "SELECT string_agg(email || chr(10) || full_name || chr(10) || phone, chr(10)) FROM users"
    )
    real = {p for p in people.splitlines() if p}
    assert real and not [
        p for p in real if p.encode() in data
    ]  # nobody's email, name or phone, the user's own included
    with tarfile.open(out) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert (
        manifest["sanitized"] == "yes"
        and manifest["user"] != email
        and manifest["user"].endswith(".org") | (manifest["user"].endswith(".com") | manifest["user"].endswith(".net"))
    )

    # the raw export is a human's decision at a terminal: a script is refused, and no file is written
    raw = tmp_path / "raw.tar"
    refused = invoke_cli("db.export-user", "--env", "prod", "--user", email, "--out", str(raw), "--raw", env=env)
    assert refused.returncode == 2 and "interactive terminal" in refused.stdout + refused.stderr
    assert not raw.exists()

    # STG refreshed from PROD holds the same fakes (same policy, same salt): the co-workers in the file are
    # matched there by their natural key (the fake email), not copied again; the user comes in under a new key
    assert invoke_cli("db.refresh-staging", env=env).returncode == 0
    stg_users = int(tiers.sql(Tier.STG, "SELECT count(*) FROM users"))
    same = invoke_cli("db.import-user", "--env", "stg", "--from", str(out), env=env)
    assert same.returncode == 2 and "already has a user" in same.stderr and "--as" in same.stderr
    assert "backup" not in same.stdout  # refused before the backup
    imported = invoke_cli("db.import-user", "--env", "stg", "--from", str(out), "--as", "support@example.com", env=env)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert (
        len(list((tmp_path / "backups").glob("stg-*.dump"))) == 1 and "backup" in imported.stdout
    )  # STG backed up first
    coworkers = sum(1 for t in manifest["tables"] if t["name"] == "public.users" for _ in range(t["reference"]["rows"]))
    assert int(tiers.sql(Tier.STG, "SELECT count(*) FROM users")) == stg_users + 1  # only the user is new
    assert coworkers > 0 and re.search(
        rf"public\.users\s+│\s+{coworkers + 1}\s+│\s+0\s+│\s+{coworkers}\s", imported.stdout
    )


def test_refusals_revision_and_an_agent_on_prod(stg_and_int: Tiers, tmp_path: Path) -> None:
    from dbguard.migrations.schema import downgrade, sa_connection

    tiers = stg_and_int
    env = env_for(tiers, tmp_path)
    _, email = busiest_user(tiers, Tier.STG)
    out = tmp_path / "user.tar"
    assert invoke_cli("db.export-user", "--env", "stg", "--user", email, "--out", str(out), env=env).returncode == 0

    with sa_connection(tiers.target(Tier.INT)) as conn, conn.begin():
        downgrade(tiers.settings, conn, "0001")
    before = tiers.sql(Tier.INT, "SELECT count(*) FROM users") + tiers.sql(Tier.INT, "SELECT count(*) FROM tasks")
    behind = invoke_cli("db.import-user", "--env", "int", "--from", str(out), "--as", "x@example.com", env=env)
    assert behind.returncode == 2
    assert "is at 0001" in behind.stderr and "invoke db.migrate --env int" in behind.stderr
    assert (
        tiers.sql(Tier.INT, "SELECT count(*) FROM users") + tiers.sql(Tier.INT, "SELECT count(*) FROM tasks") == before
    )
    # the other way round, a file older than the target: never the downgrade that would drop what came since
    older = tmp_path / "older.tar"
    _, int_email = busiest_user(tiers, Tier.INT)
    made = invoke_cli("db.export-user", "--env", "int", "--user", int_email, "--out", str(older), env=env)
    assert made.returncode == 0, made.stderr
    ahead = invoke_cli("db.import-user", "--env", "stg", "--from", str(older), "--as", "y@example.com", env=env)
    assert ahead.returncode == 2 and "was exported at revision 0001" in ahead.stderr
    assert "export the user again from a tier migrated to" in ahead.stderr and "--to" not in ahead.stderr

    fill(tiers, Tier.PROD, seed_value=41)
    prod_before = snapshot(tiers, Tier.PROD)
    agent = invoke_cli(
        "db.import-user",
        "--env",
        "prod",
        "--from",
        str(out),
        "--confirm",
        tiers.names[Tier.PROD],
        env=env | {"CLAUDECODE": "1"},
    )
    assert agent.returncode == 2 and "automated agent" in agent.stdout + agent.stderr
    assert snapshot(tiers, Tier.PROD) == prod_before
    assert not list((tmp_path / "backups").glob("prod-*"))  # refused before the backup: nothing was started

    # a corrupted file is refused before anything is opened for writing
    bad = tmp_path / "bad.tar"
    bad.write_bytes(out.read_bytes().replace(b"Task ", b"Tusk ", 1))
    broken = invoke_cli("db.import-user", "--env", "stg", "--from", str(bad), "--as", "y@example.com", env=env)
    assert broken.returncode == 2 and "does not match its sha256" in broken.stderr


def test_rows_that_break_a_constraint_are_reported_per_table_and_nothing_is_written(
    stg_and_int: Tiers, tmp_path: Path
) -> None:
    tiers = stg_and_int
    env = env_for(tiers, tmp_path)
    _, email = busiest_user(tiers, Tier.STG)
    out = tmp_path / "user.tar"
    assert invoke_cli("db.export-user", "--env", "stg", "--user", email, "--out", str(out), env=env).returncode == 0
    # INT demands what STG does not: a task title unique, and one of the file's titles is there already
    title = tiers.sql(
        Tier.STG,
        f"SELECT min(title) FROM tasks t JOIN projects p ON p.id = t.project_id "
        f"JOIN users u ON u.id = p.owner_id WHERE u.email = '{email}'",
    )
    tiers.sql(
        Tier.INT,
        f"UPDATE tasks SET title = 'int ' || id; UPDATE tasks SET title = '{title}' WHERE id = 1; "
        "CREATE UNIQUE INDEX only_one_title ON tasks (title)",
    )
    before = snapshot(tiers, Tier.INT)
    plan = invoke_cli(
        "db.import-user", "--env", "int", "--from", str(out), "--as", "z@example.com", "--dry-run", env=env
    )
    assert plan.returncode == 0 and "import plan" in plan.stdout
    proc = invoke_cli("db.import-user", "--env", "int", "--from", str(out), "--as", "z@example.com", env=env)
    assert proc.returncode == 1
    assert re.search(r"public\.tasks\s+│\s+1 row\(s\) would break only_one_title", proc.stdout), proc.stdout
    assert "nothing was imported" in proc.stderr
    assert snapshot(tiers, Tier.INT) == before
    assert tiers.sql(Tier.INT, "SELECT to_regclass('dbguard.transfer_keys') IS NULL") == "t"


def test_a_user_in_a_foreign_key_cycle(stg_and_int: Tiers, tmp_path: Path) -> None:
    """users.favorite_task_id -> tasks -> projects -> users, and tasks.parent_id -> tasks: both set after the rows."""
    tiers = stg_and_int
    cycle = (
        "ALTER TABLE users ADD COLUMN favorite_task_id bigint REFERENCES tasks (id); "
        "ALTER TABLE tasks ADD COLUMN parent_id bigint REFERENCES tasks (id)"
    )
    for tier in (Tier.STG, Tier.INT):
        tiers.sql(tier, cycle)
    tiers.sql(
        Tier.STG,
        "UPDATE users u SET favorite_task_id = (SELECT max(t.id) FROM tasks t JOIN projects p ON p.id = t.project_id "
        "WHERE p.owner_id <> u.id); UPDATE tasks t SET parent_id = t.id - 1 WHERE t.id % 4 <> 1",
    )
    env = env_for(tiers, tmp_path)
    uid, email = busiest_user(tiers, Tier.STG)
    out = tmp_path / "user.tar"
    assert invoke_cli("db.export-user", "--env", "stg", "--user", email, "--out", str(out), env=env).returncode == 0
    proc = invoke_cli("db.import-user", "--env", "int", "--from", str(out), "--as", "cycle@example.com", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    keys = memory(tiers.urls[Tier.INT], "cycle@example.com")
    for table, column, parent in (("users", "favorite_task_id", "tasks"), ("tasks", "parent_id", "tasks")):
        source = rows_by_id(tiers.urls[Tier.STG], table)
        target = rows_by_id(tiers.urls[Tier.INT], table)
        pointing = 0
        for source_id, target_id in keys[table].items():
            value = source[source_id][column]
            assert target[target_id][column] == (None if value is None else int(keys[parent][str(value)]))
            pointing += value is not None
        assert pointing > 0
    assert keys["users"][str(uid)] in {str(i) for i in rows_by_id(tiers.urls[Tier.INT], "users")}


SHAPES_FILL = """
INSERT INTO users (id, email, username, api_token, display_name) SELECT gen_random_uuid(), 'cook' || i || '@mail.test',
  'cook' || i, 'token-' || i, 'Cook ' || i FROM generate_series(1, 8) i;
UPDATE users SET invited_by_id = (SELECT id FROM users WHERE username = 'cook1') WHERE username <> 'cook1';
INSERT INTO recipes (author_id, title, difficulty, prep_minutes, cook_minutes, tags, nutrition)
  SELECT u.id, 'Recipe ' || u.username || '-' || k, 'medium', 10 * k, 20, ARRAY['quick', 'tab' || chr(9) || k],
  '{"kcal": 500}' FROM users u, generate_series(1, 3) k;
UPDATE users u SET favorite_recipe_id = (SELECT r.id FROM recipes r WHERE r.author_id <> u.id ORDER BY r.title LIMIT 1);
INSERT INTO ingredients (name) SELECT 'ingredient ' || i FROM generate_series(1, 5) i;
INSERT INTO recipe_ingredients (recipe_id, position, ingredient_id, quantity, unit)
  SELECT r.id, k, (SELECT id FROM ingredients WHERE name = 'ingredient ' || k), 1.5, 'g'
  FROM recipes r, generate_series(1, 3) k;
INSERT INTO recipe_bookmarks (user_id, recipe_id, saved_at, note)
  SELECT u.id, r.id, '2026-01-01 08:00', 'try it' FROM users u JOIN recipes r ON r.author_id <> u.id
  WHERE r.title LIKE '%-1';
INSERT INTO social_accounts (user_id, provider, handle) SELECT id, 'github', username FROM users;
INSERT INTO kitchen.meal_plans (user_id, recipe_id, plan_date, meal_time, servings)
  SELECT u.id, r.id, '2026-02-01', '12:30', 2 FROM users u JOIN recipes r ON r.author_id = u.id;
INSERT INTO cooking_log (cooked_on, user_id, recipe_id, rating, notes)
  SELECT date '2025-12-30' + k, u.id, r.id, 4, 'good' FROM users u JOIN recipes r ON r.author_id <> u.id,
  generate_series(1, 2) k WHERE r.title LIKE '%-2';
"""
SHAPES_TABLES = (
    "users",
    "recipes",
    "ingredients",
    "recipe_ingredients",
    "recipe_bookmarks",
    "social_accounts",
    "kitchen.meal_plans",
    "cooking_log",
)


def test_shapes_uuid_keys_a_cycle_no_primary_key_partitions_and_a_second_schema(tiers: Tiers, tmp_path: Path) -> None:
    """The schema-generality fixture: exported from STG and imported into STG itself under a new key (every key,
    uuid and identity, and every unique value collides), again (nothing changes), and into an empty INT."""
    from dataclasses import replace

    from dbguard.migrations.schema import sa_connection, upgrade

    from tests.support.project import SHAPES_ROOT

    settings = replace(tiers.settings, root=SHAPES_ROOT)
    for tier in (Tier.STG, Tier.INT):
        with sa_connection(tiers.target(tier)) as conn, conn.begin():
            upgrade(settings, conn, "head")
    tiers.sql(Tier.STG, SHAPES_FILL)
    env = env_for(tiers, tmp_path)

    def run(*args: str) -> str:
        proc = invoke_cli(*args, env=env, cwd=SHAPES_ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def state(tier: Tier) -> dict[str, str]:
        return {
            t: tiers.sql(
                tier, f"SELECT count(*) || md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x"
            )
            for t in SHAPES_TABLES
        }

    out = tmp_path / "cook3.tar"
    run("db.export-user", "--env", "stg", "--user", "cook3@mail.test", "--out", str(out))
    run("db.import-user", "--env", "stg", "--from", str(out), "--as", "cook3.copy@mail.test")

    def of(email: str, query: str) -> str:
        return tiers.sql(Tier.STG, query.replace("$U", f"(SELECT id FROM users WHERE email = '{email}')"))

    old, new = "cook3@mail.test", "cook3.copy@mail.test"
    assert of(new, "SELECT username || ' ' || api_token FROM users WHERE id = $U") == (
        "cook3-cook3-copy-mail-test token-3-cook3-copy-mail-test"
    )
    for query in (
        "SELECT count(*) FROM recipes WHERE author_id = $U",
        "SELECT string_agg(title || tags::text || total_minutes, ',' ORDER BY title) FROM recipes WHERE author_id = $U",
        "SELECT count(*) FROM recipe_ingredients ri JOIN recipes r ON r.id = ri.recipe_id WHERE r.author_id = $U",
        "SELECT count(*) || string_agg(note, ',') FROM recipe_bookmarks WHERE user_id = $U",
        "SELECT count(*) FROM kitchen.meal_plans WHERE user_id = $U",
        "SELECT count(*) || string_agg(cooked_on::text, ',' ORDER BY cooked_on) FROM cooking_log WHERE user_id = $U",
        "SELECT invited_by_id FROM users WHERE id = $U",  # cook1, matched by natural key: the same row
        "SELECT favorite_recipe_id FROM users WHERE id = $U",  # someone else's recipe: the same row
    ):
        assert of(new, query) == of(old, query), query
    assert of(new, "SELECT handle FROM social_accounts WHERE user_id = $U") == "cook3-cook3-copy-mail-test"
    # the copy's own recipes are new rows with new uuids; its meal plans point at them, not at the original's
    assert of(
        new,
        "SELECT count(*) FROM kitchen.meal_plans m JOIN recipes r ON r.id = m.recipe_id "
        "WHERE m.user_id = $U AND r.author_id = $U",
    ) == of(old, "SELECT count(*) FROM recipes WHERE author_id = $U")
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM users") == "9"  # only the copy is new; co-workers matched

    again = state(Tier.STG)
    assert "(nothing changed)" in run("db.import-user", "--env", "stg", "--from", str(out), "--as", new)
    assert state(Tier.STG) == again

    run("db.import-user", "--env", "int", "--from", str(out))
    for query in (
        "SELECT count(*) FROM recipes WHERE author_id = $U",
        "SELECT count(*) FROM cooking_log WHERE user_id = $U",
        "SELECT count(*) FROM recipe_bookmarks WHERE user_id = $U",
        "SELECT id FROM users WHERE id = $U",  # uuids free in INT: kept
    ):
        q = query.replace("$U", f"(SELECT id FROM users WHERE email = '{old}')")
        assert tiers.sql(Tier.INT, q) == tiers.sql(Tier.STG, q), query


def test_raw_from_prod_is_a_humans_choice_and_keeps_other_people_sanitized(tiers: Tiers, tmp_path: Path) -> None:
    """--raw at a terminal: the user's own rows as they are, every other person's still sanitized; an agent at a
    terminal without consent is refused; the raw file taken into STG asks a human again."""
    from dbguard.transfer.export import export_task
    from dbguard.transfer.import_user import import_task

    from tests.support.setup import human, run

    fill(tiers, Tier.PROD, seed_value=41)
    uid, email = busiest_user(tiers, Tier.PROD)
    prod = tiers.names[Tier.PROD]
    out = tmp_path / "raw.tar"

    def export(ctx):  # type: ignore[no-untyped-def]
        return export_task(ctx, user=email, out=str(out), raw=True)

    agent = run(tiers.settings, "export-user", "prod", human(prod, agent="cursor-agent"), export)
    assert agent.code == 2 and "automated agent" in agent.text and not out.exists()
    wrong = run(tiers.settings, "export-user", "prod", human("not-the-name"), export)
    assert wrong.code == 2 and not out.exists()
    done = run(tiers.settings, "export-user", "prod", human(prod), export)
    assert done.code == 0, done.text
    data = texts_of(out)
    own = tiers.sql(Tier.PROD, f"SELECT email || chr(10) || full_name || chr(10) || phone FROM users WHERE id = {uid}")
    assert all(value.encode() in data for value in own.splitlines())  # the user's own row, as it is
    others = tiers.sql(
        Tier.PROD, f"SELECT string_agg(email || chr(10) || phone, chr(10)) FROM users WHERE id <> {uid}"
    ).splitlines()
    assert others and not [p for p in others if p.encode() in data]  # nobody else's
    with tarfile.open(out) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["sanitized"] == "own rows raw" and manifest["user"] == email

    fill(tiers, Tier.STG, seed_value=42)

    def load(ctx):  # type: ignore[no-untyped-def]
        return import_task(ctx, from_=str(out), as_="raw.copy@example.com")

    scripted = run(tiers.settings, "import-user", "stg", None, load)
    assert scripted.code == 2 and "interactive terminal" in scripted.text
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM users WHERE email = 'raw.copy@example.com'") == "0"
    typed = run(tiers.settings, "import-user", "stg", human(tiers.names[Tier.STG]), load)
    assert typed.code == 0, typed.text
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM users WHERE email = 'raw.copy@example.com'") == "1"


def test_a_slice_read_on_two_connections_as_the_walk_goes_is_one_snapshot(
    stg_and_int: Tiers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows are read as the walk finds them, the tables of one round shared with a second connection that
    imports the first's snapshot: the same rows as one connection reads, even when rows change before every round
    (the snapshot, not the table)."""
    import dbguard.transfer.export as export_module
    from dbguard.transfer.export import export_task

    from tests.support.setup import run

    tiers = stg_and_int
    _, email = busiest_user(tiers, Tier.STG)

    def rows(path: Path) -> dict[str, list[bytes]]:
        with tarfile.open(path) as tar:
            return {
                m.name.split(".", 1)[1]: sorted(tar.extractfile(m).read().splitlines())  # type: ignore[union-attr]
                for m in tar.getmembers()
                if m.name.startswith("data/")
            }

    files = {}
    for name, parallel in (("one", False), ("two", True)):
        monkeypatch.setattr(export_module, "PARALLEL", parallel)
        files[name] = tmp_path / f"{name}.tar"
        original_round, original_other = export_module.Export.fetch_round, export_module.Export.other_connection
        seconds: list[object] = []

        def round_after_a_write(self, asks, *, owned, original=original_round):  # type: ignore[no-untyped-def]
            tiers.sql(  # a write lands before every round of the walk
                Tier.STG,
                "UPDATE comments SET body = body || ' [changed]'; UPDATE tasks SET title = title || ' [changed]'",
            )
            return original(self, asks, owned=owned)

        def other_connection(self, original=original_other, seconds=seconds):  # type: ignore[no-untyped-def]
            seconds.append(original(self))
            return seconds[-1]

        monkeypatch.setattr(export_module.Export, "fetch_round", round_after_a_write)
        monkeypatch.setattr(export_module.Export, "other_connection", other_connection)
        result = run(
            tiers.settings,
            "export-user",
            "stg",
            None,
            lambda ctx, out=files[name]: export_task(ctx, user=email, out=str(out), raw=False),
        )
        assert result.code == 0, result.text
        assert bool(seconds) is parallel  # a round of two tables or more went to the second connection
        tiers.sql(  # the same rows again for the next run
            Tier.STG,
            "UPDATE comments SET body = replace(body, ' [changed]', ''); "
            "UPDATE tasks SET title = replace(title, ' [changed]', '')",
        )
    assert rows(files["one"]) == rows(files["two"])
    assert b"[changed]" not in texts_of(files["two"])


def test_into_prod_a_human_types_its_name_and_prod_is_backed_up_first(stg_and_int: Tiers, tmp_path: Path) -> None:
    from dbguard.transfer.import_user import import_task

    from tests.support.setup import human, run

    tiers = stg_and_int
    env = env_for(tiers, tmp_path)
    _, email = busiest_user(tiers, Tier.STG)
    out = tmp_path / "user.tar"
    nobody = invoke_cli("db.export-user", "--env", "stg", "--user", "nobody@example.com", env=env)
    assert nobody.returncode == 2 and "no user with email = 'nobody@example.com'" in nobody.stderr
    assert invoke_cli("db.export-user", "--env", "stg", "--user", email, "--out", str(out), env=env).returncode == 0
    fill(tiers, Tier.PROD, seed_value=41)
    prod = tiers.names[Tier.PROD]

    def load(ctx):  # type: ignore[no-untyped-def]
        return import_task(ctx, from_=str(out), as_="support.copy@example.com")

    script = invoke_cli("db.import-user", "--env", "prod", "--from", str(out), "--as", "x@example.com", env=env)
    assert script.returncode == 2 and f"--confirm {prod}" in script.stderr
    done = run(tiers.settings, "import-user", "prod", human(prod), load)
    assert done.code == 0, done.text
    assert len(list((tmp_path / "backups").glob("prod-*.dump"))) == 1  # PROD's dump came first
    assert tiers.sql(Tier.PROD, "SELECT count(*) FROM users WHERE email = 'support.copy@example.com'") == "1"
