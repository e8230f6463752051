"""The PROD gate: what a passing ladder leaves behind, and what `db.migrate --env prod` asks of it.

What must always hold: PROD is upgraded only after a ladder in which every check concerning PROD
ran and passed, for exactly the migration files on disk (a digest of every file under migrations/,
and the head revision), against that very PROD database (its name, the cluster's system identifier,
the database's OID) at the revision PROD is at now. A PROD check that could not run (PROD unset or
unreachable, no verified backup to rehearse on) is "not verified": it opens nothing.

A pass is kept two ways:
- the record on the machine that ran the ladder (LADDER_RECORD, one JSON line per pass);
- the report (`nox -s migrations -- --report FILE`), which travels to another machine (a CI deploy
  job) and is handed to `db.migrate --env prod --ladder-report FILE`. Every fact in it the deployer
  can derive again (the digest, the head, PROD's identity and revision) is derived again and compared.
  The one it cannot (that the ladder ran and every check passed) is vouched for by an HMAC-SHA256
  over the whole report, keyed by LADDER_REPORT_KEY, read from the real environment only (never
  `.env`): a report edited after the ladder wrote it, or written without the key, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbguard.errors import Refused
from dbguard.guard.identity import read_pin
from dbguard.migrations.history import current_revision, head
from dbguard.settings import Settings

if TYPE_CHECKING:
    from dbguard.guard.connect import Connection

LADDER_COMMAND = "nox -s migrations"
REPORT_FORMAT = "dbguard-ladder-report/1"
KEY_VARIABLE = "LADDER_REPORT_KEY"
KEY_MIN_LENGTH = 32
KEY_FIX = (
    "make one with `python -c 'import secrets; print(secrets.token_hex(32))'` and keep it only in the "
    "secrets of the ladder and deploy jobs (docs/operations.md, 'The PROD gate on another machine')"
)
_MAC_PREFIX = "hmac-sha256:"


def migrations_digest(settings: Settings) -> str:
    """sha256 over the relative path and contents of every migration file, in a stable order."""
    root = settings.migrations_dir
    digest = hashlib.sha256()
    for path in sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix in {".py", ".mako"} and "__pycache__" not in p.parts
    ):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class MigrationFiles:
    """The migration files a ladder ran on, or a migration is about to apply: their digest and head."""

    digest: str
    head: str | None

    @classmethod
    def on_disk(cls, settings: Settings) -> MigrationFiles:
        return cls(migrations_digest(settings), head(settings))


@dataclass(frozen=True)
class ProdFacts:
    """Which PROD database the ladder checked (or a migration reaches), and the revision it was at."""

    database: str
    system_identifier: str  # the cluster's, from pg_control_system(): unique per initdb
    database_oid: int  # a database dropped and made again, or swapped in by a restore, has another
    revision: str | None

    def same_database(self, other: ProdFacts) -> bool:
        return (self.database, self.system_identifier, self.database_oid) == (
            other.database,
            other.system_identifier,
            other.database_oid,
        )

    def describe(self) -> str:
        return f"'{self.database}' (cluster {self.system_identifier}, oid {self.database_oid})"

    @classmethod
    def of(cls, data: Any) -> ProdFacts | None:
        """From a record's or report's `prod` entry; None when it is missing or malformed."""
        if not isinstance(data, dict):
            return None
        try:
            revision = data["revision"]
            return cls(
                str(data["database"]),
                str(data["system_identifier"]),
                int(data["database_oid"]),
                None if revision is None else str(revision),
            )
        except (KeyError, TypeError, ValueError):
            return None


def read_prod_facts(conn: Connection) -> ProdFacts:
    """The identity (the guard's pin: dbguard.guard.identity) and revision of the database `conn` reached."""
    pin = read_pin(conn)
    assert pin.database_oid is not None
    return ProdFacts(conn.info.dbname, str(pin.system_identifier), pin.database_oid, current_revision(conn))


@dataclass(frozen=True)
class LadderPass:
    files: MigrationFiles
    prod: ProdFacts | None  # None only in a record written before passes noted their PROD
    passed_at: str

    def as_record(self) -> dict[str, Any]:
        return {**asdict(self.files), "passed_at": self.passed_at, "prod": asdict(self.prod) if self.prod else None}


# -- the record on this machine ----------------------------------------------------------------------
def record_pass(settings: Settings, files: MigrationFiles, prod: ProdFacts) -> LadderPass:
    """Append a pass to LADDER_RECORD: only for a ladder whose every PROD check ran and passed."""
    entry = LadderPass(files, prod, datetime.now(UTC).isoformat(timespec="seconds"))
    path = settings.path("LADDER_RECORD")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(entry.as_record()) + "\n")
    return entry


def passes(settings: Settings) -> list[dict[str, Any]]:
    path = settings.path("LADDER_RECORD")
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def check_gate(settings: Settings, prod: ProdFacts | None = None, report: Path | None = None) -> LadderPass:
    """Refuse unless the ladder passed for exactly the migration files on disk now, against this PROD
    (`prod`: read from the database the migration is about to change) at its revision now.

    `report`: the ladder's report from another machine, checked in place of this machine's record.
    `prod` None: the files alone, for db.doctor's look, which does not read PROD; a migration always
    passes PROD's facts.
    """
    files = MigrationFiles.on_disk(settings)
    if report is not None:
        assert prod is not None, "a report is checked against the PROD about to be migrated"
        return check_report(settings, report, files, prod)
    entries = passes(settings)
    same_files = [e for e in entries if e.get("digest") == files.digest and e.get("head") == files.head]
    for entry in reversed(same_files):
        checked = ProdFacts.of(entry.get("prod"))
        if prod is None or (checked is not None and checked.same_database(prod) and checked.revision == prod.revision):
            return LadderPass(files, checked, str(entry.get("passed_at")))
    if not entries:
        why = "the ladder has never passed"
    elif not same_files:
        why = "the migration files changed since the ladder last passed"
    else:
        assert prod is not None
        why = _prod_moved([ProdFacts.of(e.get("prod")) for e in same_files], prod)
    raise Refused(
        f"PROD migrations need a passing ladder for exactly these migration files: {why}",
        f"run `{LADDER_COMMAND}`, then migrate PROD again",
    )


def _prod_moved(checked: list[ProdFacts | None], prod: ProdFacts) -> str:
    """Why passes for these files do not fit this PROD: another database, or PROD moved since."""
    same = [c for c in checked if c is not None and c.same_database(prod)]
    if same:
        return f"it passed when PROD was at {same[-1].revision or 'base'}, and PROD is at {prod.revision or 'base'} now"
    others = [c for c in checked if c is not None]
    if others:
        return f"it passed against another PROD database, {others[-1].describe()}, not {prod.describe()}"
    return "its passes were recorded by an older version that did not note which PROD it checked"


# -- the report that travels ---------------------------------------------------------------------------
def report_key(settings: Settings) -> bytes | None:
    """LADDER_REPORT_KEY from the real environment (never .env); None when unset; refused when too short."""
    key = settings.environ.get(KEY_VARIABLE, "")
    if not key:
        return None
    if len(key) < KEY_MIN_LENGTH:
        raise Refused(f"{KEY_VARIABLE} is too short ({len(key)} characters, at least {KEY_MIN_LENGTH})", KEY_FIX)
    return key.encode()


def key_id(key: bytes) -> str:
    """A name for the key that says nothing about it (to tell 'another key' from 'edited')."""
    return hashlib.sha256(b"dbguard ladder report key\0" + key).hexdigest()[:16]


def _mac(body: dict[str, Any], key: bytes) -> str:
    unsigned = {k: v for k, v in body.items() if k != "mac"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    return _MAC_PREFIX + hmac.new(key, canonical, hashlib.sha256).hexdigest()


def sign(body: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """The report with its key's id and MAC (both null when there is no key: such a report opens nothing)."""
    if key is None:
        return {**body, "key_id": None, "mac": None}
    keyed = {**body, "key_id": key_id(key)}
    return {**keyed, "mac": _mac(keyed, key)}


def write_report(path: Path, body: dict[str, Any]) -> None:
    path.write_text(json.dumps(body, indent=2) + "\n")


def _rerun(path: Path) -> str:
    return f"{LADDER_COMMAND} -- --report {path}"


def read_report(path: Path) -> dict[str, Any]:
    """The report as JSON; missing, unreadable or not a ladder report: refused with the way to make one."""
    fix = f"download the ladder job's report, or write one: {_rerun(path)}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Refused(f"the ladder report {path} does not exist", fix) from None
    except UnicodeDecodeError:
        raise Refused(f"the ladder report {path} is not a ladder report (not UTF-8 text)", fix) from None
    except OSError as exc:
        raise Refused(f"the ladder report {path} cannot be read ({exc.strerror})", fix) from None
    try:
        body = json.loads(text)
    except ValueError:
        raise Refused(f"the ladder report {path} is not a ladder report (not JSON)", fix) from None
    if not isinstance(body, dict) or body.get("format") != REPORT_FORMAT:
        raise Refused(f"the ladder report {path} is not a ladder report of format {REPORT_FORMAT}", fix)
    return body


def check_report(settings: Settings, path: Path, files: MigrationFiles, prod: ProdFacts) -> LadderPass:
    """The report's MAC first (nothing in it is believed before), then each fact derived again and compared."""
    body = read_report(path)
    key = report_key(settings)
    if key is None:
        raise Refused(f"{KEY_VARIABLE} is not set, so the ladder report {path} cannot be checked", KEY_FIX)
    mac = body.get("mac")
    if not mac:
        raise Refused(
            f"the ladder report {path} is not signed (its ladder ran without {KEY_VARIABLE})",
            f"run the ladder with {KEY_VARIABLE} set: {_rerun(path)}",
        )
    if body.get("key_id") != key_id(key):
        raise Refused(
            f"the ladder report {path} was signed with another {KEY_VARIABLE}",
            f"give the ladder and db.migrate the same key, then: {_rerun(path)}",
        )
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(body, key)):
        raise Refused(
            f"the ladder report {path} was changed after the ladder wrote it", f"run it again: {_rerun(path)}"
        )
    failed, unverified = list(body.get("failed") or []), list(body.get("not_verified") or [])
    if failed or body.get("passed") is not True:
        first = f", first: {failed[0]}" if failed else ""
        raise Refused(
            f"the ladder report {path} records {len(failed) or 'a'} failed check(s){first}",
            f"fix them, then: {_rerun(path)}",
        )
    checked = ProdFacts.of(body.get("prod"))
    if unverified or checked is None or body.get("gate") != "open":
        first = f": {unverified[0]}" if unverified else ""
        raise Refused(
            f"the ladder report {path} did not verify PROD{first}",
            f"let every PROD check run (PROD reachable, a verified PROD backup), then: {_rerun(path)}",
        )
    if (body.get("digest"), body.get("head")) != (files.digest, files.head):
        raise Refused(
            f"the ladder report {path} was made for other migration files than these "
            f"(head {body.get('head') or 'base'}, files {str(body.get('digest'))[:12]}…; "
            f"here head {files.head or 'base'}, files {files.digest[:12]}…)",
            f"run the ladder on these files: {_rerun(path)}",
        )
    if not checked.same_database(prod):
        raise Refused(
            f"the ladder report {path} checked another PROD database, {checked.describe()}, not {prod.describe()}",
            f"run the ladder against this PROD: {_rerun(path)}",
        )
    if checked.revision != prod.revision:
        raise Refused(
            f"PROD is at {prod.revision or 'base'} now, and the ladder report {path} checked it at "
            f"{checked.revision or 'base'}",
            f"run the ladder again: {_rerun(path)}",
        )
    return LadderPass(files, checked, str(body.get("written_at")))
