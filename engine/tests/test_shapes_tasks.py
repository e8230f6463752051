"""Every task and the ladder on the shapes fixture (uuid keys, a foreign-key cycle, a second schema, enums, a
generated column, a partitioned table, UNIQUE personal columns...), run as a user runs them: invoke in a child
process, in a copy of the app, against throwaway tiers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from dbguard.guard.tiers import Tier

from tests.support.cli import invoke_cli
from tests.support.project import SHAPES_ROOT, TEMPLATE_ROOT
from tests.support.setup import Tiers, state_values

TABLES = ("users", "recipes", "recipe_ingredients", "recipe_bookmarks", "kitchen.meal_plans", "cooking_log")


def test_every_task_and_the_ladder_run_on_the_shapes_app(tiers: Tiers, tmp_path: Path) -> None:
    root = tmp_path / "app"
    shutil.copytree(SHAPES_ROOT, root, ignore=shutil.ignore_patterns("__pycache__", ".local"))
    shutil.copy(TEMPLATE_ROOT / ".gitignore", root / ".gitignore")  # a real app's repository ignores its secrets
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    env = state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()}

    def cli(*args: str) -> str:
        proc = invoke_cli(*args, env=env, cwd=root)
        assert proc.returncode == 0, f"invoke {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    def count(tier: Tier, table: str) -> int:
        return int(tiers.sql(tier, f"SELECT count(*) FROM {table}"))

    minimal = {"users": 3, "recipes": 4, "recipe_ingredients": 12, "recipe_bookmarks": 5, "cooking_log": 6}

    # INT: up, down to empty and up again, seed and append, status and doctor
    cli("db.migrate", "--env", "int")
    cli("db.migrate", "--env", "int", "--to", "base")
    assert tiers.sql(Tier.INT, "SELECT to_regnamespace('kitchen') IS NULL AND to_regclass('users') IS NULL") == "t"
    cli("db.migrate", "--env", "int")
    assert tiers.sql(Tier.INT, "SELECT version_num FROM alembic_version") == "0001"
    cli("db.seed", "--env", "int", "--scenario", "minimal")
    assert {t: count(Tier.INT, t) for t in minimal} == minimal
    cli("db.seed", "--env", "int", "--scenario", "minimal", "--append", "--seed", "2")
    assert {t: count(Tier.INT, t) for t in minimal} == {t: 2 * n for t, n in minimal.items()}
    assert count(Tier.INT, "kitchen.meal_plans") == 8
    status = cli("db.status", "--env", "int")
    assert "0001" in status
    cli("db.doctor", "--env", "int")

    # STG: reset (the new database built beside the live one), backup, restore, verify
    assert "seeded 'demo'" in cli("db.reset", "--env", "stg")
    demo = {t: count(Tier.STG, t) for t in TABLES}
    assert demo["kitchen.meal_plans"] == 1_200 and demo["cooking_log"] == 3_000
    assert "drop schema(s) public, kitchen" in cli("db.reset", "--env", "int", "--dry-run")
    cli("db.reset", "--env", "int")  # in place, in one transaction: the second schema dropped and made again
    assert count(Tier.INT, "kitchen.meal_plans") == 1_200
    cli("db.backup", "--env", "stg")
    tiers.sql(
        Tier.STG, "DELETE FROM kitchen.meal_plans; DELETE FROM cooking_log; UPDATE users SET favorite_recipe_id = NULL"
    )
    cli("db.restore", "--env", "stg", "--from", "latest")
    assert {t: count(Tier.STG, t) for t in TABLES} == demo
    partitions = tiers.sql(Tier.STG, "SELECT count(DISTINCT tableoid) FROM cooking_log")
    assert partitions == "3"  # the rows are back in their partitions
    assert "restored into a throwaway database" in cli("db.verify", "latest", "--env", "stg", "--deep")
    cli("db.doctor", "--env", "stg")

    # db.revision at head: nothing to add (the second schema compared, the partitions not mistaken for drift)
    cli("db.revision", "--message", "nothing changed")
    written = [p for p in (root / "migrations" / "versions").glob("*.py") if "nothing_changed" in p.name]
    assert len(written) == 1
    body = written[0].read_text()
    upgrade = body[body.index("def upgrade") : body.index("def downgrade")]
    assert re.search(r"\bop\.", upgrade) is None, upgrade
    written[0].unlink()

    # the ladder: INT stairway (up/down/up per revision), a clone of STG, PROD checked; then PROD migrated
    assert "the ladder passed" in cli("db.ladder")
    cli("db.migrate", "--env", "prod", "--confirm", tiers.names[Tier.PROD])
    assert tiers.sql(Tier.PROD, "SELECT version_num FROM alembic_version") == "0001"
    assert "the ladder passed" in cli("db.ladder")
