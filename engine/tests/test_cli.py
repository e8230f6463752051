"""The tasks as a user runs them: `invoke db.*` in a child process. One clear line per error, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dbguard.guard.tiers import Tier

from tests.support.cli import invoke_cli
from tests.support.setup import Tiers, state_values

DB_TASKS = {"db.up", "db.down", "db.status", "db.doctor", "db.audit", "db.stamp"}


def env_for(tiers: Tiers, tmp_path: Path, **extra: str) -> dict[str, str]:
    return state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()} | extra


def assert_one_clean_error(proc, expected: str, code: int = 2) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, proc.stderr
    assert expected in errors[0], errors[0]


def test_list_shows_each_db_task_with_one_line_of_help() -> None:
    proc = invoke_cli("--list", env={})
    assert proc.returncode == 0
    listed = {ln.split()[0] for ln in proc.stdout.splitlines() if ln.startswith("  db.")}
    assert listed >= DB_TASKS


def test_status_shows_every_tier_and_survives_an_unreachable_prod(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path, PROD_DATABASE_URL="postgresql://app:pw-unused@127.0.0.1:1/app_prod")
    proc = invoke_cli("db.status", "--env", "stg", env=env)
    assert proc.returncode == 0, proc.stderr
    first, *rest = proc.stdout.splitlines()
    assert first.startswith("[STG] postgresql://postgres@/" + tiers.names[Tier.STG])
    table = "\n".join(rest)
    assert tiers.names[Tier.INT] in table and tiers.names[Tier.STG] in table
    assert "no: not reachable: Connection refused" in table
    assert "pw-unused" not in proc.stdout + proc.stderr


def test_status_warns_about_a_remote_prod_without_tls(tiers: Tiers, tmp_path: Path) -> None:
    remote_plain = tiers.prod.tcp_url(tiers.names[Tier.PROD], host="127.0.0.2", sslmode="prefer")
    proc = invoke_cli("db.status", env=env_for(tiers, tmp_path, PROD_DATABASE_URL=remote_plain))
    assert proc.returncode == 0
    assert "[INT] warning: PROD: remote PROD without sslmode=require" in proc.stdout


@pytest.mark.parametrize(
    "args, env_extra, expected, code",
    [
        (["db.status", "--env", "qa"], {}, "unknown tier 'qa': the tiers are int, stg, prod", 2),
        (
            ["db.stamp", "--env", "stg"],
            {"STG_DATABASE_URL": "postgresql://u:Leak-Me-123@h/x_stg?bogus=1"},
            "STG_DATABASE_URL is malformed",
            2,
        ),
        (
            ["db.stamp", "--env", "stg"],
            {"STG_DATABASE_URL": "mysql://u:Leak-Me-123@h/x"},
            "STG_DATABASE_URL uses the scheme 'mysql'",
            2,
        ),
        (
            ["db.stamp", "--env", "prod"],
            {"PROD_DATABASE_URL": ""},
            "PROD was asked for but PROD_DATABASE_URL is not set",
            2,
        ),
        (
            ["db.stamp", "--env", "stg"],
            {"STG_DATABASE_URL": "postgresql://postgres:Leak-Me-123@127.0.0.1:1/x_stg"},
            "is not reachable",
            1,
        ),
    ],
)
def test_bad_input_is_one_line_with_no_traceback_and_an_audit_line(
    tiers: Tiers, tmp_path: Path, args: list[str], env_extra: dict[str, str], expected: str, code: int
) -> None:
    env = env_for(tiers, tmp_path) | env_extra
    proc = invoke_cli(*args, env=env)
    assert_one_clean_error(proc, expected, code)
    assert "Leak-Me-123" not in proc.stdout + proc.stderr
    audit = Path(env["AUDIT_LOG"]).read_text().splitlines()
    last = json.loads(audit[-1])
    assert last["outcome"] in {"refused", "failed"} and expected in last["error"]
    assert "Leak-Me-123" not in Path(env["AUDIT_LOG"]).read_text()


def test_wrong_password_and_missing_database(tiers: Tiers, tmp_path: Path) -> None:
    wrong = tiers.urls[Tier.PROD].replace(tiers.prod.password or "", "Not-The-Password-1")
    proc = invoke_cli(
        "db.stamp",
        "--env",
        "prod",
        "--confirm",
        tiers.names[Tier.PROD],
        env=env_for(tiers, tmp_path, PROD_DATABASE_URL=wrong),
    )
    assert_one_clean_error(proc, "wrong or missing password for user 'app'")
    assert "Not-The-Password-1" not in proc.stdout + proc.stderr
    proc = invoke_cli(
        "db.stamp", "--env", "stg", env=env_for(tiers, tmp_path, STG_DATABASE_URL=tiers.local.socket_url("nope_stg"))
    )
    assert_one_clean_error(proc, "database 'nope_stg' does not exist")


def test_two_tiers_on_one_database_and_stamp_mismatch(tiers: Tiers, tmp_path: Path) -> None:
    proc = invoke_cli("db.stamp", "--env", "stg", env=env_for(tiers, tmp_path, INT_DATABASE_URL=tiers.urls[Tier.STG]))
    assert_one_clean_error(proc, "tiers must never share a database")
    from tests.support.setup import stamp_url

    tiers.local.create_database("mismatch_int")
    stamp_url(tiers.local.socket_url("mismatch_int"), Tier.STG, "mismatch_int")
    proc = invoke_cli(
        "db.stamp",
        "--env",
        "int",
        env=env_for(tiers, tmp_path, INT_DATABASE_URL=tiers.local.socket_url("mismatch_int")),
    )
    assert proc.returncode == 2 and "'mismatch_int' is already stamped STG for 'mismatch_int'" in proc.stderr
    assert "invoke db.stamp --env int --force" in proc.stderr


def test_stamp_task_writes_repairs_and_guards_prod(tiers: Tiers, tmp_path: Path) -> None:
    tiers.local.create_database("fresh_stg")
    env = env_for(tiers, tmp_path, STG_DATABASE_URL=tiers.local.socket_url("fresh_stg"))
    dry = invoke_cli("db.stamp", "--env", "stg", "--dry-run", env=env)
    assert dry.returncode == 0 and "plan: would stamp 'fresh_stg' as STG" in dry.stdout
    assert tiers.local.psql("fresh_stg", "SELECT to_regclass('dbguard.tier_stamp') IS NULL") == "t"
    done = invoke_cli("db.stamp", "--env", "stg", env=env)
    assert done.returncode == 0 and "stamped 'fresh_stg' as STG" in done.stdout
    assert tiers.local.psql("fresh_stg", "SELECT tier, database_name FROM dbguard.tier_stamp") == "stg|fresh_stg"
    # the stamp survives dropping the app's schema
    tiers.local.psql("fresh_stg", "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    assert tiers.local.psql("fresh_stg", "SELECT tier FROM dbguard.tier_stamp") == "stg"

    # a PROD-stamped database is not un-stamped by a script, not even with --force
    tiers.local.create_database("was_prod_stg")
    from tests.support.setup import stamp_url

    stamp_url(tiers.local.socket_url("was_prod_stg"), Tier.PROD, "was_prod_stg")
    env = env_for(tiers, tmp_path, STG_DATABASE_URL=tiers.local.socket_url("was_prod_stg"))
    proc = invoke_cli("db.stamp", "--env", "stg", "--force", env=env)
    assert_one_clean_error(proc, "allowed only at an interactive terminal")
    assert tiers.local.psql("was_prod_stg", "SELECT tier FROM dbguard.tier_stamp") == "prod"


def test_audit_task_verifies_and_reports_tampering(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    for _ in range(3):
        invoke_cli("db.status", env=env)
    proc = invoke_cli("db.audit", "--verify", env=env)
    assert proc.returncode == 0 and "audit log intact: 3 lines, hash chain unbroken" in proc.stdout
    log = Path(env["AUDIT_LOG"])
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], lines[2]]) + "\n")
    proc = invoke_cli("db.audit", "--verify", env=env)
    assert proc.returncode == 1
    assert "line 2: sequence number 3 follows 1: 1 line(s) before it were removed" in proc.stderr


def test_doctor_gates_on_required_failures(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    proc = invoke_cli("db.doctor", env=env)
    assert proc.returncode == 0, proc.stdout
    passed_before, total_before = _score_counts(proc.stdout)
    tiers.local.psql(tiers.names[Tier.STG], "UPDATE dbguard.tier_stamp SET tier = 'int'")
    proc = invoke_cli("db.doctor", env=env)
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "STG carries the STG stamp" in proc.stdout
    passed, total = _score_counts(proc.stdout)
    assert (passed, total) == (passed_before - 1, total_before)  # the score follows the live results


def _score_counts(text: str) -> tuple[int, int]:
    import re

    match = re.search(r"score (\d+)/100 \((\d+) of (\d+) checks pass", text)
    assert match, text
    score, passed, total = (int(g) for g in match.groups())
    assert score == round(100 * passed / total)
    return passed, total


def test_under_pytest_the_cli_is_forced_to_int(tiers: Tiers, tmp_path: Path) -> None:
    proc = invoke_cli("db.stamp", "--env", "prod", "--dry-run", env=env_for(tiers, tmp_path), under_pytest=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"[INT] postgresql://postgres@/{tiers.names[Tier.INT]}")
    assert "forced to INT under pytest" in proc.stdout
