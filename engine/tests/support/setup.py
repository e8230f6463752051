"""Settings, callers and stamped databases for tests, built around throwaway clusters.

PROD is configured as the tools expect it: PROD_DATABASE_URL is the read-only role `app`, and PROD
writes take the write role `app_owner` (PROD_WRITE_USER) with its password printed by
PROD_WRITE_PASSWORD_COMMAND (`cat` of a private file outside every test's tmp_path).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dbguard.guard.caller import Caller
from dbguard.guard.connect import connect
from dbguard.guard.credentials import reader_statements
from dbguard.guard.stamp import write_stamp
from dbguard.guard.targets import parse_database_url
from dbguard.guard.tiers import Tier
from dbguard.settings import Settings

from tests.support.clusters import OWNER, READER, ThrowawayCluster
from tests.support.project import FIXTURE_ROOT

_counter = itertools.count(1)
PROD_PASSWORD = "prod-Secret-9f3a"  # the PROD cluster's read-only role's password, in every PROD_DATABASE_URL
PROD_OWNER_PASSWORD = "prod-Owner-4e7b"  # the write role's: only PROD_WRITE_PASSWORD_COMMAND prints it


@cache
def _write_password_file() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="pgtest-secret-", dir="/var/tmp"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "prod-write-password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(PROD_OWNER_PASSWORD + "\n")
    return path


def write_credential() -> dict[str, str]:
    """PROD_WRITE_USER and PROD_WRITE_PASSWORD_COMMAND for the test PROD cluster (a secret manager's stand-in)."""
    return {"PROD_WRITE_USER": OWNER, "PROD_WRITE_PASSWORD_COMMAND": f"cat {_write_password_file()}"}


def base_environ() -> dict[str, str]:
    """A minimal real environment: no pytest markers, no agent markers, no CI, no PG* variables."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
    return {k: os.environ[k] for k in keep if k in os.environ}


def state_values(tmp: Path) -> dict[str, str]:
    """Point every piece of local state (audit log, backups, embedded cluster...) into `tmp`; name the PROD
    write credential (user and password command: no password is ever a value)."""
    return {
        "AUDIT_LOG": str(tmp / "logs" / "audit.jsonl"),
        "BACKUP_DIR": str(tmp / "backups"),
        "EMBEDDED_PG_DIR": str(tmp / "embedded"),
        "EXPORT_KEY_FILE": str(tmp / "export-key"),
        "LADDER_RECORD": str(tmp / "ladder-passes.jsonl"),
        "SANITIZE_SALT_FILE": str(tmp / "salt"),
    } | write_credential()


def make_settings(tmp: Path, *, environ: dict[str, str] | None = None, **values: str) -> Settings:
    env = base_environ() if environ is None else environ
    return Settings(root=FIXTURE_ROOT, values={**state_values(tmp), **env, **values}, environ=env)


def robot(agent: str | None = None, consent: str | None = None) -> Caller:
    """A non-interactive caller (CI or a script), optionally a coding agent."""
    return Caller(interactive=False, ci=True, agent=agent, consent=consent)


def human(answer: str, agent: str | None = None, consent: str | None = None) -> Caller:
    """An interactive caller who types `answer` at every prompt; the prompts are recorded."""
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return answer

    caller = Caller(interactive=True, ci=False, agent=agent, consent=consent, prompt=prompt)
    object.__setattr__(caller, "_prompts", prompts)
    return caller


def cleared(settings: Settings, operation: str, tier: Tier, caller: Caller | None = None, **options: object):  # type: ignore[no-untyped-def]
    """The guard's clearance for `operation` on `tier` (a robot asking): how a test gets a database to open."""
    from dbguard.guard.config import target_for
    from dbguard.guard.door import authorize

    return authorize(settings, operation, tier, target_for(settings, tier), caller or robot(), options=options)


@dataclass
class Tiers:
    """Three stamped databases (INT and STG on one server, PROD on another) and settings for them."""

    settings: Settings
    urls: dict[Tier, str]
    local: ThrowawayCluster
    prod: ThrowawayCluster
    names: dict[Tier, str]

    def owner_url(self, tier: Tier) -> str:
        """The URL test set-up writes through: PROD's write role for PROD (`urls` holds the tools' reader)."""
        return self.prod.owner_url(self.names[tier]) if tier is Tier.PROD else self.urls[tier]

    def target(self, tier: Tier):  # type: ignore[no-untyped-def]
        """A plain target for test set-up (seeding, migrating PROD around the tools): PROD as its owner."""
        return parse_database_url(self.owner_url(tier), tier=tier, source=tier.url_variable)

    def sql(self, tier: Tier, query: str) -> str:
        server = self.prod if tier is Tier.PROD else self.local
        return server.psql(self.names[tier], query)


def stamp_url(url: str, tier: Tier, dbname: str) -> None:
    target = parse_database_url(url, tier=tier, source="test")
    with connect(target) as conn:
        write_stamp(conn, tier, dbname)


def grant_reader(server: ThrowawayCluster, dbname: str) -> None:
    """Make `app` a read-only role on `dbname` with the engine's own statements (db.prod-reader's), for what
    the write role creates and for what tests create as postgres."""
    if not server.password:
        return
    schemas = ["public", "dbguard"] if server.psql(dbname, "SELECT to_regnamespace('dbguard')") else ["public"]
    statements = [s.as_string(None) for s in reader_statements(READER, OWNER, dbname, schemas, None, exists=True)]
    statements += [
        f"ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT {kind} TO {READER}"
        for kind in ("SELECT ON TABLES", "SELECT ON SEQUENCES", "USAGE ON SCHEMAS")
    ]
    server.psql(dbname, "; ".join(statements))


def make_tiers(
    tmp: Path,
    local: ThrowawayCluster,
    prod: ThrowawayCluster,
    prod_url: Callable[[str], str] | None = None,
    stamp: bool = True,
) -> Tiers:
    n = next(_counter)
    names = {Tier.INT: f"t{n}_int", Tier.STG: f"t{n}_stg", Tier.PROD: f"t{n}_prod"}
    local.create_database(names[Tier.INT])
    local.create_database(names[Tier.STG])
    prod.create_database(names[Tier.PROD])
    urls = {
        Tier.INT: local.socket_url(names[Tier.INT]),
        Tier.STG: local.socket_url(names[Tier.STG]),
        Tier.PROD: (prod_url or (lambda db: prod.tcp_url(db, sslmode="require")))(names[Tier.PROD]),
    }
    tiers = Tiers(
        make_settings(tmp).with_values(**{t.url_variable: u for t, u in urls.items()}), urls, local, prod, names
    )
    if stamp:
        for tier in urls:
            stamp_url(tiers.owner_url(tier), tier, names[tier])
    grant_reader(prod, names[Tier.PROD])
    return tiers


@dataclass
class RunResult:
    code: int
    stdout: str
    stderr: str
    contexts: list  # type: ignore[type-arg]  # TaskContext of each body call (empty: the body never ran)

    @property
    def ran(self) -> bool:
        return bool(self.contexts)

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def run(
    settings: Settings,
    operation: str,
    env: str | None,
    caller: Caller | None = None,
    body: Callable | None = None,
    **kwargs: object,
) -> RunResult:  # type: ignore[type-arg]
    """Run a task in-process through the real runner and guard, capturing its output."""
    import io

    from dbguard.cli.console import Output
    from dbguard.cli.runner import run_task
    from rich.console import Console

    out_buf, err_buf = io.StringIO(), io.StringIO()
    out = Output(
        None,
        Console(file=out_buf, width=200, no_color=True, soft_wrap=True),
        Console(file=err_buf, width=200, no_color=True, soft_wrap=True),
    )
    contexts: list = []  # type: ignore[type-arg]

    def wrapped(ctx):  # type: ignore[no-untyped-def]
        contexts.append(ctx)
        return body(ctx) if body else 0

    code = run_task(operation, env, {}, wrapped, settings=settings, caller=caller or robot(), out=out, **kwargs)  # type: ignore[arg-type]
    return RunResult(code, out_buf.getvalue(), err_buf.getvalue(), contexts)
