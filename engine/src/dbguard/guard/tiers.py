"""The three tiers and how a user names them."""

from __future__ import annotations

from enum import StrEnum

from dbguard.errors import Refused


class Tier(StrEnum):
    INT = "int"
    STG = "stg"
    PROD = "prod"

    @property
    def badge(self) -> str:
        return f"[{self.value.upper()}]"

    @property
    def url_variable(self) -> str:
        return f"{self.value.upper()}_DATABASE_URL"


TIER_COLOURS = {Tier.INT: "green", Tier.STG: "yellow", Tier.PROD: "red"}

# APP_ENV's spellings: the tier the app itself runs against (guard/forced_int.app_tier; checked by settings)
APP_ENV_TIERS = {
    "int": Tier.INT,
    "test": Tier.INT,
    "stg": Tier.STG,
    "staging": Tier.STG,
    "dev": Tier.STG,
    "development": Tier.STG,
    "prod": Tier.PROD,
    "production": Tier.PROD,
}


def parse_tier(value: str | Tier | None) -> Tier:
    """Case-insensitive; `None` means the default tier, INT."""
    if value is None:
        return Tier.INT
    if isinstance(value, Tier):
        return value
    try:
        return Tier(value.strip().lower())
    except ValueError:
        known = ", ".join(t.value for t in Tier)
        raise Refused(
            f"unknown tier {value!r}: the tiers are {known}", "pass --env int, --env stg or --env prod"
        ) from None
