"""The guard on real PostgreSQL: policy table, stamps, configuration, callers, forced INT.

Every refusal test also asserts that the task body never ran and the database is untouched,
so each test fails if the guard is bypassed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dbguard.cli.runner import EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from dbguard.guard.policy import POLICY
from dbguard.guard.tiers import Tier

from tests.support.clusters import ThrowawayCluster
from tests.support.project import FIXTURE_ROOT
from tests.support.setup import Tiers, human, make_settings, make_tiers, robot, run, stamp_url

DENIED = [(op, tier) for op, row in POLICY.items() for tier, rule in row.items() if not rule.allowed]


def write_marker(ctx):  # type: ignore[no-untyped-def]
    """A body that writes, so a bypassed guard leaves evidence."""
    from dbguard.guard.connect import connect

    with connect(ctx.target) as conn:
        conn.execute("CREATE TABLE guard_bypassed (id int)")
    return 0


def marker_exists(tiers: Tiers, tier: Tier) -> bool:
    return tiers.sql(tier, "SELECT to_regclass('public.guard_bypassed') IS NOT NULL") == "t"


def audit_lines(tiers: Tiers) -> list[dict]:  # type: ignore[type-arg]
    path = Path(tiers.settings.get("AUDIT_LOG"))
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("operation, tier", DENIED, ids=[f"{o}-{t.value}" for o, t in DENIED])
def test_every_denied_cell_of_the_policy_table_is_refused(tiers: Tiers, operation: str, tier: Tier) -> None:
    result = run(
        tiers.settings, operation, tier.value, human(tiers.names[tier]), write_marker, confirm=tiers.names[tier]
    )
    assert result.code == EXIT_REFUSED
    assert not result.ran
    assert not marker_exists(tiers, tier)
    assert f"{operation} on {tier.value.upper()} is not allowed" in result.stderr
    assert audit_lines(tiers)[-1]["outcome"] == "refused"


@pytest.mark.parametrize("operation", ["seed", "reset"])
def test_no_flag_opens_seed_or_reset_on_prod(tiers: Tiers, operation: str) -> None:
    caller = human(tiers.names[Tier.PROD], agent=None, consent=tiers.names[Tier.PROD])
    result = run(tiers.settings, operation, "PROD", caller, write_marker, confirm=tiers.names[Tier.PROD])
    assert result.code == EXIT_REFUSED and not result.ran
    assert "no flag opens it" in result.stderr


def test_allowed_write_runs_and_is_audited(tiers: Tiers) -> None:
    result = run(tiers.settings, "seed", "stg", robot(), write_marker)
    assert result.code == EXIT_OK and result.ran
    assert marker_exists(tiers, Tier.STG)
    line = audit_lines(tiers)[-1]
    assert (line["task"], line["tier"], line["outcome"]) == ("seed", "stg", "ok")
    assert result.stdout.startswith("[STG] postgresql://postgres@/" + tiers.names[Tier.STG])


def test_missing_stamp_is_refused_with_the_fix(
    tmp_path: Path, local_server: ThrowawayCluster, prod_server: ThrowawayCluster
) -> None:
    tiers = make_tiers(tmp_path, local_server, prod_server, stamp=False)
    result = run(tiers.settings, "seed", "stg", robot(), write_marker)
    assert result.code == EXIT_REFUSED and not result.ran
    assert (
        f"database '{tiers.names[Tier.STG]}' has no tier stamp, so it cannot prove it is STG "
        "-> invoke db.stamp --env stg"
    ) in result.stderr


def test_a_database_stamped_prod_is_prod_whatever_variable_points_at_it(tiers: Tiers) -> None:
    tiers.local.create_database(tiers.names[Tier.STG] + "_realprod")
    url = tiers.local.socket_url(tiers.names[Tier.STG] + "_realprod")
    stamp_url(url, Tier.PROD, tiers.names[Tier.STG] + "_realprod")
    settings = tiers.settings.with_values(STG_DATABASE_URL=url)
    result = run(settings, "seed", "stg", robot(), write_marker)
    assert result.code == EXIT_REFUSED and not result.ran
    assert "is stamped PROD but was reached through STG_DATABASE_URL: it is treated as PROD" in result.stderr


def test_stamp_of_another_tier_or_a_copied_database_is_refused(tiers: Tiers) -> None:
    stamp_url(tiers.urls[Tier.STG], Tier.INT, tiers.names[Tier.STG])
    result = run(tiers.settings, "seed", "stg", robot(), write_marker)
    assert result.code == EXIT_REFUSED and "is stamped INT, not STG" in result.stderr
    assert "invoke db.stamp --env stg --force" in result.stderr

    copy = tiers.names[Tier.INT] + "_copy"
    tiers.local.psql("postgres", f'CREATE DATABASE "{copy}" TEMPLATE "{tiers.names[Tier.INT]}"')
    settings = tiers.settings.with_values(INT_DATABASE_URL=tiers.local.socket_url(copy))
    result = run(settings, "seed", "int", robot(), write_marker)
    assert result.code == EXIT_REFUSED and not result.ran
    assert f"carries the stamp written for '{tiers.names[Tier.INT]}' (it was copied or renamed)" in result.stderr


def test_two_tiers_on_one_database_are_refused_even_when_spelled_differently(tiers: Tiers) -> None:
    tcp_spelling = tiers.local.tcp_url(tiers.names[Tier.STG], host="localhost")
    settings = tiers.settings.with_values(INT_DATABASE_URL=tcp_spelling.replace("_stg", "_stg"))
    result = run(settings, "seed", "stg", robot(), write_marker)
    assert result.code == EXIT_REFUSED and not result.ran
    assert "both point at local" in result.stderr and "tiers must never share a database" in result.stderr


def test_int_database_name_must_say_it_is_for_tests(tiers: Tiers) -> None:
    tiers.local.create_database("payroll_x")
    url = tiers.local.socket_url("payroll_x")
    stamp_url(url, Tier.INT, "payroll_x")
    result = run(tiers.settings.with_values(INT_DATABASE_URL=url), "seed", "int", robot(), write_marker)
    assert result.code == EXIT_REFUSED and not result.ran
    assert "INT database 'payroll_x' does not say it is for tests" in result.stderr


def test_non_interactive_prod_migrate_needs_the_typed_name(tiers: Tiers) -> None:
    db = tiers.names[Tier.PROD]
    result = run(tiers.settings, "migrate", "prod", robot(), write_marker)
    assert result.code == EXIT_REFUSED and not result.ran
    assert f"needs the database name typed; this run is non-interactive -> pass --confirm {db}" in result.stderr
    result = run(tiers.settings, "migrate", "prod", robot(), write_marker, confirm="app_prod_typo")
    assert result.code == EXIT_REFUSED and not result.ran
    assert f"the confirmation 'app_prod_typo' does not match the database name '{db}'" in result.stderr
    result = run(tiers.settings, "migrate", "prod", robot(), lambda ctx: 0, confirm=db)
    assert result.code == EXIT_OK and result.ran


def test_interactive_typed_confirmation(tiers: Tiers) -> None:
    db = tiers.names[Tier.PROD]
    wrong = human("yes")
    result = run(tiers.settings, "migrate", "prod", wrong, lambda ctx: 0)
    assert result.code == EXIT_REFUSED and not result.ran
    assert wrong._prompts == [f"Type the database name '{db}' to migrate PROD: "]  # type: ignore[attr-defined]
    assert run(tiers.settings, "migrate", "prod", human(db), lambda ctx: 0).ran


def test_interactive_only_permission_is_never_given_to_a_non_interactive_run(tiers: Tiers) -> None:
    db = tiers.names[Tier.PROD]
    result = run(tiers.settings, "restore", "prod", robot(), write_marker, confirm=db)
    assert result.code == EXIT_REFUSED and not result.ran
    assert "is allowed only at an interactive terminal (no flag stands in for it)" in result.stderr
    assert run(tiers.settings, "restore", "prod", human(db), lambda ctx: 0).ran


def test_a_coding_agent_needs_human_consent_for_prod(tiers: Tiers) -> None:
    db = tiers.names[Tier.PROD]
    result = run(tiers.settings, "migrate", "prod", robot(agent="claude-code"), write_marker, confirm=db)
    assert result.code == EXIT_REFUSED and not result.ran
    assert "asked for by an automated agent (claude-code); it needs a human's consent" in result.stderr
    assert "stop and ask a human" in result.stderr
    assert "DB_HUMAN_CONSENT=" not in result.stderr and db not in result.stderr  # no value an agent could copy
    wrong = run(
        tiers.settings, "migrate", "prod", robot(agent="codex", consent="some_other_db"), write_marker, confirm=db
    )
    assert wrong.code == EXIT_REFUSED and not wrong.ran
    ok = run(tiers.settings, "migrate", "prod", robot(agent="codex", consent=db), lambda ctx: 0, confirm=db)
    assert ok.code == EXIT_OK and ok.ran
    # STG needs no human, so an agent works there freely
    assert run(tiers.settings, "migrate", "stg", robot(agent="codex"), lambda ctx: 0).ran


def test_consent_in_dotenv_is_ignored(tmp_path: Path, tiers: Tiers) -> None:
    from dbguard.guard.caller import detect_caller
    from dbguard.settings import load_settings

    env_file = tmp_path / "dotenv"
    env_file.write_text(f"DB_HUMAN_CONSENT={tiers.names[Tier.PROD]}\nCLAUDECODE=\n")
    settings = load_settings(FIXTURE_ROOT, environ={"CLAUDECODE": "1", "DB_TOOLS_ENV_FILE": str(env_file)})
    assert settings.values["DB_HUMAN_CONSENT"] == tiers.names[Tier.PROD]  # configuration may see it...
    caller = detect_caller(settings.environ, stdin_tty=False, stdout_tty=False)
    assert caller.agent == "claude-code" and caller.consent is None  # ...but the guard never takes it from a file


def test_tests_are_forced_to_int(tiers: Tiers) -> None:
    environ = {**tiers.settings.environ, "PYTEST_CURRENT_TEST": "x", "APP_ENV": "prod", "USE_PROD_DATABASE": "1"}
    settings = make_settings(
        Path(tiers.settings.get("AUDIT_LOG")).parent.parent,
        environ=environ,
        **{t.url_variable: u for t, u in tiers.urls.items()},
    )
    result = run(settings, "seed", "prod", robot(), write_marker)
    assert result.code == EXIT_OK
    assert result.contexts[0].tier is Tier.INT and result.contexts[0].target.dbname == tiers.names[Tier.INT]
    assert "forced to INT under pytest; --env prod ignored" in result.stdout
    assert marker_exists(tiers, Tier.INT) and not marker_exists(tiers, Tier.PROD)

    from dbguard.guard.forced_int import app_tier

    assert app_tier(environ) is Tier.INT
    assert app_tier({"APP_ENV": "prod"}) is Tier.PROD


def test_suite_refuses_an_int_database_stamped_otherwise(tiers: Tiers) -> None:
    from dbguard.errors import Refused
    from dbguard.guard.forced_int import check_test_database

    stamp_url(tiers.urls[Tier.INT], Tier.STG, tiers.names[Tier.INT])
    with pytest.raises(Refused, match="is stamped STG"):
        check_test_database(tiers.settings)
    with pytest.raises(Refused, match="is also the PROD database"):
        check_test_database(tiers.settings.with_values(INT_DATABASE_URL=tiers.urls[Tier.PROD]))


def test_unwritable_audit_log_refuses_to_run(tiers: Tiers, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    settings = tiers.settings.with_values(AUDIT_LOG=str(blocker / "audit.jsonl"))
    result = run(settings, "seed", "stg", robot(), write_marker)
    assert result.code == EXIT_REFUSED and not result.ran
    assert "audit.jsonl cannot be written (File exists); refusing to run unaudited" in result.stderr
    assert not marker_exists(tiers, Tier.STG)


def test_connection_failures_are_one_clear_line(tiers: Tiers, prod_server: ThrowawayCluster) -> None:
    from tests.support.clusters import free_port

    down = tiers.settings.with_values(STG_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x_stg")
    result = run(down, "seed", "stg", robot(), write_marker)
    assert result.code == EXIT_FAILED and "is not reachable" in result.stderr and "Traceback" not in result.text

    bad_pw = tiers.urls[Tier.PROD].replace(prod_server.password or "", "Wrong-Pass-123")
    result = run(tiers.settings.with_values(PROD_DATABASE_URL=bad_pw), "backup", "prod", robot(), write_marker)
    assert result.code == EXIT_REFUSED
    assert "wrong or missing password for user 'app'" in result.stderr and "Wrong-Pass-123" not in result.text

    missing = tiers.local.socket_url("no_such_db_stg")
    result = run(tiers.settings.with_values(STG_DATABASE_URL=missing), "seed", "stg", robot(), write_marker)
    assert result.code == EXIT_REFUSED and "database 'no_such_db_stg' does not exist" in result.stderr


def test_prod_not_configured_is_refused_when_stg_is_a_real_server(tiers: Tiers) -> None:
    settings = tiers.settings.with_values(PROD_DATABASE_URL=None)
    result = run(settings, "backup", "prod", robot(), write_marker)
    assert result.code == EXIT_REFUSED
    assert "PROD was asked for but PROD_DATABASE_URL is not set" in result.stderr
    line = audit_lines(tiers)[-1]
    assert line["outcome"] == "refused" and "PROD_DATABASE_URL is not set" in line["error"]
