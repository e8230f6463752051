"""The migration ladder: each rung catches its failure; the example app's ladder passes; the PROD gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dbguard.cli.console import Output
from dbguard.errors import Refused
from dbguard.guard.tiers import Tier
from dbguard.ladder.gate import check_gate
from dbguard.ladder.rungs import FAIL, PASS, Ladder, climb
from dbguard.settings import Settings

from tests.support.project import FIXTURE_ROOT, PROJECT
from tests.support.setup import Tiers, cleared

REVISION = '''"""{doc}

Revision ID: {rev}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = {down_repr}
branch_labels = None
depends_on = None


def upgrade() -> None:
{up}


def downgrade() -> None:
{down_body}
'''


def migrations_copy(tmp: Path) -> Path:
    folder = tmp / "migrations"
    shutil.copytree(FIXTURE_ROOT / "migrations", folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def add_revision(
    folder: Path,
    rev: str,
    down: str | None,
    up: str,
    down_body: str = "    op.execute('SELECT 1')",
    doc: str = "test revision",
) -> Path:
    path = folder / "versions" / f"{rev}_test.py"
    path.write_text(
        REVISION.format(doc=doc, rev=rev, down=down or "", down_repr=repr(down), up=up, down_body=down_body)
    )
    return path


def run(settings: Settings) -> Ladder:
    return climb(settings, cleared(settings, "ladder", Tier.INT), Output(Tier.INT))


def check(ladder: Ladder, name_part: str) -> list[str]:
    return [f"{c.status}: {c.detail}" for c in ladder.checks if name_part in c.name]


def stg_with_data(tiers: Tiers, at: str = "0002") -> None:
    from dbguard.migrations.schema import drop_app_schemas, raw, sa_connection, upgrade
    from dbguard.seeding.runner import make_plan, seed_database

    with sa_connection(tiers.target(Tier.STG)) as conn, conn.begin():
        drop_app_schemas(conn)
        upgrade(tiers.settings, conn, "head")
        seed_database(raw(conn), make_plan(PROJECT, "minimal"))
    if at != "0002":
        from dbguard.migrations.schema import downgrade

        with sa_connection(tiers.target(Tier.STG)) as conn, conn.begin():
            downgrade(tiers.settings, conn, at)


@pytest.fixture
def ladder_settings(tiers: Tiers, tmp_path: Path) -> Settings:
    return tiers.settings.with_values(MIGRATIONS_DIR=str(migrations_copy(tmp_path)))


def test_the_example_apps_ladder_passes_and_opens_the_gate(tiers: Tiers, ladder_settings: Settings) -> None:
    stg_with_data(tiers, at="0001")
    ladder = run(ladder_settings)
    assert not ladder.failed, [c for c in ladder.failed]
    assert check(ladder, "0002 applied")[0].startswith(PASS)  # on the STG clone, with its rows
    assert check(ladder, "pending revisions for PROD") == ["pass: 0001, 0002"]
    assert check(ladder, "squawk")[0].startswith(PASS)
    assert check_gate(ladder_settings).files.head == "0002"
    # the clone took the migration, STG itself and PROD did not move
    assert tiers.sql(Tier.STG, "SELECT version_num FROM alembic_version") == "0001"
    assert tiers.sql(Tier.PROD, "SELECT to_regclass('public.alembic_version') IS NULL") == "t"


def test_a_second_head_is_caught(ladder_settings: Settings) -> None:
    folder = Path(ladder_settings.get("MIGRATIONS_DIR"))
    add_revision(folder, "0003a", "0002", "    op.execute('SELECT 1')")
    add_revision(folder, "0003b", "0002", "    op.execute('SELECT 2')")
    ladder = run(ladder_settings)
    assert check(ladder, "exactly one head") == [
        "fail: 2 heads: 0003a, 0003b (merge them: alembic merge heads)"
    ] or check(ladder, "exactly one head") == ["fail: 2 heads: 0003b, 0003a (merge them: alembic merge heads)"]
    assert check(ladder, "passing ladder recorded") == []  # the ladder stops: nothing else can be trusted
    with pytest.raises(Refused):
        check_gate(ladder_settings)


def test_a_downgrade_that_fails_is_caught(ladder_settings: Settings) -> None:
    folder = Path(ladder_settings.get("MIGRATIONS_DIR"))
    add_revision(
        folder,
        "0003",
        "0002",
        "    op.create_table('scratch_notes', sa.Column('id', sa.Integer(), primary_key=True))",
        down_body="    op.drop_table('no_such_table')",
    )
    ladder = run(ladder_settings)
    (result,) = check(ladder, "0003: up, down, up")
    assert result.startswith(FAIL) and "no_such_table" in result


def test_an_empty_downgrade_must_be_marked_irreversible(ladder_settings: Settings) -> None:
    folder = Path(ladder_settings.get("MIGRATIONS_DIR"))
    path = add_revision(folder, "0003", "0002", "    op.execute('SELECT 1')", down_body="    pass")
    ladder = run(ladder_settings)
    assert check(ladder, "can be downgraded")[0].startswith(FAIL)
    path.write_text(path.read_text() + "\nirreversible = True  # a data fix: there is nothing to undo\n")
    ladder = run(ladder_settings)
    assert check(ladder, "can be downgraded")[0].startswith(PASS)
    assert check(ladder, "0003: up, down, up") == ["pass: up only: marked irreversible"]


def test_a_model_change_without_a_migration_is_caught(ladder_settings: Settings) -> None:
    folder = Path(ladder_settings.get("MIGRATIONS_DIR"))
    (folder / "versions" / "0002_user_contact_and_task_completion.py").unlink()
    ladder = run(ladder_settings)
    (result,) = check(ladder, "the models match the migrated schema")
    assert result.startswith(FAIL) and "add_column" in result and "invoke db.revision" in result


def test_a_migration_that_fails_on_seeded_data_but_passes_on_an_empty_schema(
    tiers: Tiers, ladder_settings: Settings
) -> None:
    stg_with_data(tiers)
    folder = Path(ladder_settings.get("MIGRATIONS_DIR"))
    add_revision(
        folder,
        "0003",
        "0002",
        "    op.execute('ALTER TABLE tasks ADD CONSTRAINT ck_tmp CHECK (priority < 2)')\n"
        "    op.execute('ALTER TABLE tasks DROP CONSTRAINT ck_tmp')",
    )
    ladder = run(ladder_settings)
    assert check(ladder, "0003: up, down, up")[0].startswith(PASS)  # empty INT: fine
    (result,) = check(ladder, "0003 applied")
    assert result.startswith(FAIL) and "ck_tmp" in result  # STG's clone, with real rows: caught
    assert tiers.sql(Tier.STG, "SELECT version_num FROM alembic_version") == "0002"  # STG itself untouched


def test_a_squawk_hazard_is_caught(tiers: Tiers, ladder_settings: Settings) -> None:
    from dbguard.migrations.schema import sa_connection, upgrade

    with sa_connection(tiers.target(Tier.PROD)) as conn, conn.begin():
        upgrade(tiers.settings, conn, "head")  # PROD has the tables: a new index on one of them would lock it
    folder = Path(ladder_settings.get("MIGRATIONS_DIR"))
    add_revision(
        folder,
        "0003",
        "0002",
        "    op.create_index('ix_tasks_title', 'tasks', ['title'])",
        down_body="    op.drop_index('ix_tasks_title', table_name='tasks')",
    )
    ladder = run(ladder_settings)
    (result,) = check(ladder, "squawk")
    assert result.startswith(FAIL) and "require-concurrent-index-creation" in result


def test_prod_at_a_revision_we_do_not_know(tiers: Tiers, ladder_settings: Settings) -> None:
    tiers.sql(
        Tier.PROD,
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
        "INSERT INTO alembic_version VALUES ('9f9f9f')",
    )
    ladder = run(ladder_settings)
    (result,) = check(ladder, "PROD's revision is in our history")
    assert result.startswith(FAIL) and "PROD is at 9f9f9f, which these migration files do not know" in result
    assert "behind" in result and "diverged" in result


def test_prod_migrate_is_refused_after_a_migration_file_changed(tiers: Tiers, ladder_settings: Settings) -> None:
    from dbguard.migrations import migrate

    from tests.support.setup import robot
    from tests.support.setup import run as run_task

    assert not run(ladder_settings).failed
    check_gate(ladder_settings)
    path = Path(ladder_settings.get("MIGRATIONS_DIR")) / "versions" / "0002_user_contact_and_task_completion.py"
    path.write_text(path.read_text() + "\n# an innocent-looking edit after the ladder passed\n")
    result = run_task(ladder_settings, "migrate", "prod", robot(), migrate.migrate_task, confirm=tiers.names[Tier.PROD])
    assert result.code == 2
    assert "the migration files changed since the ladder last passed -> run `nox -s migrations`" in result.stderr
    assert tiers.sql(Tier.PROD, "SELECT to_regclass('public.alembic_version') IS NULL") == "t"


def prod_facts(tiers: Tiers):  # type: ignore[no-untyped-def]
    """PROD's identity and revision now, as db.migrate --env prod reads them."""
    from dbguard.guard.connect import connect
    from dbguard.ladder.gate import read_prod_facts

    with connect(tiers.target(Tier.PROD), read_only=True) as conn:
        return read_prod_facts(conn)


@pytest.mark.parametrize("prod", ["unreachable", "unset"])
def test_a_prod_check_that_could_not_run_is_not_verified_and_opens_nothing(
    tiers: Tiers, ladder_settings: Settings, prod: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from dbguard.ladder.gate import passes
    from dbguard.ladder.rungs import NOT_VERIFIED, main

    url = "postgresql://app:x@127.0.0.1:1/nowhere_prod?sslmode=require" if prod == "unreachable" else None
    settings = ladder_settings.with_values(PROD_DATABASE_URL=url)
    ladder = run(settings)
    assert not ladder.failed, ladder.failed  # INT and STG are fine: only PROD could not be checked
    (reached,) = check(ladder, "PROD reachable")
    assert reached.startswith(f"{NOT_VERIFIED}: ") and "did not run" in reached
    assert check(ladder, "passing ladder recorded")[0].startswith(f"{NOT_VERIFIED}: PROD not verified")
    assert not any(c.status == PASS for c in ladder.checks if c.rung.startswith("4 PROD"))
    assert passes(settings) == []  # no pass recorded...
    with pytest.raises(Refused, match="the ladder has never passed"):  # ...so PROD stays closed
        check_gate(settings, prod_facts(tiers))
    assert main([], settings=settings) == 1
    assert "PROD was not verified, so db.migrate --env prod stays closed" in capsys.readouterr().err


def test_pending_revisions_are_rehearsed_on_a_verified_backup_of_prod_at_its_revision(
    tiers: Tiers, ladder_settings: Settings
) -> None:
    """The normal flow: invoke db.backup --env prod && invoke db.verify latest && nox -s migrations."""
    from dbguard.backup.files import list_backups
    from dbguard.backup.verify import verify_task
    from dbguard.cli.commands import backup
    from dbguard.ladder.gate import passes
    from dbguard.ladder.rungs import NOT_VERIFIED
    from dbguard.migrations.schema import sa_connection, upgrade

    from tests.support.setup import robot
    from tests.support.setup import run as run_task

    with sa_connection(tiers.target(Tier.PROD)) as conn, conn.begin():
        upgrade(tiers.settings, conn, "0001")  # PROD holds the app's tables: it is not empty any more
    tiers.sql(Tier.PROD, "INSERT INTO users (email, full_name) VALUES ('real@example.com', 'Real Person')")
    ladder = run(ladder_settings)
    assert not ladder.failed, ladder.failed
    (rehearsal,) = check(ladder, "rehearsal on the newest verified PROD backup")
    assert rehearsal.startswith(NOT_VERIFIED) and "invoke db.backup --env prod && invoke db.verify latest" in rehearsal
    assert passes(ladder_settings) == []

    assert run_task(ladder_settings, "backup", "prod", robot(), backup).code == 0
    (taken,) = list_backups(ladder_settings.backups_dir, "prod")
    taken.manifest["verified_at"] = None  # (a PROD backup is verified as it is taken: undo that here)
    taken.save_manifest()
    assert check(run(ladder_settings), "rehearsal on the newest")[0].startswith(NOT_VERIFIED)  # not verified yet
    verify = run_task(
        ladder_settings, "verify", "prod", robot(), lambda ctx: verify_task(ctx, backup="latest", deep=False)
    )
    assert verify.code == 0, verify.text
    ladder = run(ladder_settings)
    assert not ladder.failed and not ladder.not_verified, ladder.checks
    assert check(ladder, "restored")[0] == "pass: at 0001"
    assert check(ladder, "0002 applied") == ["pass: ", "pass: "]  # on STG's clone and on PROD's rehearsal
    assert check_gate(ladder_settings, prod_facts(tiers)).prod == prod_facts(tiers)

    # a newer revision, and PROD moved on since its backup: the backup no longer rehearses what PROD will run
    add_revision(Path(ladder_settings.get("MIGRATIONS_DIR")), "0003", "0002", "    op.execute('SELECT 3')")
    with sa_connection(tiers.target(Tier.PROD)) as conn, conn.begin():
        upgrade(tiers.settings, conn, "0002")
    (rehearsal,) = check(run(ladder_settings), "rehearsal on the newest verified PROD backup")
    assert rehearsal.startswith(NOT_VERIFIED) and "is at 0001 and PROD is at 0002" in rehearsal


def test_a_pass_holds_only_for_the_prod_it_checked_at_the_revision_it_saw(
    tiers: Tiers, ladder_settings: Settings
) -> None:
    from dataclasses import replace

    ladder = run(ladder_settings)
    assert check(ladder, "rehearsal on the newest") == [
        "pass: not needed: PROD is empty (at base, no tables), like INT's from-empty run"
    ]
    prod = prod_facts(tiers)
    assert ladder.prod == prod and check_gate(ladder_settings, prod).prod == prod
    with pytest.raises(Refused, match=r"it passed against another PROD database, 't\d+_prod' \(cluster"):
        check_gate(ladder_settings, replace(prod, database_oid=prod.database_oid + 1))  # dropped and made again
    with pytest.raises(Refused, match="it passed against another PROD database"):
        check_gate(ladder_settings, replace(prod, system_identifier="1"))  # another server, same name
    with pytest.raises(Refused, match="it passed when PROD was at base, and PROD is at 0001 now"):
        check_gate(ladder_settings, replace(prod, revision="0001"))
