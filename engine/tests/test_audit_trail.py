"""The audit trail survives its own deletion: a line before the work, a line after, anchors in the databases."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from dbguard.audit.log import GENESIS, AuditLog, encode, line_hash
from dbguard.guard.tiers import Tier

from tests.support.cli import cli_environment, invoke_cli, module_argv
from tests.support.kill import kill_at
from tests.support.project import FIXTURE_ROOT
from tests.support.setup import Tiers, state_values


def env_for(tiers: Tiers, tmp_path: Path) -> dict[str, str]:
    return state_values(tmp_path) | {t.url_variable: u for t, u in tiers.urls.items()}


def audit_path(tmp_path: Path) -> Path:
    return Path(state_values(tmp_path)["AUDIT_LOG"])


def write_some_history(tiers: Tiers, env: dict[str, str]) -> None:
    for args in (["db.migrate", "--env", "stg"], ["db.seed", "--env", "stg", "--scenario", "minimal"], ["db.status"]):
        proc = invoke_cli(*args, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def verify(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return invoke_cli("db.audit", "--verify", env=env)


def test_a_run_leaves_a_line_before_its_work_and_one_after(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    write_some_history(tiers, env)
    lines = [json.loads(raw) for raw in audit_path(tmp_path).read_text().splitlines()]
    migrate = [(line["outcome"], line["run"]) for line in lines if line["task"] == "migrate"]
    assert [o for o, _ in migrate] == ["started", "ok"] and migrate[0][1] == migrate[1][1]
    assert [line["outcome"] for line in lines if line["task"] == "status"] == ["ok"]  # a report: one line
    proc = verify(env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hash chain unbroken, matches STG (line" in proc.stdout


def test_a_killed_run_still_shows_as_started_and_never_ended(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    invoke_cli("db.migrate", "--env", "stg", env=env)
    kill_at("reset:schema-dropped", ["db.reset", "--env", "stg", "--scenario", "minimal"], env, tmp_path)
    lines = [json.loads(raw) for raw in audit_path(tmp_path).read_text().splitlines()]
    assert lines[-1]["task"] == "reset" and lines[-1]["outcome"] == "started"
    proc = invoke_cli("db.audit", env=env)
    assert "started, never ended" in proc.stdout


def test_deleting_the_log_is_reported(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    write_some_history(tiers, env)
    log = AuditLog(audit_path(tmp_path))
    log.path.unlink()
    log.head_path.unlink()
    proc = verify(env)
    assert proc.returncode == 1
    assert f"STG database {tiers.names[Tier.STG]} records line" in proc.stdout + proc.stderr
    assert "lines were deleted, or the log was truncated or replaced" in proc.stdout + proc.stderr


def test_truncating_the_log_and_its_head_file_is_reported(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    write_some_history(tiers, env)
    log = AuditLog(audit_path(tmp_path))
    raws = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(raws[:2]))
    last = json.loads(raws[1])
    log.head_path.write_text(json.dumps({"seq": last["seq"], "hash": line_hash(raws[1])}) + "\n")
    proc = verify(env)
    assert proc.returncode == 1 and "lines were deleted" in proc.stdout + proc.stderr


def test_a_log_rewritten_and_rehashed_as_a_whole_is_reported(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    write_some_history(tiers, env)
    log = AuditLog(audit_path(tmp_path))
    lines = [json.loads(raw) for raw in log.path.read_text().splitlines()]
    prev, out = GENESIS, []
    for line in lines:  # hide the seed: rewrite it as a status run, and re-chain every line after it
        if line["task"] == "seed":
            line["task"] = "status"
        line["prev"] = prev
        raw = encode(line)
        out.append(raw)
        prev = line_hash(raw)
    log.path.write_bytes(b"".join(out))
    log.head_path.write_text(json.dumps({"seq": lines[-1]["seq"], "hash": prev}) + "\n")
    assert log.verify().ok  # the file alone looks intact...
    proc = verify(env)
    assert proc.returncode == 1 and "the log was rewritten" in proc.stdout + proc.stderr  # ...the database knows


def test_a_run_that_cannot_write_its_first_line_does_nothing(tiers: Tiers, tmp_path: Path) -> None:
    env = env_for(tiers, tmp_path)
    write_some_history(tiers, env)
    before = tiers.sql(Tier.STG, "SELECT count(*) FROM users")
    size_kb = audit_path(tmp_path).stat().st_size // 1024
    # the log is already at the file size limit: as on a full disk, the next write fails
    command = f"ulimit -f {size_kb}; exec {' '.join(module_argv('invoke', 'db.reset', '--env', 'stg'))}"
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=FIXTURE_ROOT,
        env=cli_environment(env),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "the audit log" in proc.stderr and "could not be written" in proc.stderr, proc.stdout + proc.stderr
    assert proc.returncode == 2 and "nothing was done" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert tiers.sql(Tier.STG, "SELECT count(*) FROM users") == before
