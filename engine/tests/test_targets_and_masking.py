"""Tier names, URL parsing, database identity and password masking (no database needed)."""

from __future__ import annotations

import pytest
from dbguard.errors import Refused
from dbguard.guard.masking import mask_text, remember_secret
from dbguard.guard.targets import parse_database_url
from dbguard.guard.tiers import Tier, parse_tier


@pytest.mark.parametrize("value, tier", [("int", Tier.INT), ("STG", Tier.STG), (" Prod ", Tier.PROD), (None, Tier.INT)])
def test_tiers_are_case_insensitive_and_default_to_int(value: str | None, tier: Tier) -> None:
    assert parse_tier(value) is tier


def test_unknown_tier_is_refused_with_the_list_of_tiers() -> None:
    with pytest.raises(Refused) as err:
        parse_tier("production")
    assert err.value.one_line() == (
        "unknown tier 'production': the tiers are int, stg, prod -> pass --env int, --env stg or --env prod"
    )


def test_url_schemes_and_errors() -> None:
    for url in ("postgresql://a@h/db", "postgres://a@h/db", "postgresql+psycopg://a@h/db"):
        assert parse_database_url(url, tier=Tier.STG, source="STG_DATABASE_URL").dbname == "db"
    with pytest.raises(Refused, match="STG_DATABASE_URL uses the scheme 'mysql': only PostgreSQL"):
        parse_database_url("mysql://u:pw@h/db", tier=Tier.STG, source="STG_DATABASE_URL")
    with pytest.raises(Refused, match="STG_DATABASE_URL is not a database URL"):
        parse_database_url("localhost:5432/app", tier=Tier.STG, source="STG_DATABASE_URL")
    with pytest.raises(Refused, match="STG_DATABASE_URL has a port that is not a number"):
        parse_database_url("postgresql://u:Hunter2-secret@h:abc/db", tier=Tier.STG, source="STG_DATABASE_URL")
    with pytest.raises(Refused, match="names no database"):
        parse_database_url("postgresql://u@h", tier=Tier.STG, source="STG_DATABASE_URL")


def test_malformed_url_message_never_repeats_the_password() -> None:
    with pytest.raises(Refused) as err:
        parse_database_url(
            "postgresql://u:Malformed-Pw-77@h/db?bogus_option=1", tier=Tier.PROD, source="PROD_DATABASE_URL"
        )
    assert "PROD_DATABASE_URL is malformed" in err.value.message
    assert "Malformed-Pw-77" not in err.value.one_line()


def test_identity_folds_every_local_spelling() -> None:
    def ident(url: str) -> tuple[str, int, str]:
        return parse_database_url(url, tier=Tier.INT, source="X").identity()

    same = {
        ident("postgresql://a@localhost/app"),
        ident("postgresql://a@127.0.0.1:5432/app"),
        ident("postgresql://a@[::1]:5432/app"),
        ident("postgresql://a@/app?host=/var/run/postgresql"),
        ident("postgresql://b:pw@localhost:5432/app?sslmode=disable"),
    }
    assert same == {("local", 5432, "app")}
    assert ident("postgresql://a@localhost:5433/app") != ident("postgresql://a@localhost/app")
    assert ident("postgresql://a@db.example.com/app") == ("db.example.com", 5432, "app")


def test_masked_target_shows_no_password() -> None:
    target = parse_database_url(
        "postgresql://app:S3cret-Value@db.example.com:5432/app_prod?sslmode=require",
        tier=Tier.PROD,
        source="PROD_DATABASE_URL",
    )
    assert target.masked() == "postgresql://app:***@db.example.com:5432/app_prod?sslmode=require"
    assert target.tls_required and not target.is_local


@pytest.mark.parametrize(
    "text, expected",
    [
        ("postgresql://app:pa55word@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgres://u:p%40ss@h/x and more", "postgres://u:***@h/x and more"),
        (
            "postgresql://h/x?user=u&password=qwerty123&sslmode=require",
            "postgresql://h/x?user=u&password=***&sslmode=require",
        ),
        ("host=db user=app password=qwerty123 dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password = 'with space' dbname=x", "host=db password = *** dbname=x"),
        ("PGPASSWORD=hunter22 pg_dump", "PGPASSWORD=*** pg_dump"),
        ("no secret here: user=app", "no secret here: user=app"),
    ],
)
def test_mask_text_patterns(text: str, expected: str) -> None:
    assert mask_text(text) == expected


def test_known_secrets_are_masked_anywhere() -> None:
    remember_secret("Zebra-Canary-0042")
    assert mask_text('FATAL: something mentioned "Zebra-Canary-0042" oddly') == 'FATAL: something mentioned "***" oddly'
    assert "Zebra" not in mask_text("encoded Zebra-Canary-0042")
