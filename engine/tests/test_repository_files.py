"""The template's own files: docker-compose.yml parses and matches the settings, secrets stay out of git."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import yaml
from dbguard.guard.config import env_example_findings
from dbguard.guard.connect import connect
from dbguard.guard.stamp import read_stamp
from dbguard.guard.targets import parse_database_url
from dbguard.guard.tiers import Tier
from dbguard.settings import DEFAULTS
from dotenv import dotenv_values

from tests.support.clusters import ThrowawayCluster
from tests.support.project import TEMPLATE_ROOT
from tests.support.setup import make_settings

ROOT = TEMPLATE_ROOT


def test_docker_compose_has_a_persistent_volume_and_local_only_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    db = compose["services"]["db"]
    assert db["image"].startswith("postgres:")
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert "pgdata" in compose["volumes"]  # a named volume: rebuilding the container keeps STG
    assert all(str(p).startswith("127.0.0.1:") for p in db["ports"])
    assert "${POSTGRES_PASSWORD" in db["environment"]["POSTGRES_PASSWORD"]  # no literal secret
    assert any(v.startswith("./docker/initdb:/docker-entrypoint-initdb.d") for v in db["volumes"])
    assert "healthcheck" in db


def test_compose_init_script_makes_stamped_tier_databases(local_server: ThrowawayCluster) -> None:
    """Run docker/initdb/10-tiers.sql as the image would, then read the stamps with our own code."""
    sql = (ROOT / "docker" / "initdb" / "10-tiers.sql").read_text()
    prefix = "compose_"
    sql = sql.replace("app_int", prefix + "app_int").replace("app_stg", prefix + "app_stg")
    proc = subprocess.run(
        [
            str(local_server.bindir / "psql"),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            local_server.socket_dir,
            "-p",
            str(local_server.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ],
        input=sql,
        text=True,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for tier in (Tier.INT, Tier.STG):
        name = f"{prefix}app_{tier.value}"
        target = parse_database_url(local_server.socket_url(name), tier=tier, source="test")
        with connect(target, read_only=True) as conn:
            stamp = read_stamp(conn)
        assert stamp is not None and stamp.tier is tier and stamp.database_name == name


def test_env_example_documents_every_setting_with_placeholders(tmp_path: Path) -> None:
    text = (ROOT / ".env.example").read_text()
    for key in [
        *DEFAULTS,
        "INT_DATABASE_URL",
        "STG_DATABASE_URL",
        "PROD_DATABASE_URL",
        "DB_HUMAN_CONSENT",
        "PG_BINDIR",
        "EMBEDDED_PG_OS_USER",
        "APP_ENV",
    ]:
        assert key in text, f"{key} is not documented in .env.example"
    assert env_example_findings(replace(make_settings(tmp_path), root=ROOT)).ok
    values = dotenv_values(ROOT / ".env.example")
    assert "DB_HUMAN_CONSENT" not in values  # documented, never set in a file


def test_env_example_secret_check_catches_a_real_password(tmp_path: Path) -> None:
    from dbguard.settings import Settings

    (tmp_path / ".env.example").write_text("PROD_DATABASE_URL=postgresql://app:Xk29-real-Pw@db.example.com/app\n")
    finding = env_example_findings(Settings(root=tmp_path, values={}, environ={}))
    assert not finding.ok and "PROD_DATABASE_URL" in finding.message


def test_local_state_and_secrets_are_git_ignored() -> None:
    paths = [".env", "logs/database_audit.jsonl", "backups/x.dump", ".local/postgres/data", ".env.prod"]
    proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", *paths], capture_output=True, text=True, check=False)
    assert set(proc.stdout.split()) == set(paths)
    assert (
        subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", ".env.example"], capture_output=True, check=False
        ).returncode
        == 1
    )


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def test_readme_quickstart_is_two_commands_and_ci_runs_the_second_verbatim() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2
    assert "invoke db.reset --env stg" in commands[0]
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()
    assert "pytest" in commands[1]
