"""The engine serves any app that declares itself: a renamed package with another schema, no engine change.

The lending fixture app (engine/tests/projects/lending) is copied, its package renamed, and the whole
cycle runs through the CLI as a user would: reset, seed, backup, restore, the ladder, a PROD migration,
a staging refresh from PROD.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import psycopg
from dbguard.guard.tiers import Tier

from tests.support.cli import invoke_cli
from tests.support.project import PROJECTS
from tests.support.setup import Tiers, state_values

NEW_NAME = "circulation"


def renamed_copy(tmp: Path) -> Path:
    """The lending app under another package name: only its own files change, never the engine."""
    root = tmp / "app"
    shutil.copytree(PROJECTS / "lending", root, ignore=shutil.ignore_patterns("__pycache__", ".local"))
    (root / "lending").rename(root / NEW_NAME)
    for path in [root / "pyproject.toml", *root.rglob("*.py")]:
        path.write_text(re.sub(r"\blending\b", NEW_NAME, path.read_text()))
    return root


def test_a_renamed_app_with_another_schema_runs_the_whole_cycle(tiers: Tiers, tmp_path: Path) -> None:
    root = renamed_copy(tmp_path)
    env = state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()}
    prod_name = tiers.names[Tier.PROD]

    def cli(*args: str) -> str:
        proc = invoke_cli(*args, env=env, cwd=root)
        assert proc.returncode == 0, f"invoke {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    assert "seeded 'demo'" in cli("db.reset", "--env", "stg")
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM loans") == "900"
    cli("db.migrate", "--env", "int")
    cli("db.seed", "--env", "int", "--scenario", "minimal")
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM members") == "3"

    cli("db.backup", "--env", "stg")
    tiers.sql(Tier.STG, "DELETE FROM loans")
    cli("db.restore", "--env", "stg", "--from", "latest")
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM loans") == "900"

    assert "the ladder passed" in cli("db.ladder")
    cli("db.migrate", "--env", "prod", "--confirm", prod_name)
    assert tiers.sql(Tier.PROD, "SELECT version_num FROM alembic_version") == "0001"
    with psycopg.connect(tiers.owner_url(Tier.PROD)) as prod:  # PROD's own app writes its data, not the tools
        prod.execute(
            "INSERT INTO members (card_email, display_name, mobile, joined_on) "
            "SELECT 'reader' || i || '@real.example', 'Reader ' || i, '+1 555 01' || i, current_date "
            "FROM generate_series(1, 50) i"
        )
        prod.execute(
            "INSERT INTO books (isbn, title, copies, price) SELECT 'isbn-' || i, 'Book ' || i, 2, 9.5 "
            "FROM generate_series(1, 20) i"
        )
        prod.execute(
            "INSERT INTO loans (member_id, book_id, lent_at, librarian_note) "
            "SELECT m.id, b.id, now(), 'called ' || m.display_name FROM members m JOIN books b ON b.id = m.id"
        )

    assert "refreshed" in cli("db.refresh-staging")
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM members") == "50"
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM loans") == "20"
    leaked = tiers.sql(
        Tier.STG,
        "SELECT count(*) FROM members WHERE card_email LIKE '%real.example' OR display_name LIKE 'Reader %'",
    )
    assert leaked == "0"
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM loans WHERE librarian_note LIKE 'called Reader%'") == "0"
    assert "the ladder passed" in cli("db.ladder")
