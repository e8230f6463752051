"""Bad input, table-driven: every case ends in one line, a non-zero exit, no traceback, no secret, nothing lost.

The tiers are made once for the table (STG seeded), and each case checks STG's and PROD's contents
afterwards. The URLs carry a canary password; it must appear in no output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dbguard.guard.tiers import Tier

from tests.conftest import PROD_PASSWORD
from tests.support.cli import invoke_cli
from tests.support.clusters import ThrowawayCluster
from tests.support.setup import Tiers, make_tiers, state_values

CANARY = "Canary-9z@Pw:/%é"
QUOTED_CANARY = "Canary-9z%40Pw%3A%2F%25%C3%A9"


@dataclass
class World:
    tiers: Tiers
    tmp: Path
    env: dict[str, str]
    files: dict[str, Path] = field(default_factory=dict)

    def url(self, tier: Tier) -> str:
        return self.tiers.urls[tier]

    def fingerprint(self) -> str:
        stg = self.tiers.sql(
            Tier.STG, "SELECT count(*) || ':' || md5(string_agg(u::text, ',' ORDER BY id)) FROM users u"
        )
        prod = self.tiers.sql(Tier.PROD, "SELECT count(*) FROM pg_class WHERE relkind = 'r'")
        return hashlib.sha256(f"{stg}/{prod}".encode()).hexdigest()


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, local_server: ThrowawayCluster, prod_server: ThrowawayCluster
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bad-input")
    tiers = make_tiers(tmp, local_server, prod_server)
    env = state_values(tmp) | {t.url_variable: u for t, u in tiers.urls.items()}
    for args in (["db.migrate", "--env", "stg"], ["db.seed", "--env", "stg", "--scenario", "minimal"]):
        proc = invoke_cli(*args, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    files = {
        "unterminated": tmp / "unterminated.env",
        "latin1": tmp / "latin1.env",
        "garbage": tmp / "garbage.env",
        "bad_keep": tmp / "keep.env",
        "not_a_dump": tmp / "notes.dump",
        "empty_dump": tmp / "empty.dump",
    }
    files["unterminated"].write_text('INT_DATABASE_URL="postgresql://x\nSTG_DATABASE_URL=postgresql://y/app_stg\n')
    files["latin1"].write_bytes(b"APP_NAME=caf\xe9\n")
    files["garbage"].write_text("this is not a setting\n")
    files["bad_keep"].write_text("BACKUP_KEEP=lots\n")
    files["not_a_dump"].write_text("hello\n")
    files["empty_dump"].write_bytes(b"")
    yield World(tiers, tmp, env, files)


Env = Callable[[World], dict[str, str]]


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    env: Env = lambda w: {}
    expect: str = ""  # a fragment of the one error line (empty: any clear line)


def canary_url(w: World, tier: Tier, **changes: str) -> str:
    """The tier's URL with a password (the canary) and optional other parts."""
    port = w.tiers.prod.port if tier is Tier.PROD else w.tiers.local.port
    host = changes.get("host", "127.0.0.1")
    db = changes.get("db", w.tiers.names[tier])
    return f"postgresql://postgres:{QUOTED_CANARY}@{host}:{changes.get('port', port)}/{db}"


def prod_with_canary(w: World) -> dict[str, str]:
    return {"PROD_DATABASE_URL": w.tiers.prod.tcp_url(w.tiers.names[Tier.PROD], sslmode="require")}


CASES: dict[str, Case] = {
    # options: types, ranges, names
    "seed --seed abc": Case(("db.seed", "--seed", "abc"), expect="--seed must be a whole number, not 'abc'"),
    "seed --seed 1.5": Case(("db.seed", "--seed", "1.5"), expect="--seed must be a whole number"),
    "seed --seed -1": Case(("db.seed", "--seed", "-1"), expect="--seed must be at least 0"),
    "seed --scale abc": Case(("db.seed", "--scale", "abc"), expect="--scale must be a number, not 'abc'"),
    "seed --scale 0": Case(("db.seed", "--scale", "0"), expect="--scale must be at least"),
    "seed --scale -2": Case(("db.seed", "--scale", "-2"), expect="--scale must be at least"),
    "seed --scale 1e9": Case(("db.seed", "--scale", "1e9"), expect="is more than the most it takes, 1000"),
    "seed --scale nan": Case(("db.seed", "--scale", "nan"), expect="--scale must be a finite number"),
    "seed --scale inf": Case(("db.seed", "--scale", "inf"), expect="--scale must be a finite number"),
    "seed --scenario huge": Case(("db.seed", "--scenario", "huge"), expect="unknown scenario 'huge'"),
    "seed --env qa": Case(("db.seed", "--env", "qa"), expect="unknown tier 'qa'"),
    "seed --env empty": Case(("db.seed", "--env", ""), expect="unknown tier ''"),
    "seed --env prod": Case(("db.seed", "--env", "prod"), expect="PROD is never seeded"),
    "seed --env PROD": Case(("db.seed", "--env", "PROD"), expect="PROD is never seeded"),
    "seed stg without --append": Case(("db.seed", "--env", "stg"), expect="already holds rows"),
    "seed --bogus": Case(("db.seed", "--bogus"), expect="No idea what '--bogus' is"),
    "seed --seed (no value)": Case(("db.seed", "--seed"), expect="needed value and was not given one"),
    "no such task": Case(("db.nosuchtask",), expect="No idea what 'db.nosuchtask' is"),
    "reset --env prod": Case(("db.reset", "--env", "prod"), expect="PROD is never reset"),
    "reset --scale abc": Case(("db.reset", "--scale", "abc"), expect="--scale must be a number"),
    "reset --seed x": Case(("db.reset", "--seed", "x"), expect="--seed must be a whole number"),
    "reset --scenario nope": Case(("db.reset", "--scenario", "nope"), expect="unknown scenario 'nope'"),
    "reset --env qa": Case(("db.reset", "--env", "qa"), expect="unknown tier 'qa'"),
    "audit --limit -5": Case(("db.audit", "--limit", "-5"), expect="--limit must be at least 1"),
    "audit --limit abc": Case(("db.audit", "--limit", "abc"), expect="--limit must be a whole number"),
    "audit --limit 0": Case(("db.audit", "--limit", "0"), expect="--limit must be at least 1"),
    "audit --limit 1e3": Case(("db.audit", "--limit", "1e3"), expect="--limit must be a whole number"),
    "audit --limit huge": Case(("db.audit", "--limit", "10000000"), expect="is more than the most it takes"),
    "prune --keep -1": Case(("db.prune-backups", "--keep", "-1"), expect="--keep must be at least 1"),
    "prune --keep abc": Case(("db.prune-backups", "--keep", "abc"), expect="--keep must be a whole number"),
    "verify a missing file": Case(("db.verify", "/nonexistent/x.dump"), expect="x.dump"),
    "verify with no file named": Case(("db.verify",), expect="did not receive required positional arguments"),
    "verify latest with no backups": Case(("db.verify", "latest"), expect="there is no backup"),
    "verify a text file": Case(("db.verify", "{not_a_dump}")),
    "verify an empty file": Case(("db.verify", "{empty_dump}")),
    "restore a missing file": Case(("db.restore", "--env", "stg", "--from", "/nonexistent/x.dump"), expect="x.dump"),
    "restore a text file": Case(
        ("db.restore", "--env", "stg", "--from", "{not_a_dump}"),
        expect="has no manifest beside it: it is not a backup made by db.backup",
    ),
    "restore latest with none": Case(("db.restore", "--env", "stg"), expect="no backup"),
    "restore --env qa": Case(("db.restore", "--env", "qa"), expect="unknown tier 'qa'"),
    "restore into prod, no terminal": Case(("db.restore", "--env", "prod", "--from", "{not_a_dump}")),
    "migrate --to nonsense": Case(("db.migrate", "--env", "stg", "--to", "nonsense"), expect="nonsense"),
    "migrate --env qa": Case(("db.migrate", "--env", "qa"), expect="unknown tier 'qa'"),
    "migrate prod without the ladder": Case(("db.migrate", "--env", "prod", "--confirm", "x")),
    "migrate prod, wrong name": Case(("db.migrate", "--env", "prod", "--confirm", "wrong_name")),
    "stamp --env qa": Case(("db.stamp", "--env", "qa"), expect="unknown tier 'qa'"),
    "stamp prod, no name typed": Case(("db.stamp", "--env", "prod")),
    "stamp prod, wrong name": Case(("db.stamp", "--env", "prod", "--confirm", "wrong_name")),
    "refresh --env int": Case(("db.refresh-staging", "--env", "int"), expect="INT is not part of a staging refresh"),
    "refresh --env prod": Case(("db.refresh-staging", "--env", "prod"), expect="never its target"),
    "sanitize-check --env stg": Case(("db.sanitize-check", "--env", "stg")),
    "revision --env stg": Case(("db.revision", "--env", "stg", "-m", "x"), expect="against INT only"),
    "backup --env qa": Case(("db.backup", "--env", "qa"), expect="unknown tier 'qa'"),
    "ladder --report unwritable": Case(
        ("db.ladder", "--report", "/proc/nope/ladder.json"), expect="could not be written"
    ),
    # settings from the environment
    "BACKUP_KEEP=abc": Case(("db.status",), lambda w: {"BACKUP_KEEP": "abc"}, "BACKUP_KEEP must be a whole number"),
    "BACKUP_KEEP=0": Case(("db.status",), lambda w: {"BACKUP_KEEP": "0"}, "BACKUP_KEEP must be a whole number"),
    "BACKUP_KEEP=-3": Case(("db.status",), lambda w: {"BACKUP_KEEP": "-3"}, "BACKUP_KEEP must be a whole number"),
    "EMBEDDED_PG_PORT=abc": Case(("db.status",), lambda w: {"EMBEDDED_PG_PORT": "abc"}, "EMBEDDED_PG_PORT must be"),
    "EMBEDDED_PG_PORT=80": Case(("db.status",), lambda w: {"EMBEDDED_PG_PORT": "80"}, "EMBEDDED_PG_PORT must be"),
    "EMBEDDED_PG_PORT=99999": Case(("db.status",), lambda w: {"EMBEDDED_PG_PORT": "99999"}, "EMBEDDED_PG_PORT"),
    "MIGRATION_LOCK_TIMEOUT=soon": Case(
        ("db.status",), lambda w: {"MIGRATION_LOCK_TIMEOUT": "soon"}, "MIGRATION_LOCK_TIMEOUT must be"
    ),
    "MIGRATION_STATEMENT_TIMEOUT=-1": Case(
        ("db.status",), lambda w: {"MIGRATION_STATEMENT_TIMEOUT": "-1"}, "MIGRATION_STATEMENT_TIMEOUT must be"
    ),
    "MIGRATION_LOCK_TIMEOUT=injection": Case(
        ("db.migrate", "--env", "stg"),
        lambda w: {"MIGRATION_LOCK_TIMEOUT": "5s'; DROP TABLE users; --"},
        "MIGRATION_LOCK_TIMEOUT must be",
    ),
    "SWAP_WAIT_SECONDS=abc": Case(("db.status",), lambda w: {"SWAP_WAIT_SECONDS": "abc"}, "SWAP_WAIT_SECONDS must"),
    "SWAP_WAIT_SECONDS=-1": Case(("db.status",), lambda w: {"SWAP_WAIT_SECONDS": "-1"}, "SWAP_WAIT_SECONDS must"),
    "SWAP_WAIT_SECONDS=1e9": Case(("db.status",), lambda w: {"SWAP_WAIT_SECONDS": "1e9"}, "SWAP_WAIT_SECONDS must"),
    "APP_ENV=qa": Case(("db.status",), lambda w: {"APP_ENV": "qa"}, "APP_ENV must be one of"),
    "STG_TARGET_IS_SAFE=maybe": Case(("db.status",), lambda w: {"STG_TARGET_IS_SAFE": "maybe"}, "STG_TARGET_IS_SAFE"),
    "DB_TOOLS_ENV_FILE missing": Case(
        ("db.status",), lambda w: {"DB_TOOLS_ENV_FILE": "/nonexistent/.env"}, "which does not exist"
    ),
    "AUDIT_LOG unwritable": Case(
        ("db.seed", "--env", "stg", "--append"), lambda w: {"AUDIT_LOG": "/proc/nope/audit.jsonl"}, "audit log"
    ),
    "BACKUP_DIR is a file": Case(
        ("db.backup", "--env", "stg"), lambda w: {"BACKUP_DIR": str(w.files["not_a_dump"])}, "BACKUP_DIR"
    ),
    "PG_BINDIR wrong": Case(("db.backup", "--env", "stg"), lambda w: {"PG_BINDIR": "/nonexistent/bin"}),
    # .env files
    ".env with an unterminated quote": Case(
        ("db.status",), lambda w: {"DB_TOOLS_ENV_FILE": str(w.files["unterminated"])}, "line 1 is not KEY=VALUE"
    ),
    ".env not UTF-8": Case(("db.status",), lambda w: {"DB_TOOLS_ENV_FILE": str(w.files["latin1"])}, "is not UTF-8"),
    ".env with a stray line": Case(
        ("db.status",), lambda w: {"DB_TOOLS_ENV_FILE": str(w.files["garbage"])}, "line 1 is not KEY=VALUE"
    ),
    ".env with a bad number": Case(
        ("db.status",), lambda w: {"DB_TOOLS_ENV_FILE": str(w.files["bad_keep"])}, "BACKUP_KEEP must be"
    ),
    # URLs
    "STG URL of another kind": Case(
        ("db.stamp", "--env", "stg"), lambda w: {"STG_DATABASE_URL": f"mysql://u:{QUOTED_CANARY}@h/x"}, "mysql"
    ),
    "STG URL with a bad port": Case(
        ("db.stamp", "--env", "stg"), lambda w: {"STG_DATABASE_URL": f"postgresql://u:{QUOTED_CANARY}@h:bad/x"}
    ),
    "STG URL that is not a URL": Case(("db.seed", "--env", "stg"), lambda w: {"STG_DATABASE_URL": "not a url"}),
    "STG is INT's database": Case(
        ("db.seed", "--env", "stg", "--append"),
        lambda w: {"STG_DATABASE_URL": w.url(Tier.INT)},
        "tiers must never share a database",
    ),
    "PROD is STG's database": Case(
        ("db.backup", "--env", "prod"),
        lambda w: {"PROD_DATABASE_URL": w.url(Tier.STG)},
        "tiers must never share a database",
    ),
    "INT not named for tests": Case(
        ("db.seed",), lambda w: {"INT_DATABASE_URL": canary_url(w, Tier.INT, db="postgres")}, "does not say it is for"
    ),
    "STG URL reaching PROD": Case(
        ("db.seed", "--env", "stg", "--append"),
        lambda w: {"STG_DATABASE_URL": w.url(Tier.PROD)},
        "tiers must never share a database",
    ),
    "INT unreachable": Case(
        ("db.seed",), lambda w: {"INT_DATABASE_URL": canary_url(w, Tier.INT, port="1")}, "Connection refused"
    ),
    "STG on an unknown host": Case(
        ("db.seed", "--env", "stg"),
        lambda w: {"STG_DATABASE_URL": canary_url(w, Tier.STG, host="no-such-host.invalid")},
    ),
    "PROD with a wrong password": Case(
        ("db.backup", "--env", "prod"),
        lambda w: {"PROD_DATABASE_URL": w.url(Tier.PROD).replace(PROD_PASSWORD, QUOTED_CANARY)},
    ),
    "STG database missing": Case(
        ("db.seed", "--env", "stg"), lambda w: {"STG_DATABASE_URL": canary_url(w, Tier.STG, db="no_such_stg")}
    ),
    "STG database unstamped": Case(
        ("db.seed", "--env", "stg", "--append"),
        lambda w: {"STG_DATABASE_URL": canary_url(w, Tier.STG, db="postgres")},
        "has no tier stamp",
    ),
    # who is asking
    "agent migrates prod": Case(("db.migrate", "--env", "prod", "--confirm", "x"), lambda w: {"CLAUDECODE": "1"}),
    "agent restores prod": Case(("db.restore", "--env", "prod"), lambda w: {"CLAUDECODE": "1"}),
    "CI restores prod": Case(("db.restore", "--env", "prod"), lambda w: {"CI": "true"}),
    "agent stamps prod": Case(("db.stamp", "--env", "prod", "--force"), lambda w: {"CURSOR_AGENT": "1"}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_clear_line_and_changes_nothing(world: World, name: str) -> None:
    case = CASES[name]
    args = [a.format(**{k: str(v) for k, v in world.files.items()}) for a in case.args]
    before = world.fingerprint()
    own_state = state_values(world.tmp / name.replace("/", "_").replace(" ", "_"))  # no case sees another's backups
    proc = invoke_cli(*args, env=world.env | own_state | case.env(world), timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "Traceback" not in text and "unexpected " not in text, text
    problems = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(problems) == 1, proc.stderr
    assert case.expect in problems[0], problems[0]
    for secret in (CANARY, QUOTED_CANARY, PROD_PASSWORD, "Canary-9z"):
        assert secret not in text, f"{secret!r} in output"
    assert world.fingerprint() == before, "the databases changed"


def test_the_table_is_at_least_eighty_inputs() -> None:
    assert len(CASES) >= 80
