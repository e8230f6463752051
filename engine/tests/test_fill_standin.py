"""db.fill-standin: the embedded stand-in PROD of a laptop set-up can hold data; a real PROD is never seeded.

On a laptop (no STG or PROD URL) the fill is a PROD write like the others (typed name, a backup first,
an audit line), and afterwards PROD's chores run on one machine: a staging refresh from the stand-in,
a PROD backup. Where PROD is reached through PROD_DATABASE_URL the task is refused before anything is
opened, whatever is typed or consented.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from dbguard.cli.runner import EXIT_REFUSED
from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.guard.connect import connect
from dbguard.guard.tiers import Tier

from tests.support.cli import invoke_cli
from tests.support.project import FIXTURE_ROOT
from tests.support.setup import Tiers, human, make_settings, run, state_values

REAL_PROD_REFUSAL = "fill-standin on PROD is not allowed: PROD here is '{db}', reached through PROD_DATABASE_URL"


def write_marker(ctx):  # type: ignore[no-untyped-def]
    """A body that writes, so a bypassed guard leaves evidence."""
    from dbguard.guard.connect import connect

    with connect(ctx.target) as conn:
        conn.execute("CREATE TABLE fill_bypassed (id int)")
    return 0


def test_a_real_prod_is_never_filled_whatever_is_typed_or_consented(tiers: Tiers, tmp_path: Path) -> None:
    name = tiers.names[Tier.PROD]
    caller = human(name, consent=name)
    result = run(tiers.settings, "fill-standin", "prod", caller, write_marker, confirm=name)
    assert result.code == EXIT_REFUSED and not result.ran
    assert REAL_PROD_REFUSAL.format(db=name) in result.stderr
    assert "a real PROD is never seeded -> seed STG instead (invoke db.seed --env stg)" in result.stderr
    assert caller._prompts == []  # type: ignore[attr-defined]  # refused before anyone was asked
    assert tiers.sql(Tier.PROD, "SELECT to_regclass('public.fill_bypassed') IS NULL") == "t"

    env = state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()}
    proc = invoke_cli("db.fill-standin", "--confirm", name, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert REAL_PROD_REFUSAL.format(db=name) in proc.stderr
    audit = [json.loads(line) for line in (tmp_path / "logs" / "audit.jsonl").read_text().splitlines()]
    assert [(a["task"], a["tier"], a["outcome"]) for a in audit] == [("fill-standin", "prod", "refused")] * 2
    assert tiers.sql(Tier.PROD, "SELECT to_regclass('public.users') IS NULL") == "t"  # never migrated, never seeded


PORT = "54397"


@pytest.fixture
def laptop(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A laptop set-up: no URL at all, the embedded cluster in this test's folder (INT, STG, the stand-in PROD)."""
    folder = tmp_path / "clone"
    folder.mkdir()
    os.chmod(tmp_path, 0o700)
    env = state_values(folder) | {"EMBEDDED_PG_PORT": PORT}
    yield folder, env
    EmbeddedCluster.from_settings(make_settings(folder, EMBEDDED_PG_PORT=PORT)).stop()


def standin_sql(folder: Path, query: str, tier: Tier = Tier.PROD) -> list[tuple[object, ...]]:
    cluster = EmbeddedCluster.from_settings(make_settings(folder, EMBEDDED_PG_PORT=PORT))
    with connect(cluster.target(tier), read_only=True) as conn:
        return conn.execute(query).fetchall()


def test_on_a_laptop_the_standin_is_filled_then_refreshed_from_and_backed_up(laptop) -> None:  # type: ignore[no-untyped-def]
    folder, env = laptop

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return invoke_cli(*args, env=env)

    proc = cli("db.fill-standin", "--scenario", "minimal")
    assert (
        proc.returncode == 2 and "needs the database name typed" in proc.stderr and "--confirm app_prod" in proc.stderr
    )
    proc = cli("db.fill-standin", "--scenario", "minimal", "--dry-run")
    assert proc.returncode == 0 and "back up the stand-in PROD 'app_prod', drop its app schemas" in proc.stdout
    assert standin_sql(folder, "SELECT to_regclass('public.users') IS NULL") == [(True,)]  # the plan touched nothing
    proc = invoke_cli("db.fill-standin", "--confirm", "app_prod", env=env | {"CLAUDECODE": "1"})
    assert proc.returncode == 2 and "was asked for by an automated agent (claude-code); it needs a human's consent" in (
        proc.stderr
    )
    proc = cli("db.fill-standin", "--scenario", "minimal", "--confirm", "app_prod")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "filled the stand-in PROD 'app_prod'" in proc.stdout and "invoke db.refresh-staging" in proc.stdout
    users = standin_sql(folder, "SELECT email FROM users ORDER BY id")
    assert len(users) == 3
    assert list((folder / "backups").glob("prod-app_prod-*.dump"))  # the backup first: the stand-in's undo point

    proc = cli("db.refresh-staging")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    copied = standin_sql(folder, "SELECT email FROM users ORDER BY id", Tier.STG)
    assert len(copied) == 3 and not set(copied) & set(users)  # the same rows, sanitized on the way

    proc = cli("db.backup", "--env", "prod")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    audit = [json.loads(line) for line in (folder / "logs" / "audit.jsonl").read_text().splitlines()]
    fills = [(a["task"], a["tier"], a["outcome"]) for a in audit if a["task"] == "fill-standin"]
    outcomes = ("refused", "dry-run", "refused", "started", "ok")  # no name; the plan; the agent; the fill
    assert fills == [("fill-standin", "prod", outcome) for outcome in outcomes]


BATCHED = '''"""trim task titles, in batches outside a transaction"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("UPDATE tasks SET title = btrim(title) WHERE title <> btrim(title)")


def downgrade() -> None:
    op.execute("SELECT 1")
'''


def test_on_a_laptop_the_ladder_rehearses_on_the_standins_backup_and_opens_its_migration(laptop) -> None:  # type: ignore[no-untyped-def]
    """The whole PROD path on one machine: fill, refresh, back up, a new revision, the ladder with its
    rehearsal on the stand-in's backup, then db.migrate --env prod through the gate."""
    folder, env = laptop
    app = folder / "app"
    shutil.copytree(FIXTURE_ROOT, app, ignore=shutil.ignore_patterns("__pycache__", ".local"))

    def cli(*args: str) -> str:
        proc = invoke_cli(*args, env=env, cwd=app)
        assert proc.returncode == 0, f"invoke {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    cli("db.fill-standin", "--scenario", "minimal", "--confirm", "app_prod")
    cli("db.refresh-staging")
    cli("db.backup", "--env", "prod")  # verified as it is taken
    (app / "migrations" / "versions" / "0003_trim_titles.py").write_text(BATCHED)
    ladder = cli("db.ladder")
    assert "the ladder passed" in ladder and "rehearsal: prod-app_prod-" in ladder
    cli("db.migrate", "--env", "prod", "--confirm", "app_prod")
    assert standin_sql(folder, "SELECT version_num FROM alembic_version") == [("0003",)]
