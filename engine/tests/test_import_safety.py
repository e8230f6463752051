"""The imports' safety on real clusters: a busy table is a one-line refusal after IMPORT_LOCK_TIMEOUT, never an
open-ended wait that stalls the app's writes (attacker finding 4); an export's manifest is signed with this
machine's key, and a file whose manifest was changed, is unsigned or comes from another machine is refused
or asks a human (attacker finding 9)."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from dbguard.guard.tiers import Tier

from tests.support.cli import invoke_cli
from tests.support.setup import Tiers, human, robot, run
from tests.test_import_sqlite import TASKBOARD_SQLITE, import_body, make_sqlite, taskboard_rows
from tests.test_transfer import busiest_user, env_for, fill

RELEASE_AFTER = 25.0  # the app's transaction ends by itself this late, so a broken fix cannot hang the test


@pytest.fixture
def stg_and_int(tiers: Tiers) -> Tiers:
    fill(tiers, Tier.STG, seed_value=42)
    fill(tiers, Tier.INT, seed_value=7, users=20)
    return tiers


class AppTransaction:
    """An app session with a transaction left open on a tier (it holds its locks until released)."""

    def __init__(self, url: str, *statements: str) -> None:
        self.conn = psycopg.connect(url)
        for statement in statements:
            self.conn.execute(statement)
        self.released_at: float | None = None
        self.timer = threading.Timer(RELEASE_AFTER, self.release)
        self.timer.start()

    def release(self) -> None:
        if self.released_at is None:
            self.released_at = time.monotonic()
            self.conn.rollback()
            self.conn.close()

    def __enter__(self) -> AppTransaction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()
        self.release()


def test_import_user_behind_an_open_app_transaction_is_refused_in_seconds_naming_the_table(
    stg_and_int: Tiers, tmp_path: Path
) -> None:
    tiers = stg_and_int
    env = env_for(tiers, tmp_path, IMPORT_LOCK_TIMEOUT="1s")
    _, email = busiest_user(tiers, Tier.STG)
    out = tmp_path / "user.tar"
    assert invoke_cli("db.export-user", "--env", "stg", "--user", email, "--out", str(out), env=env).returncode == 0
    before = tiers.sql(Tier.INT, "SELECT count(*) FROM users")
    app = tiers.urls[Tier.INT]
    # an app's edit of a user, not committed yet (the attacker's scenario): it holds ROW EXCLUSIVE on users
    with AppTransaction(app, "UPDATE users SET full_name = full_name WHERE id = (SELECT min(id) FROM users)") as open_:
        began = time.monotonic()
        proc = invoke_cli("db.import-user", "--env", "int", "--from", str(out), "--as", "c@example.com", env=env)
        took = time.monotonic() - began
        assert open_.released_at is None, "the import waited until the app's transaction ended"
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "table public.users is busy" in proc.stderr and "IMPORT_LOCK_TIMEOUT=1s" in proc.stderr
        assert "nothing was imported" in proc.stderr and "db.import-user --env int" in proc.stderr
        assert took < RELEASE_AFTER - 5
        # the app's writes were never queued for the whole import: a sign-up goes through at once
        with psycopg.connect(app) as signup:
            signup.execute("SET statement_timeout = '3s'")
            signup.execute("INSERT INTO users (email, full_name, created_at) VALUES ('signup@example.com', 'S', now())")
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users WHERE email = 'c@example.com'") == "0"
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users") == str(int(before) + 1)  # only the sign-up
    # the transaction ended: the same import goes through
    again = invoke_cli("db.import-user", "--env", "int", "--from", str(out), "--as", "c@example.com", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users WHERE email = 'c@example.com'") == "1"


def test_import_user_never_holds_a_write_blocking_lock_while_it_reads_and_inserts(
    stg_and_int: Tiers, tmp_path: Path
) -> None:
    """While the import runs, an app transaction that only reads users (ACCESS SHARE) does not conflict, and the
    lock taken up front is ROW EXCLUSIVE (what an insert takes): an app insert on users is not blocked by it."""
    tiers = stg_and_int
    env = env_for(tiers, tmp_path, IMPORT_LOCK_TIMEOUT="1s")
    _, email = busiest_user(tiers, Tier.STG)
    out = tmp_path / "user.tar"
    assert invoke_cli("db.export-user", "--env", "stg", "--user", email, "--out", str(out), env=env).returncode == 0
    with AppTransaction(tiers.urls[Tier.INT], "SELECT count(*) FROM users", "SELECT count(*) FROM tasks") as open_:
        proc = invoke_cli("db.import-user", "--env", "int", "--from", str(out), "--as", "d@example.com", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert open_.released_at is None


def test_import_sqlite_behind_a_held_lock_is_refused_naming_the_table(tiers: Tiers, int_target, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = make_sqlite(tmp_path / "app.db", TASKBOARD_SQLITE, taskboard_rows(bad=False))
    settings = tiers.settings.with_values(IMPORT_LOCK_TIMEOUT="1s")
    # another session holds SHARE on tasks (a CREATE INDEX does): the load's inserts would wait for it
    with AppTransaction(tiers.urls[Tier.INT], "LOCK TABLE tasks IN SHARE MODE") as open_:
        began = time.monotonic()
        result = run(settings, "import-sqlite", "int", robot(), import_body(path))
        assert open_.released_at is None and time.monotonic() - began < RELEASE_AFTER - 5
    assert result.code == 2, result.text
    assert "table tasks is busy" in result.text and "db.import-sqlite --env int" in result.text
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users") == "0"  # nothing written
    done = run(settings, "import-sqlite", "int", robot(), import_body(path))
    assert done.code == 0, done.text


# -- the signed manifest -----------------------------------------------------------------------------------
def rewrite_manifest(src: Path, dst: Path, change: dict[str, object], *, drop: tuple[str, ...] = ()) -> None:
    """The agent's edit: the same tar with manifest.json changed (and members dropped)."""
    with tarfile.open(src) as tar, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as new:
        for member in tar.getmembers():
            if member.name in drop:
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                data = json.dumps({**json.loads(data), **change}, indent=2).encode()
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))


def test_a_changed_or_unsigned_manifest_is_refused_and_another_machines_file_asks_a_human(
    tiers: Tiers, tmp_path: Path
) -> None:
    from dbguard.transfer.export import export_task
    from dbguard.transfer.import_user import import_task

    fill(tiers, Tier.PROD, seed_value=41)
    fill(tiers, Tier.STG, seed_value=42)
    _, email = busiest_user(tiers, Tier.PROD)
    prod, stg = tiers.names[Tier.PROD], tiers.names[Tier.STG]
    raw = tmp_path / "raw.tar"
    done = run(
        tiers.settings, "export-user", "prod", human(prod), lambda c: export_task(c, user=email, out=str(raw), raw=True)
    )
    assert done.code == 0, done.text

    def load(path: Path, as_: str):  # type: ignore[no-untyped-def]
        return lambda ctx: import_task(ctx, from_=str(path), as_=as_)

    def imported(as_: str) -> str:
        return tiers.sql(Tier.STG, f"SELECT count(*) FROM users WHERE email = '{as_}'")

    # the attack: "tier" edited from prod to stg inside the tar, imported by a script into STG
    forged = tmp_path / "forged.tar"
    rewrite_manifest(raw, forged, {"tier": "stg", "sanitized": "yes"})
    agent = run(tiers.settings, "import-user", "stg", None, load(forged, "forged@example.com"))
    assert agent.code == 2 and "manifest was changed after db.export-user wrote it" in agent.text, agent.text
    assert imported("forged@example.com") == "0"
    # a human at the terminal is refused too: a changed manifest is never believed
    typed = run(tiers.settings, "import-user", "stg", human(stg), load(forged, "forged@example.com"))
    assert typed.code == 2 and "was changed" in typed.text and imported("forged@example.com") == "0"

    # the signature taken away: refused, with the fix
    unsigned = tmp_path / "unsigned.tar"
    rewrite_manifest(raw, unsigned, {}, drop=("manifest.sig",))
    bare = run(tiers.settings, "import-user", "stg", human(stg), load(unsigned, "bare@example.com"))
    assert bare.code == 2 and "is not signed" in bare.text and "db.export-user" in bare.text
    assert imported("bare@example.com") == "0"

    # this machine's own, untouched file: the human consent the raw PROD data asks for, then in
    agent_raw = run(tiers.settings, "import-user", "stg", None, load(raw, "raw@example.com"))
    assert agent_raw.code == 2 and "interactive terminal" in agent_raw.text and imported("raw@example.com") == "0"

    # another machine's file (another key): a script is refused; a human typing the target's name brings it in
    other = tiers.settings.with_values(EXPORT_KEY_FILE=str(tmp_path / "other-machine-key"))
    script = run(other, "import-user", "stg", None, load(raw, "other@example.com"))
    assert script.code == 2 and "signed on another machine" in script.text and "interactive terminal" in script.text
    assert imported("other@example.com") == "0"
    person = run(other, "import-user", "stg", human(stg), load(raw, "other@example.com"))
    assert person.code == 0, person.text
    assert imported("other@example.com") == "1"


def test_import_user_longer_than_the_statement_timeout_is_refused_with_nothing_written(
    stg_and_int: Tiers, tmp_path: Path
) -> None:
    tiers = stg_and_int
    _, email = busiest_user(tiers, Tier.STG)
    out = tmp_path / "user.tar"
    env = env_for(tiers, tmp_path)
    assert invoke_cli("db.export-user", "--env", "stg", "--user", email, "--out", str(out), env=env).returncode == 0
    before = tiers.sql(Tier.INT, "SELECT count(*) FROM tasks")
    # a statement held up (here: waiting on a lock, the lock timeout set longer) is cut off at the limit
    with AppTransaction(tiers.urls[Tier.INT], "LOCK TABLE comments IN SHARE MODE"):
        slow = env | {"IMPORT_STATEMENT_TIMEOUT": "500ms", "IMPORT_LOCK_TIMEOUT": "10s"}
        proc = invoke_cli("db.import-user", "--env", "int", "--from", str(out), "--as", "e@example.com", env=slow)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ran longer than IMPORT_STATEMENT_TIMEOUT=500ms; nothing was imported" in proc.stderr
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM tasks") == before
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users WHERE email = 'e@example.com'") == "0"


def test_import_sqlite_longer_than_the_statement_timeout_is_refused_with_nothing_written(
    tiers: Tiers,
    int_target,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    path = make_sqlite(tmp_path / "app.db", TASKBOARD_SQLITE, taskboard_rows(bad=False))
    settings = tiers.settings.with_values(IMPORT_LOCK_TIMEOUT="10s", IMPORT_STATEMENT_TIMEOUT="500ms")
    with AppTransaction(tiers.urls[Tier.INT], "LOCK TABLE comments IN SHARE MODE"):
        result = run(settings, "import-sqlite", "int", robot(), import_body(path))
    assert result.code == 2, result.text
    assert "ran longer than IMPORT_STATEMENT_TIMEOUT=500ms; nothing was imported" in result.text
    assert tiers.sql(Tier.INT, "SELECT count(*) FROM users") == "0"
