"""The PROD gate's memory: which exact migration files passed the ladder.

A passing ladder appends a record with a digest of every file under migrations/ (env.py and the
versions) and the head revision. `db.migrate --env prod` refuses unless a passing record matches
the files as they are now: edited since, or never run, means run the ladder again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dbguard.errors import Refused
from dbguard.migrations.history import head
from dbguard.settings import Settings

LADDER_COMMAND = "nox -s migrations"


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
class LadderPass:
    digest: str
    head: str | None
    passed_at: str
    prod_revision: str | None


def record_pass(settings: Settings, prod_revision: str | None) -> LadderPass:
    entry = LadderPass(
        migrations_digest(settings), head(settings), datetime.now(UTC).isoformat(timespec="seconds"), prod_revision
    )
    path = settings.path("LADDER_RECORD")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(entry.__dict__) + "\n")
    return entry


def passes(settings: Settings) -> list[dict[str, Any]]:
    path = settings.path("LADDER_RECORD")
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def check_gate(settings: Settings) -> LadderPass:
    """Refuse unless the ladder passed for exactly the migration files on disk now."""
    digest, current_head = migrations_digest(settings), head(settings)
    for entry in reversed(passes(settings)):
        if entry.get("digest") == digest and entry.get("head") == current_head:
            return LadderPass(digest, current_head, str(entry.get("passed_at")), entry.get("prod_revision"))
    ever = bool(passes(settings))
    why = "the migration files changed since the ladder last passed" if ever else "the ladder has never passed"
    raise Refused(
        f"PROD migrations need a passing ladder for exactly these migration files: {why}",
        f"run `{LADDER_COMMAND}`, then migrate PROD again",
    )
