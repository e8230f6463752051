"""db.revision: compares the models with a scratch database built at head, never the (maybe drifted) live INT,
and writes a file that passes the project's ruff lint and format as it stands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dbguard.guard.tiers import Tier

from tests.support.cli import invoke_cli
from tests.support.project import FIXTURE_ROOT, TEMPLATE_ROOT
from tests.support.setup import Tiers, state_values


def test_a_drifted_int_does_not_leak_into_the_revision_and_the_file_is_clean(tiers: Tiers, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(FIXTURE_ROOT / "migrations", project / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(TEMPLATE_ROOT / "pyproject.toml", project / "pyproject.toml")  # the project's ruff settings
    env = state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()}
    env["MIGRATIONS_DIR"] = str(project / "migrations")
    assert invoke_cli("db.migrate", env=env).returncode == 0
    tiers.sql(Tier.INT, "CREATE TABLE drift (id int PRIMARY KEY); ALTER TABLE users ADD COLUMN nickname text")

    proc = invoke_cli("db.revision", "-m", "nothing changed in the models", env=env)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = [p for p in (project / "migrations" / "versions").glob("*.py") if "nothing_changed" in p.name]
    assert len(written) == 1
    text = written[0].read_text()
    assert "drift" not in text and "nickname" not in text  # the live INT's drift is not the models' change
    assert "Revises: 0002\n" in text
    for check in (["check"], ["format", "--check"]):
        ruff = subprocess.run(["ruff", *check, str(written[0])], capture_output=True, text=True, check=False)
        assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM pg_tables WHERE tablename = 'drift'") == "1"  # INT untouched
