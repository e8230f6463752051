"""The pass travels: the ladder's report, signed and bound to the migration files and the PROD it checked,
opens `db.migrate --env prod --ladder-report FILE` on another machine; nothing else about it does."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from dbguard.cli.runner import EXIT_OK, EXIT_REFUSED
from dbguard.guard.tiers import Tier
from dbguard.ladder.gate import KEY_VARIABLE, sign
from dbguard.ladder.rungs import main
from dbguard.migrations import migrate
from dbguard.settings import Settings

from tests.support.cli import invoke_cli
from tests.support.project import FIXTURE_ROOT
from tests.support.setup import RunResult, Tiers, make_tiers, robot, run, state_values

KEY = "0123456789abcdef0123456789abcdef-ladder-key"
FIX = "nox -s migrations -- --report"


def keyed(settings: Settings, key: str | None = KEY, **values: str) -> Settings:
    """`settings` whose real environment holds `key` as LADDER_REPORT_KEY (None: no key)."""
    environ = {k: v for k, v in settings.environ.items() if k != KEY_VARIABLE}
    return replace(settings, environ=environ | ({KEY_VARIABLE: key} if key else {})).with_values(**values)


@pytest.fixture
def ladder_settings(tiers: Tiers, tmp_path: Path) -> Settings:
    folder = tmp_path / "migrations"
    shutil.copytree(FIXTURE_ROOT / "migrations", folder, ignore=shutil.ignore_patterns("__pycache__"))
    return keyed(tiers.settings, MIGRATIONS_DIR=str(folder), LADDER_RECORD=str(tmp_path / "ladder-runner.jsonl"))


def deployer(settings: Settings, tmp_path: Path, key: str | None = KEY) -> Settings:
    """Another machine: the same files and PROD, none of the ladder's records."""
    return keyed(settings, key, LADDER_RECORD=str(tmp_path / "deployer" / "ladder-passes.jsonl"))


def migrate_prod(settings: Settings, tiers: Tiers, report: Path | None) -> RunResult:
    return run(
        settings,
        "migrate",
        "prod",
        robot(),
        lambda ctx: migrate.migrate_task(ctx, ladder_report=str(report) if report else None),
        confirm=tiers.names[Tier.PROD],
    )


def refused(result: RunResult, tiers: Tiers, message: str, fix: str = FIX) -> None:
    assert result.code == EXIT_REFUSED, result.text
    errors = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and message in errors[0] and fix in errors[0], result.stderr
    assert "Traceback" not in result.text and KEY not in result.text
    assert tiers.sql(Tier.PROD, "SELECT to_regclass('public.alembic_version') IS NULL") == "t"  # PROD untouched


def edited(report: Path, into: Path, **changes: object) -> Path:
    into.write_text(json.dumps(json.loads(report.read_text()) | changes))
    return into


def test_the_report_opens_prod_on_another_machine_and_nothing_else_does(
    tiers: Tiers, ladder_settings: Settings, tmp_path: Path
) -> None:
    report = tmp_path / "ladder.json"
    assert main(["--report", str(report)], settings=ladder_settings) == EXIT_OK
    body = json.loads(report.read_text())
    assert (body["gate"], body["passed"], body["head"], body["not_verified"]) == ("open", True, "0002", [])
    assert body["prod"]["database"] == tiers.names[Tier.PROD] and body["prod"]["revision"] is None
    assert body["prod"]["system_identifier"] == tiers.sql(
        Tier.PROD, "SELECT system_identifier FROM pg_control_system()"
    )
    assert body["mac"].startswith("hmac-sha256:") and KEY not in report.read_text()

    other = deployer(ladder_settings, tmp_path)
    refused(migrate_prod(other, tiers, None), tiers, "the ladder has never passed", "nox -s migrations")

    cases = {
        "does not exist": tmp_path / "nope.json",
        "is not a ladder report (not JSON)": tmp_path / "garbage.json",
        "was changed after the ladder wrote it": edited(report, tmp_path / "edited.json", written_at="2099-01-01"),
        "is not signed (its ladder ran without LADDER_REPORT_KEY)": tmp_path / "unsigned.json",
        "is not a ladder report of format": edited(report, tmp_path / "format.json", format="something/9"),
    }
    (tmp_path / "garbage.json").write_text("{'gate': 'open'")
    unsigned = {k: v for k, v in json.loads(report.read_text()).items() if k not in ("mac", "key_id")}
    (tmp_path / "unsigned.json").write_text(json.dumps(sign(unsigned, None)))
    for message, path in cases.items():
        refused(migrate_prod(other, tiers, path), tiers, message)
    refused(
        migrate_prod(deployer(ladder_settings, tmp_path, "another-key-" + "x" * 32), tiers, report),
        tiers,
        "was signed with another LADDER_REPORT_KEY",
    )
    for key, message in ((None, "LADDER_REPORT_KEY is not set"), ("short", "LADDER_REPORT_KEY is too short")):
        refused(migrate_prod(deployer(ladder_settings, tmp_path, key), tiers, report), tiers, message, "token_hex")

    # another PROD database (same server, same files): the report checked that one, not this one
    elsewhere = make_tiers(tmp_path / "elsewhere", tiers.local, tiers.prod)
    moved = keyed(elsewhere.settings, MIGRATIONS_DIR=ladder_settings.get("MIGRATIONS_DIR"))
    result = migrate_prod(deployer(moved, tmp_path), elsewhere, report)
    refused(result, elsewhere, f"checked another PROD database, '{tiers.names[Tier.PROD]}'")

    result = migrate_prod(other, tiers, report)
    assert result.code == EXIT_OK, result.text
    assert f"(report {report})" in result.stdout
    assert tiers.sql(Tier.PROD, "SELECT version_num FROM alembic_version") == "0002"


def test_a_report_that_did_not_verify_prod_or_failed_or_is_stale_opens_nothing(
    tiers: Tiers, ladder_settings: Settings, tmp_path: Path
) -> None:
    from dbguard.migrations.schema import sa_connection, upgrade

    other = deployer(ladder_settings, tmp_path)
    closed = tmp_path / "closed.json"  # PROD unreachable from the ladder's runner
    unreachable = ladder_settings.with_values(PROD_DATABASE_URL="postgresql://app:x@127.0.0.1:1/gone_prod")
    assert main(["--report", str(closed)], settings=unreachable) == 1
    assert json.loads(closed.read_text())["gate"] == "closed"
    refused(migrate_prod(other, tiers, closed), tiers, "did not verify PROD: 4 PROD check: PROD reachable")

    report = tmp_path / "ladder.json"
    assert main(["--report", str(report)], settings=ladder_settings) == EXIT_OK
    path = Path(ladder_settings.get("MIGRATIONS_DIR")) / "versions" / "0002_user_contact_and_task_completion.py"
    original = path.read_text()
    path.write_text(original + "\n# edited after the ladder ran\n")
    refused(migrate_prod(other, tiers, report), tiers, "was made for other migration files than these")
    path.write_text(original)

    with sa_connection(tiers.target(Tier.PROD)) as conn, conn.begin():
        upgrade(tiers.settings, conn, "0001")  # PROD moved after the ladder checked it
    result = migrate_prod(other, tiers, report)
    assert result.code == EXIT_REFUSED and "PROD is at 0001 now, and the ladder report" in result.stderr
    assert "checked it at base" in result.stderr and FIX in result.stderr
    assert tiers.sql(Tier.PROD, "SELECT version_num FROM alembic_version") == "0001"

    failing = tmp_path / "failing.json"
    (path.parent / "0003_test.py").write_text(
        '"""x"""\nrevision = "0003"\ndown_revision = "0002"\n\n\ndef upgrade() -> None:\n    pass\n\n\n'
        "def downgrade() -> None:\n    pass\n"
    )
    assert main(["--report", str(failing)], settings=ladder_settings) == 1
    result = migrate_prod(other, tiers, failing)
    assert result.code == EXIT_REFUSED and "failed check(s), first: 1 history: every revision" in result.stderr
    assert tiers.sql(Tier.PROD, "SELECT version_num FROM alembic_version") == "0001"


def test_the_ci_flow_through_the_cli(tiers: Tiers, tmp_path: Path) -> None:
    """The workflow's two jobs: `invoke db.ladder --report ladder.json` on one runner, then
    `invoke db.migrate --env prod --ladder-report ladder.json --confirm NAME` on another."""
    report = tmp_path / "ladder.json"
    runner = state_values(tmp_path / "runner") | {t.url_variable: u for t, u in tiers.urls.items()}
    proc = invoke_cli("db.ladder", "--report", str(report), env=runner | {KEY_VARIABLE: KEY})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    deploy = state_values(tmp_path / "deploy") | {t.url_variable: u for t, u in tiers.urls.items()}
    name = tiers.names[Tier.PROD]
    migrate_argv = ("db.migrate", "--env", "prod", "--ladder-report", str(report), "--confirm", name)
    proc = invoke_cli(*migrate_argv, env=deploy)
    assert proc.returncode == 2 and "LADDER_REPORT_KEY is not set" in proc.stderr and "Traceback" not in proc.stderr
    proc = invoke_cli(*migrate_argv, env=deploy | {KEY_VARIABLE: KEY})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tiers.sql(Tier.PROD, "SELECT version_num FROM alembic_version") == "0002"


def test_every_gate_and_report_message_is_in_the_troubleshooting_page() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text()
    for fragment in (
        "PROD migrations need a passing ladder for exactly these migration files",
        "it passed against another PROD database",
        "it passed when PROD was at X, and PROD is at Y now",
        "PROD was not verified, so db.migrate --env prod stays closed",
        "the ladder report F does not exist",
        "is not a ladder report",
        "LADDER_REPORT_KEY is not set, so the ladder report F cannot be checked",
        "LADDER_REPORT_KEY is too short",
        "the ladder report F is not signed",
        "was signed with another LADDER_REPORT_KEY",
        "the ladder report F was changed after the ladder wrote it",
        "the ladder report F records N failed check(s)",
        "did not verify PROD",
        "the ladder report F was made for other migration files than these",
        "checked another PROD database",
        "PROD is at X now, and the ladder report F checked it at Y",
        "the report is not signed (LADDER_REPORT_KEY is not set)",
        "for temporary secrets is not this user's own with mode 0700",
    ):
        assert fragment in page, fragment
