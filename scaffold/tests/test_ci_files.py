"""The CI workflow, pre-commit config and compose file a new app carries: parsed, and checked for what matters."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scaffold.build import ROOT


def workflow() -> dict:  # type: ignore[type-arg]
    data = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_the_workflow_runs_ci_run_against_a_postgres_service_and_never_reaches_prod() -> None:
    test = workflow()["jobs"]["test"]
    assert test["services"]["postgres"]["image"].startswith("postgres:")
    assert {"INT_DATABASE_URL", "STG_DATABASE_URL"} <= set(test["env"])
    assert "PROD_DATABASE_URL" not in test["env"]
    runs = [step.get("run", "") for step in test["steps"]]
    assert "bash .ci/run" in runs  # the same commands as .ci/run, by running it
    assert any("docker/initdb/10-tiers.sql" in r for r in runs)  # stamped INT and STG


def test_prod_is_migrated_only_with_the_ladders_report_behind_a_manual_approval() -> None:
    jobs = workflow()["jobs"]
    assert jobs["ladder"]["needs"] == "test"
    assert any("nox -s migrations -- --report ladder.json" in s.get("run", "") for s in jobs["ladder"]["steps"])
    deploy = jobs["deploy"]
    assert deploy["needs"] == "ladder" and deploy["environment"] == "production"
    steps = deploy["steps"]
    downloads = [i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/download-artifact")]
    migrate = [i for i, s in enumerate(steps) if "db.migrate --env prod" in s.get("run", "")]
    assert downloads and migrate and downloads[0] < migrate[0]
    assert "--ladder-report ladder.json" in steps[migrate[0]]["run"]
    assert "secrets." in deploy["env"]["PROD_DATABASE_URL"]  # the read-only credential, from the secrets
    assert "secrets." in deploy["env"]["PROD_MIGRATOR_PASSWORD"] and deploy["env"]["PROD_WRITE_PASSWORD_COMMAND"]
    # the report is signed and checked with one key from the jobs' secrets; the rehearsal has its verified backup
    assert all("secrets." in jobs[j]["env"]["LADDER_REPORT_KEY"] for j in ("ladder", "deploy"))
    ladder_runs = [s.get("run", "") for s in jobs["ladder"]["steps"]]
    backup = [i for i, r in enumerate(ladder_runs) if "db.backup --env prod" in r and "db.verify latest" in r]
    climb = [i for i, r in enumerate(ladder_runs) if "nox -s migrations" in r]
    assert backup and climb and backup[0] < climb[0]


def test_pre_commit_runs_ruff_mypy_and_the_secret_scan() -> None:
    hooks = [
        h for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"] for h in repo["hooks"]
    ]
    entries = {h["id"]: h["entry"] for h in hooks}
    assert entries["ruff"].startswith("ruff check") and entries["ruff-format"] == "ruff format"
    assert "typecheck" in entries["mypy"]
    assert entries["secrets"] == "python -m dbguard.reports.secrets"


def test_the_secret_scan_fails_on_a_real_password_in_env_example(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.dbguard]\n")
    (tmp_path / ".env.example").write_text("PROD_DATABASE_URL=postgresql://app:Hunter2-real@db/app_prod\n")
    env = {"PATH": os.environ["PATH"], "DB_TOOLS_ENV_FILE": "/dev/null"}
    proc = subprocess.run(
        [sys.executable, "-m", "dbguard.reports.secrets"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "real-looking secrets in: PROD_DATABASE_URL" in proc.stderr and "Hunter2" not in proc.stderr


def test_compose_fails_loudly_without_a_password_and_publishes_on_localhost_only() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    db = yaml.safe_load(text)["services"]["db"]
    assert db["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert all(str(p).startswith("127.0.0.1:") for p in db["ports"])
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]


def test_docker_compose_config_accepts_the_file_where_a_docker_client_exists() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode:
        pytest.skip("no docker compose client on this machine")
    ok = subprocess.run([docker, "compose", "config", "--quiet"], cwd=ROOT, env={"POSTGRES_PASSWORD": "x"}, check=False)
    assert ok.returncode == 0
    missing = subprocess.run(
        [docker, "compose", "config", "--quiet"], cwd=ROOT, env={}, capture_output=True, check=False
    )
    assert missing.returncode != 0  # no password: compose refuses
