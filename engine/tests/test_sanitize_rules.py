"""`sql:` sanitizing rules: exactly one expression over the table's own columns, re-rendered, never pasted."""

from __future__ import annotations

from pathlib import Path

import pytest
from dbguard.errors import Refused
from dbguard.refresh.rules import LiveColumn, LiveTable, MaskRule, Policy, check_coverage, load_policy
from dbguard.refresh.safe_sql import render

from tests.support.setup import make_settings


@pytest.mark.parametrize(
    "text, rendered",
    [
        ("upper(kind)", 'upper(t."kind")'),
        ("left(note, 0)", 'left(t."note", 0)'),
        ("'{}'::jsonb", "('{}'::text)::jsonb"),
        ("-1.5e3 + id * 2", '((- 1.5e3) + (t."id" * 2))'),
        ('"Odd Name" IS NOT NULL AND NOT true', '((t."Odd Name" IS NOT NULL) AND (NOT TRUE))'),
        ("round(price::numeric, 2)::double precision", '(round((t."price")::numeric, 2))::double precision'),
        (
            "CASE WHEN kind = 'it''s' THEN 'x' ELSE coalesce(note, '') || '-' END",
            "(CASE WHEN (t.\"kind\" = 'it''s'::text) THEN 'x'::text ELSE (coalesce(t.\"note\", ''::text) || "
            "'-'::text) END)",
        ),
    ],
)
def test_one_expression_is_parsed_and_rendered_from_its_tree(text: str, rendered: str) -> None:
    rule = MaskRule.parse(f"sql:{text}", "audit_events.note")
    assert rule.expression is not None
    assert render(rule.expression).as_string(None) == rendered


@pytest.mark.parametrize(
    "text, reason",
    [
        (
            "COMMIT; BEGIN READ WRITE; CREATE TABLE pwned (i int); UPDATE dbguard.tier_stamp SET tier = 'stg'",
            "';' at character 7 is not allowed",
        ),
        ("NULL)::text FROM ONLY audit_events t) TO STDOUT; COMMIT", "';' at character 48 is not allowed"),
        ("(SELECT email FROM users LIMIT 1)", "'email' at character 9 is not allowed here"),
        ("pg_sleep(10)", "the function 'pg_sleep' is not in the allowed list"),
        ("set_config('default_transaction_read_only', 'off', false)", "the function 'set_config'"),
        ("current_setting('dbguard.sanitize_key')", "the function 'current_setting'"),
        ("note -- a comment", "a comment ('--')"),
        ("note /* a comment */", "a comment ('/*')"),
        ("$$x$$", "'$' at character 1 is not allowed"),
        ("E'\\x41'", "is not allowed here"),
        ("note::regclass", "the type 'regclass' is not in the allowed list"),
        ("upper(kind", "the end is not allowed here (expected ')')"),
        ("  ", "it is empty"),
    ],
)
def test_anything_but_one_expression_is_refused_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        MaskRule.parse(f"sql:{text}", "audit_events.note")
    line = refused.value.one_line()
    assert "the sql: rule for audit_events.note is not one SQL expression" in line and reason in line
    assert "\n" not in line


def test_a_rule_may_name_only_its_own_tables_columns() -> None:
    table = LiveTable("public", "audit_events", (LiveColumn("id", "bigint", "N", "int8"),))
    policy = Policy({("public", "audit_events"): {"id": MaskRule.parse("sql:id + secret_column", "audit_events.id")}})
    with pytest.raises(Refused, match=r"names secret_column, not a column of public\.audit_events"):
        check_coverage(policy, [table])


@pytest.mark.parametrize(
    "text, refusal",
    [
        ('[tables.users]\nemail = "keep"\n', "would keep the value of users.email"),
        ('[tables.users]\nphone = "sql:full_name"\n', "would read full_name into users.phone"),
        ('[tables.projects]\nname = "sql:left(description, 20)"\n', "would read description into projects.name"),
    ],
)
def test_a_policy_file_may_not_weaken_a_class_the_models_declare(tmp_path: Path, text: str, refusal: str) -> None:
    """SANITIZE_POLICY may come from a .env an agent can write: only the models can call a column not personal."""
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    with pytest.raises(Refused) as exc:
        load_policy(make_settings(tmp_path, SANITIZE_POLICY=str(policy)))
    assert refusal in exc.value.message and "may not weaken a declared class" in exc.value.message
    assert "PII.NONE in the models" in (exc.value.fix or "")


def test_a_policy_file_may_still_mask_a_declared_column_its_own_way(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[tables.users]\nemail = "fixed:someone@example.com"\nfull_name = "sql:\'Person \' || id"\n')
    rules = load_policy(make_settings(tmp_path, SANITIZE_POLICY=str(policy))).tables[("public", "users")]
    assert str(rules["email"]) == "fixed:someone@example.com" and rules["full_name"].kind == "sql"
