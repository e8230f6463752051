"""Tier configuration: which target each tier uses, and whether the configuration is sane.

A tier's URL comes from <TIER>_DATABASE_URL; where INT or STG has none, the embedded default
serves. PROD falls back to the embedded stand-in only on a laptop set-up (no STG URL either);
anywhere else an unset PROD_DATABASE_URL is an error when PROD is asked for.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from itertools import combinations

from dotenv import dotenv_values

from dbguard.cluster.embedded import EmbeddedCluster
from dbguard.errors import OpsError, Refused
from dbguard.guard.targets import Target, parse_database_url
from dbguard.guard.tiers import Tier
from dbguard.settings import Settings

INT_NAME_MARKERS = ("test", "int")


def target_for(settings: Settings, tier: Tier) -> Target:
    """The target of `tier`, or a Refused naming the variable to set."""
    variable = tier.url_variable
    url = settings.url(variable)
    if url:
        return parse_database_url(url, tier=tier, source=variable)
    if tier is Tier.PROD and settings.url(Tier.STG.url_variable):
        raise Refused(
            "PROD was asked for but PROD_DATABASE_URL is not set",
            "set PROD_DATABASE_URL in the environment or .env (see .env.example)",
        )
    return EmbeddedCluster.from_settings(settings).target(tier)


def all_targets(settings: Settings) -> dict[Tier, Target | OpsError]:
    out: dict[Tier, Target | OpsError] = {}
    for tier in Tier:
        try:
            out[tier] = target_for(settings, tier)
        except OpsError as exc:
            out[tier] = exc
    return out


@dataclass(frozen=True)
class Finding:
    """One configuration or safety check, pass or fail, with the fix."""

    check: str
    ok: bool
    message: str
    fix: str = ""
    required: bool = True
    tiers: tuple[Tier, ...] = ()


def distinct_findings(targets: dict[Tier, Target | OpsError]) -> list[Finding]:
    found = []
    for a, b in combinations(Tier, 2):
        ta, tb = targets.get(a), targets.get(b)
        if not isinstance(ta, Target) or not isinstance(tb, Target):
            continue
        same = ta.identity() == tb.identity()
        host, port, db = ta.identity()
        found.append(
            Finding(
                f"{a.value.upper()} and {b.value.upper()} are different databases",
                not same,
                f"{a.url_variable if not ta.embedded else a.value.upper()} and "
                f"{b.url_variable if not tb.embedded else b.value.upper()} both point at {host}:{port}/{db}"
                if same
                else f"{ta.dbname} vs {tb.dbname}",
                f"give {b.value.upper()} its own database (change {b.url_variable})",
                tiers=(a, b),
            )
        )
    return found


def int_name_finding(target: Target) -> Finding:
    ok = any(marker in target.dbname.lower() for marker in INT_NAME_MARKERS)
    return Finding(
        "INT database name says it is for tests",
        ok,
        f"INT database is '{target.dbname}'",
        "use a database whose name contains 'test' or 'int' for INT_DATABASE_URL",
        tiers=(Tier.INT,),
    )


def prod_tls_finding(target: Target) -> Finding:
    ok = target.is_local or target.tls_required
    sslmode = target.params.get("sslmode", "unset (libpq default: prefer)")
    return Finding(
        "a remote PROD is reached over TLS",
        ok,
        "PROD is local" if target.is_local else f"PROD is remote, sslmode={sslmode}",
        "add ?sslmode=require (or verify-full) to PROD_DATABASE_URL",
        tiers=(Tier.PROD,),
    )


def env_tracked_finding(settings: Settings) -> Finding:
    try:
        proc = subprocess.run(
            ["git", "-C", str(settings.root), "ls-files", "--error-unmatch", ".env"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        tracked = proc.returncode == 0
    except OSError:
        tracked = False
    return Finding(
        ".env is not tracked by git",
        not tracked,
        ".env is committed: its secrets are in the history" if tracked else ".env is not in the index",
        "git rm --cached .env, rotate every password it held, and keep it in .gitignore",
    )


_PLACEHOLDER = re.compile(
    r"^(|\*+|x+|<[^>]*>|\$\{[^}]*\}|change[-_]?me.*|example.*|placeholder.*|password|secret|"
    r"postgres|app|dev|local|test|your[-_].*)$",
    re.IGNORECASE,
)
_SECRET_KEY = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|SALT)$", re.IGNORECASE)


def env_example_findings(settings: Settings) -> Finding:
    path = settings.root / ".env.example"
    if not path.exists():
        return Finding(
            ".env.example documents the settings",
            False,
            ".env.example is missing",
            "restore .env.example from the template",
            required=False,
        )
    suspicious = []
    for key, value in dotenv_values(path).items():
        if not value:
            continue
        if key.endswith("_DATABASE_URL"):
            match = re.match(r"^[^:]+://[^:/@]*:([^@]*)@", value)
            if match and not _PLACEHOLDER.match(match.group(1)):
                suspicious.append(key)
        elif _SECRET_KEY.search(key) and not _PLACEHOLDER.match(value):
            suspicious.append(key)
    return Finding(
        ".env.example holds no real secrets",
        not suspicious,
        f"real-looking secrets in: {', '.join(suspicious)}" if suspicious else "placeholders only",
        "replace them with placeholders such as change-me, and rotate the real ones",
    )


def config_findings(settings: Settings, targets: dict[Tier, Target | OpsError] | None = None) -> list[Finding]:
    """Every configuration check (no database needed)."""
    targets = targets if targets is not None else all_targets(settings)
    found: list[Finding] = []
    for tier, target in targets.items():
        if isinstance(target, OpsError):
            found.append(
                Finding(
                    f"{tier.url_variable} is usable",
                    False,
                    target.message,
                    target.fix or "",
                    required=tier is not Tier.PROD or "not set" not in target.message,
                    tiers=(tier,),
                )
            )
    found += distinct_findings(targets)
    int_target = targets.get(Tier.INT)
    if isinstance(int_target, Target):
        found.append(int_name_finding(int_target))
    prod = targets.get(Tier.PROD)
    if isinstance(prod, Target):
        found.append(prod_tls_finding(prod))
    found.append(env_tracked_finding(settings))
    found.append(env_example_findings(settings))
    return found
