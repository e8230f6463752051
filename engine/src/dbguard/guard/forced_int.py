"""Tests are forced to INT: under pytest no variable or flag can point the tools at STG or PROD.

"Under pytest" is read from the environment pytest sets for the whole session and its child
processes (PYTEST_VERSION, PYTEST_CURRENT_TEST), so `invoke` started from a test is forced too.
The suite's own tests of STG and PROD behaviour build Settings with an explicit environment
for throwaway clusters; nothing read from the real environment can reach a real STG or PROD.
"""

from __future__ import annotations

from collections.abc import Mapping

from dbguard.errors import OpsError, Refused
from dbguard.guard.config import target_for
from dbguard.guard.door import report_target
from dbguard.guard.stamp import read_stamp
from dbguard.guard.targets import Target
from dbguard.guard.tiers import APP_ENV_TIERS, Tier
from dbguard.settings import Settings

PYTEST_MARKERS = ("PYTEST_VERSION", "PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER")


def under_pytest(environ: Mapping[str, str]) -> bool:
    return any(marker in environ for marker in PYTEST_MARKERS)


def forced_tier(requested: Tier, environ: Mapping[str, str]) -> Tier:
    """INT under pytest, whatever was requested; otherwise the request."""
    return Tier.INT if under_pytest(environ) else requested


def app_tier(environ: Mapping[str, str]) -> Tier:
    """The tier the app itself runs against: APP_ENV or USE_STG/USE_PROD_DATABASE, INT under pytest."""
    if under_pytest(environ):
        return Tier.INT
    if (environ.get("USE_PROD_DATABASE") or "").lower() in {"1", "true", "yes"}:
        return Tier.PROD
    if (environ.get("USE_STG_DATABASE") or "").lower() in {"1", "true", "yes"}:
        return Tier.STG
    value = (environ.get("APP_ENV") or "int").lower()
    return APP_ENV_TIERS.get(value, Tier.INT)


def check_test_database(settings: Settings) -> Target:
    """Refuse to start a test run whose INT database is STG's, PROD's, or stamped anything but INT."""
    int_target = target_for(settings, Tier.INT)
    for other in (Tier.STG, Tier.PROD):
        try:
            other_target = target_for(settings, other)
        except OpsError:
            continue
        if other_target.identity() == int_target.identity():
            raise Refused(
                f"the test suite's INT database is also the {other.value.upper()} database ({int_target.describe()})",
                "point INT_DATABASE_URL at a database of its own",
            )
    if int_target.embedded:
        return int_target
    try:
        with report_target(settings, int_target).connect(read_only=True, timeout=5) as conn:
            stamp = read_stamp(conn)
    except OpsError:
        return int_target  # unreachable: the tests that need it will say so
    if stamp is not None and stamp.tier is not Tier.INT:
        raise Refused(
            f"the test suite's INT database {int_target.describe()} is stamped {stamp.tier.value.upper()}",
            "point INT_DATABASE_URL at a database stamped INT",
        )
    return int_target
