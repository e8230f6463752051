"""Migrations that take no long lock: the safe patterns of docs/migrations.md, on real PostgreSQL.

The lockfree fixture app (engine/tests/projects/lockfree) has one revision per pattern: a concurrent
index build, an enum value added outside a transaction, a nullable column under a short lock_timeout,
a batched backfill, NOT NULL in steps (CHECK NOT VALID, VALIDATE, SET NOT NULL), a foreign key NOT
VALID then VALIDATE. The ladder passes them (stairway, squawk, the STG clone, the PROD rehearsal);
db.migrate and the plain alembic CLI apply them on INT and STG with the guard, the timeouts and the
advisory lock holding inside the autocommit blocks; a concurrent build that fails leaves a state that
db.migrate, db.status and the ladder describe, with the command that recovers.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest
from dbguard.cli.console import Output
from dbguard.guard.locks import LOCK_NAMESPACE, SCHEMA_LOCK
from dbguard.guard.tiers import Tier
from dbguard.ladder.gate import check_gate
from dbguard.ladder.rungs import FAIL, PASS, Ladder, climb
from dbguard.migrations import migrate
from dbguard.settings import Settings

from tests.support.cli import invoke_cli, run_module
from tests.support.project import PROJECTS
from tests.support.setup import Tiers, cleared, robot, run, state_values

HEAD = "0009"
VALID_INDEX = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_orders_placed_at'::regclass"
REVISIONS = [f"000{i}" for i in range(1, 10)]


def lockfree_copy(tmp: Path) -> Path:
    root = tmp / "lockfree"
    shutil.copytree(PROJECTS / "lockfree", root, ignore=shutil.ignore_patterns("__pycache__", ".local"))
    return root


@pytest.fixture
def app(tiers: Tiers, tmp_path: Path) -> Settings:
    """The lockfree app (a copy: tests add revisions to it) on this test's three tiers."""
    return dataclasses.replace(tiers.settings, root=lockfree_copy(tmp_path))


def add_revision(
    settings: Settings, rev: str, down: str, upgrade: str, downgrade: str = "op.execute('SELECT 1')"
) -> None:
    body = "\n".join("    " + line for line in upgrade.strip().splitlines())
    (settings.migrations_dir / "versions" / f"{rev}_test.py").write_text(
        f'"""test revision {rev}"""\n\nfrom alembic import op\n\nrevision = "{rev}"\ndown_revision = "{down}"\n'
        f"branch_labels = None\ndepends_on = None\n\n\ndef upgrade() -> None:\n{body}\n\n\n"
        f"def downgrade() -> None:\n    {downgrade}\n"
    )


def migrate_to(settings: Settings, env: str, to: str | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    return run(settings, "migrate", env, robot(), lambda ctx: migrate.migrate_task(ctx, to=to), **kwargs)


def revision_of(tiers: Tiers, tier: Tier) -> str:
    return tiers.sql(tier, "SELECT version_num FROM alembic_version")


def ladder(settings: Settings) -> Ladder:
    return climb(settings, cleared(settings, "ladder", Tier.INT), Output(Tier.INT))


def check(result: Ladder, name_part: str) -> list[str]:
    return [f"{c.status}: {c.detail}" for c in result.checks if name_part in c.name]


def fill_orders(tiers: Tiers, tier: Tier, rows: int) -> None:
    """Customers and orders written as the app would (the schema at 0001: no currency yet)."""
    with psycopg.connect(tiers.owner_url(tier)) as conn:
        conn.execute(
            "INSERT INTO customers (email, full_name) SELECT 'c' || i || '@shop.example', 'Customer ' || i "
            "FROM generate_series(1, 50) i"
        )
        conn.execute(
            "INSERT INTO orders (customer_id, status, total_cents, placed_at) "
            "SELECT 1 + mod(i, 50), 'placed', i, now() - i * interval '1 minute' FROM generate_series(1, %s) i",
            (rows,),
        )


def at(settings: Settings, tiers: Tiers, tier: Tier, revision: str) -> None:
    """Bring a tier to `revision` around the tools (test set-up), through Alembic's own transactions."""
    from dbguard.guard.targets import parse_database_url
    from dbguard.migrations.schema import sa_connection, upgrade

    target = parse_database_url(tiers.owner_url(tier), tier=tier, source=tier.url_variable)
    with sa_connection(target) as conn:
        upgrade(settings, conn, revision)


# -- the ladder passes every pattern ----------------------------------------------------------------------
def test_the_ladder_passes_every_lock_safe_revision_on_int_a_clone_of_stg_and_a_prod_rehearsal(
    app: Settings, tiers: Tiers
) -> None:
    from dbguard.backup.verify import verify_task
    from dbguard.cli.commands import backup

    at(app, tiers, Tier.STG, "0001")
    fill_orders(tiers, Tier.STG, 2_500)  # more rows than one backfill batch
    at(app, tiers, Tier.PROD, "0001")
    fill_orders(tiers, Tier.PROD, 1_200)
    assert run(app, "backup", "prod", robot(), backup).code == 0
    assert run(app, "verify", "prod", robot(), lambda ctx: verify_task(ctx, backup="latest", deep=False)).code == 0

    result = ladder(app)
    assert not result.failed and not result.not_verified, [c for c in result.checks if c.status != PASS]
    for rev in REVISIONS:  # the stairway: up, down, up for each, outside and inside transactions
        assert check(result, f"{rev}: up, down, up")[0].startswith(PASS)
    assert check(result, "the models match the migrated schema") == ["pass: autogenerate finds nothing"]
    for rev in REVISIONS[1:]:  # on STG's clone and on PROD's rehearsal, each with its rows
        assert [c.split(":")[0] for c in check(result, f"{rev} applied")] == [PASS, PASS]
    assert check(result, "squawk")[0].startswith(PASS)
    assert check(result, "no INVALID index") == ["pass: none", "pass: none"]  # STG, PROD
    assert check_gate(app).files.head == HEAD
    # the clone and the rehearsal took the revisions; STG and PROD themselves did not move
    assert revision_of(tiers, Tier.STG) == "0001" and revision_of(tiers, Tier.PROD) == "0001"


# -- db.migrate and the alembic CLI apply them ------------------------------------------------------------
def test_db_migrate_applies_them_on_int_and_stg_with_data(app: Settings, tiers: Tiers) -> None:
    at(app, tiers, Tier.STG, "0001")
    fill_orders(tiers, Tier.STG, 2_500)
    for env, tier in (("int", Tier.INT), ("stg", Tier.STG)):
        result = migrate_to(app, env)
        assert result.code == 0, result.text
        assert revision_of(tiers, tier) == HEAD
        assert tiers.sql(tier, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == "0"
        assert tiers.sql(tier, VALID_INDEX) == "t"
        assert tiers.sql(tier, "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum "
                         "WHERE enumtypid = 'order_status'::regtype") == "placed,shipped,cancelled"  # fmt: skip
        assert tiers.sql(tier, "SELECT is_nullable FROM information_schema.columns "
                         "WHERE table_name = 'orders' AND column_name = 'currency'") == "NO"  # fmt: skip
        assert tiers.sql(tier, "SELECT string_agg(conname || '=' || convalidated, ',' ORDER BY conname) "
                         "FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype IN ('c', 'f') "
                         "AND conname LIKE '%referrer%' OR conname LIKE 'ck_orders%'") == (
            "ck_orders_currency_not_null=true,fk_orders_referrer_id_customers=true"
        )  # fmt: skip
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM orders WHERE currency = 'EUR'") == "2500"  # the backfill
    assert list(Path(app.get("BACKUP_DIR")).glob("stg-*.dump"))  # STG backed up first, as always
    back = migrate_to(app, "stg", to="0001")  # and down again, through the autocommit blocks of the downgrades
    assert back.code == 0, back.text
    assert revision_of(tiers, Tier.STG) == "0001"
    assert tiers.sql(Tier.STG, "SELECT to_regclass('ix_orders_placed_at') IS NULL") == "t"


PROBE = """
op.execute("INSERT INTO probe_session SELECT pg_backend_pid()")  # in the revision's transaction
with op.get_context().autocommit_block():
    op.execute(
        "INSERT INTO probe SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
        "current_setting('application_name'), "
        "(SELECT count(*) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = {ns} AND l.objid = {key} "
        "AND l.granted AND l.pid <> pg_backend_pid()), "
        "(now() = statement_timestamp())::int, "
        "(SELECT pid FROM probe_session) = pg_backend_pid()"
    )
"""


def test_inside_an_autocommit_block_the_timeouts_the_guarded_session_and_the_advisory_lock_hold(
    app: Settings, tiers: Tiers
) -> None:
    """A step outside the transaction runs on the guard's own session, with MIGRATION_*_TIMEOUT set and the
    schema lock held by the run, so no reset, seed or restore can start on the database meanwhile."""
    at(app, tiers, Tier.INT, HEAD)
    tiers.sql(Tier.INT, "CREATE TABLE probe (lock_timeout text, statement_timeout text, app text, locks int, "
              "own_statement int, same_session boolean); CREATE TABLE probe_session (pid int)")  # fmt: skip
    add_revision(app, "0010", HEAD, PROBE.format(ns=LOCK_NAMESPACE, key=SCHEMA_LOCK))
    settings = app.with_values(MIGRATION_LOCK_TIMEOUT="1234ms", MIGRATION_STATEMENT_TIMEOUT="7min")
    result = migrate_to(settings, "int")
    assert result.code == 0, result.text
    found = tiers.sql(Tier.INT, "SELECT lock_timeout, statement_timeout, app, locks, own_statement, same_session "
                      "FROM probe")  # fmt: skip
    # own_statement: the statement is its own transaction (autocommit); same_session: the block runs on the
    # connection the revision's transaction ran on, the one the guard pinned to the stamped database
    assert found == "1234ms|7min|guarded-db-tools|1|1|t"


def test_the_plain_alembic_cli_runs_autocommit_blocks_through_the_guard(
    app: Settings, tiers: Tiers, tmp_path: Path
) -> None:
    env = state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()}
    proc = run_module("alembic", "-x", "env=stg", "upgrade", "head", env=env, cwd=app.root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert revision_of(tiers, Tier.STG) == HEAD
    assert tiers.sql(Tier.STG, VALID_INDEX) == "t"
    audit = [json.loads(line) for line in (tmp_path / "logs" / "audit.jsonl").read_text().splitlines()]
    assert [(a["task"], a["tier"], a["outcome"]) for a in audit] == [
        ("migrate", "stg", "started"),
        ("migrate", "stg", "ok"),
    ]


def test_a_migration_that_waits_for_a_lock_is_tried_again_and_then_succeeds(app: Settings, tiers: Tiers) -> None:
    """lock_timeout makes the ALTER give up instead of queueing every query behind it; db.migrate tries again."""
    at(app, tiers, Tier.INT, "0003")
    held = threading.Event()

    def hold_orders_for_a_while() -> None:
        with psycopg.connect(tiers.owner_url(Tier.INT)) as conn:
            conn.execute("LOCK TABLE orders IN ACCESS SHARE MODE")  # a long read: the ALTER cannot get its lock
            held.set()
            time.sleep(2.5)

    holder = threading.Thread(target=hold_orders_for_a_while)
    holder.start()
    held.wait(10)
    settings = app.with_values(MIGRATION_LOCK_TIMEOUT="300ms", MIGRATION_LOCK_RETRIES="5")
    add_revision(settings, "0010", HEAD, "op.execute('SET LOCAL lock_timeout = 300')")  # 0004 sets 2s itself
    (settings.migrations_dir / "versions" / "0004_orders_currency_nullable.py").write_text(
        (settings.migrations_dir / "versions" / "0004_orders_currency_nullable.py")
        .read_text()
        .replace("lock_timeout = '2s'", "lock_timeout = '300ms'")
    )
    result = migrate_to(settings, "int")
    holder.join()
    assert result.code == 0, result.text
    assert "beyond lock_timeout=300ms (try 1 of 6): trying again" in result.text
    assert revision_of(tiers, Tier.INT) == "0010"


def test_a_lock_that_never_comes_fails_with_where_the_database_is(app: Settings, tiers: Tiers) -> None:
    at(app, tiers, Tier.INT, "0003")
    settings = app.with_values(MIGRATION_LOCK_RETRIES="1")
    with psycopg.connect(tiers.owner_url(Tier.INT)) as conn:
        conn.execute("LOCK TABLE orders IN ACCESS SHARE MODE")
        result = migrate_to(settings, "int")
    assert result.code == 1
    assert "upgrade to 0009 failed: a table stayed locked by other sessions through 2 tries" in result.text
    assert "is at 0003" in result.text and "or raise MIGRATION_LOCK_TIMEOUT" in result.text
    assert "Traceback" not in result.text and "unexpected" not in result.text
    assert revision_of(tiers, Tier.INT) == "0003"


def test_a_revision_that_stepped_outside_its_transaction_is_never_tried_again(app: Settings, tiers: Tiers) -> None:
    """Its autocommit block committed before the lock timeout: a retry would run the block twice."""
    at(app, tiers, Tier.INT, "0001")
    fill_orders(tiers, Tier.INT, 3)
    at(app, tiers, Tier.INT, HEAD)
    before = tiers.sql(Tier.INT, "SELECT sum(total_cents) FROM orders")
    settings = app.with_values(MIGRATION_LOCK_TIMEOUT="300ms", MIGRATION_LOCK_RETRIES="3")
    add_revision(
        settings,
        "0010",
        HEAD,
        """
with op.get_context().autocommit_block():
    op.execute("UPDATE orders SET total_cents = total_cents + 1")
op.execute("ALTER TABLE orders ADD COLUMN note text")
""",
    )
    with psycopg.connect(tiers.owner_url(Tier.INT)) as conn:
        conn.execute("LOCK TABLE orders IN ACCESS SHARE MODE")  # the ALTER waits; the UPDATE does not
        result = migrate_to(settings, "int")
    assert result.code == 1, result.text
    assert "revision 0010, which steps outside its transaction (autocommit_block)" in result.text
    assert "so it is not tried again" in result.text and "make it safe to run twice" in result.text
    assert "trying again" not in result.text and "Traceback" not in result.text
    after = tiers.sql(Tier.INT, "SELECT sum(total_cents) FROM orders")
    assert int(after) == int(before) + 3  # the block ran once: one cent more on each of the three orders
    assert revision_of(tiers, Tier.INT) == HEAD


# -- a concurrent build that fails ------------------------------------------------------------------------
DUPLICATES = """
with op.get_context().autocommit_block():
    op.create_index("ux_orders_customer_total", "orders", ["customer_id", "total_cents"], unique=True,
                    postgresql_concurrently=True)
"""


def test_a_failed_concurrent_index_is_reported_by_migrate_status_and_the_ladder_with_the_recovery(
    app: Settings, tiers: Tiers, tmp_path: Path
) -> None:
    """CREATE UNIQUE INDEX CONCURRENTLY over duplicates fails after its first phase and leaves the index
    INVALID (as a killed build does): the revision is not recorded, and every report names the index."""
    at(app, tiers, Tier.STG, HEAD)
    tiers.sql(Tier.STG, "INSERT INTO customers (email, full_name) VALUES ('a@shop.example', 'A')")
    tiers.sql(Tier.STG, "INSERT INTO orders (customer_id, status, total_cents, placed_at, currency) "
              "SELECT c.id, 'placed', 100, now(), 'EUR' FROM customers c, generate_series(1, 2)")  # fmt: skip
    add_revision(app, "0010", HEAD, DUPLICATES, "op.drop_index('ux_orders_customer_total', table_name='orders')")

    result = migrate_to(app, "stg")
    assert result.code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "upgrade to 0010 failed: UniqueViolation: could not create unique index" in line
    assert f"'{tiers.names[Tier.STG]}' is at {HEAD}" in line  # the revision did not advance
    assert "1 INVALID index(es) left by a failed concurrent build: public.ux_orders_customer_total on orders" in line
    assert (
        '-> drop them (DROP INDEX CONCURRENTLY "public"."ux_orders_customer_total"), then invoke db.migrate --env stg'
        in line
    )
    assert "Traceback" not in result.text and "AssertionError" not in result.text
    assert revision_of(tiers, Tier.STG) == HEAD

    env = state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()}
    status = invoke_cli("db.status", env=env, cwd=app.root)
    assert status.returncode == 0, status.stderr
    assert "STG: 1 INVALID index(es) left by a failed concurrent build: public.ux_orders_customer_total" in (
        status.stdout + status.stderr
    )
    # the ladder, with the revision taken back out for a rework: STG still holds what the failed build left
    revision = app.migrations_dir / "versions" / "0010_test.py"
    text = revision.read_text()
    revision.unlink()
    result = ladder(app)
    (stg,) = [f"{c.status}: {c.detail}" for c in result.checks if c.rung == "3 STG clone" and "INVALID" in c.name]
    assert stg.startswith(FAIL) and 'DROP INDEX CONCURRENTLY "public"."ux_orders_customer_total"' in stg
    assert not result.gate_open
    revision.write_text(text)

    # the recovery the line names: drop the index, remove the duplicates, migrate again
    tiers.sql(Tier.STG, "DROP INDEX CONCURRENTLY public.ux_orders_customer_total")
    tiers.sql(Tier.STG, "DELETE FROM orders WHERE id = (SELECT max(id) FROM orders)")
    again = migrate_to(app, "stg")
    assert again.code == 0, again.text
    assert revision_of(tiers, Tier.STG) == "0010"


def test_the_stairway_describes_a_concurrent_build_that_fails(app: Settings) -> None:
    """On the ladder's scratch database the build fails as it would on STG: the check says what broke, the
    revision the scratch database was left at, and the INVALID index."""
    duplicates = (
        "op.execute(\"INSERT INTO customers (email, full_name) VALUES ('a@shop.example', 'A')\")\n"
        'op.execute("INSERT INTO orders (customer_id, status, total_cents, placed_at, currency) '
        "SELECT c.id, 'placed', 100, now(), 'EUR' FROM customers c, generate_series(1, 2)\")\n"
    )
    add_revision(app, "0010", HEAD, duplicates + DUPLICATES, "op.execute('SELECT 1')")
    result = ladder(app)
    (failed,) = check(result, "0010: up, down, up")
    assert failed.startswith(FAIL) and "UniqueViolation: could not create unique index" in failed
    assert f"(left at {HEAD}; 1 INVALID index(es) left by a failed concurrent build: " in failed
    assert "public.ux_orders_customer_total on orders)" in failed


def test_db_reset_rebuilds_int_and_stg_through_autocommit_blocks(app: Settings, tiers: Tiers) -> None:
    """STG is built in a scratch database and swapped in (the swap keeps it whole); INT in place tries one
    transaction, which an autocommit block rolls back whole, then rebuilds in steps and says so."""
    from dbguard.seeding.reset import reset_task

    for env, tier in (("int", Tier.INT), ("stg", Tier.STG)):
        at(app, tiers, tier, "0001")
        result = run(app, "reset", env, robot(), lambda ctx: reset_task(ctx, scenario="minimal"))
        assert result.code == 0, result.text
        assert revision_of(tiers, tier) == HEAD
        assert tiers.sql(tier, VALID_INDEX) == "t" and tiers.sql(tier, "SELECT count(*) FROM orders") == "6"
        assert ("INT is rebuilt in steps, not in one transaction" in result.text) is (tier is Tier.INT)


def test_inside_a_callers_transaction_a_step_outside_it_is_one_line_and_changes_nothing(
    app: Settings, tiers: Tiers
) -> None:
    from dbguard.errors import Failed
    from dbguard.migrations.schema import sa_connection, upgrade

    at(app, tiers, Tier.INT, "0001")
    with pytest.raises(Failed) as refused, sa_connection(tiers.target(Tier.INT)) as conn, conn.begin():
        upgrade(app, conn, "head")
    assert "a revision steps outside its transaction (autocommit_block), which this run cannot do" in str(refused.value)
    assert revision_of(tiers, Tier.INT) == "0001"


def test_db_revision_and_the_pytest_plugins_template_build_through_autocommit_blocks(
    app: Settings, tiers: Tiers, tmp_path: Path
) -> None:
    """Both build a scratch database from empty at head: the concurrent index and the enum value run there too."""
    from contextlib import contextmanager

    from dbguard.testing.plugin import _template

    with contextmanager(_template)(app, "minimal") as template, template.db.connect(read_only=True) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD,)
        assert conn.execute(VALID_INDEX).fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (6,)

    env = state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()}
    proc = invoke_cli("db.revision", "-m", "nothing new", env=env, cwd=app.root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [p.name for p in (app.migrations_dir / "versions").glob("*nothing_new*.py")]


def test_the_ladder_fails_its_prod_check_on_an_invalid_index_left_on_prod(app: Settings, tiers: Tiers) -> None:
    """Read-only, as every PROD check: the failed build's leftover is named with its recovery."""
    at(app, tiers, Tier.PROD, HEAD)
    with psycopg.connect(tiers.owner_url(Tier.PROD), autocommit=True) as conn:
        conn.execute("INSERT INTO customers (email, full_name) VALUES ('a@shop.example', 'A'), ('b@shop.example', 'A')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY ux_customers_full_name ON customers (full_name)")
    result = ladder(app)
    (prod,) = [f"{c.status}: {c.detail}" for c in result.checks if c.rung == "4 PROD check" and "INVALID" in c.name]
    assert prod.startswith(FAIL)
    assert "public.ux_customers_full_name on customers" in prod
    assert 'DROP INDEX CONCURRENTLY "public"."ux_customers_full_name"), then invoke db.migrate --env prod' in prod
    assert not result.gate_open


def test_every_new_migration_message_is_in_the_troubleshooting_page() -> None:
    page = (PROJECTS.parents[2] / "docs" / "troubleshooting.md").read_text()
    for fragment in (
        "upgrade to REV failed: ...; 'x' is at REV0",
        "INVALID index(es) left by a failed concurrent build",
        "no INVALID index left by a failed concurrent build",
        "a table stayed busy beyond lock_timeout=",
        "a table stayed locked by other sessions through N tries",
        "a revision steps outside its transaction (autocommit_block), which this run cannot do",
        "fill-standin on PROD is not allowed: PROD here is 'x', reached through PROD_DATABASE_URL",
        "MIGRATION_LOCK_RETRIES",
    ):
        assert fragment in page, fragment


def test_a_concurrent_build_cut_short_leaves_an_invalid_index_and_running_again_recovers(
    app: Settings, tiers: Tiers
) -> None:
    """A build stopped half-way (here by statement_timeout, as by a kill) leaves its index INVALID; 0002 drops
    such a leftover before building, so once the blocker is gone the same command finishes the job."""
    at(app, tiers, Tier.INT, "0001")
    settings = app.with_values(MIGRATION_STATEMENT_TIMEOUT="1s")
    with psycopg.connect(tiers.owner_url(Tier.INT)) as blocker:  # an old snapshot the build's last phase waits for
        blocker.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        blocker.execute("SELECT count(*) FROM customers")
        result = migrate_to(settings, "int")
    assert result.code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "upgrade to 0009 failed: QueryCanceled: canceling statement due to statement timeout" in line
    assert "is at 0001, with 1 INVALID index(es) left by a failed concurrent build: public.ix_orders_placed_at" in line
    assert tiers.sql(Tier.INT, VALID_INDEX) == "f"

    again = migrate_to(settings, "int")
    assert again.code == 0, again.text
    assert revision_of(tiers, Tier.INT) == HEAD and tiers.sql(Tier.INT, VALID_INDEX) == "t"


def test_an_engine_handed_over_runs_the_blocks_and_gets_its_sessions_settings_back(app: Settings, tiers: Tiers) -> None:
    """pytest-alembic's way in (an Engine in config.attributes): the autocommit blocks run, and the pooled
    connection goes back to the pool with its own lock_timeout and statement_timeout, not the migration's."""
    from alembic import command
    from dbguard.migrations.history import alembic_config
    from sqlalchemy import create_engine

    engine = create_engine(
        tiers.urls[Tier.INT].replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1, max_overflow=0
    )
    try:
        with engine.connect() as conn:
            before = conn.exec_driver_sql("SELECT pg_backend_pid(), current_setting('lock_timeout')").one()
        cfg = alembic_config(app.with_values(MIGRATION_LOCK_TIMEOUT="4321ms"))
        cfg.attributes["connection"] = engine
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            after = conn.exec_driver_sql("SELECT pg_backend_pid(), current_setting('lock_timeout')").one()
    finally:
        engine.dispose()
    assert revision_of(tiers, Tier.INT) == HEAD and tiers.sql(Tier.INT, VALID_INDEX) == "t"
    assert after == before and before[1] != "4321ms"  # the same pooled session, its own value back
