"""The audit chain's head, kept outside the log file: in the tier databases the tools write to.

After a run that wrote to an INT or STG database, the log's newest (seq, hash) is recorded in that
database (`dbguard.audit_anchor`, one row per log: host and absolute path). Each anchor vouches for
every line up to its seq, PROD's included, since the chain is one line after another. So deleting,
truncating, or rewriting and re-hashing the log is caught by `db.audit --verify`: some database
remembers a line the log no longer has, or a hash its rewritten line does not match. PROD is not
written to for this: its runs are covered by the next INT/STG anchor.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from pathlib import Path

import psycopg

from dbguard.errors import OpsError
from dbguard.guard.cleared import Cleared
from dbguard.guard.tiers import Tier

TABLE = "dbguard.audit_anchor"
CREATE = f"""
CREATE SCHEMA IF NOT EXISTS dbguard;
CREATE TABLE IF NOT EXISTS {TABLE} (
    log text PRIMARY KEY,
    seq bigint NOT NULL,
    hash text NOT NULL,
    anchored_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Anchor:
    tier: Tier
    database: str
    seq: int
    hash: str


def log_key(path: Path) -> str:
    """One log among the many that may write to a shared STG: this host's log at this path."""
    return hashlib.sha256(f"{socket.gethostname()}:{path.resolve()}".encode()).hexdigest()[:24]


def anchors_here(target: Cleared) -> bool:
    """Only databases this run may write, below PROD: an anchor never needs a PROD write credential."""
    return target.opens and not target.read_only and target.tier is not Tier.PROD


def write_anchor(target: Cleared, path: Path, seq: int, digest: str) -> None:
    with target.connect(autocommit=True) as conn:
        conn.execute(CREATE)
        conn.execute(
            f"INSERT INTO {TABLE} (log, seq, hash) VALUES (%s, %s, %s) "
            "ON CONFLICT (log) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, anchored_at = now() "
            f"WHERE {TABLE}.seq <= excluded.seq",
            (log_key(path), seq, digest),
        )


def read_anchor(target: Cleared, path: Path) -> Anchor | None:
    """This log's anchor in one database (read-only), or None where there is none or it cannot be read."""
    try:
        with target.connect(read_only=True, timeout=5) as conn:
            if conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone() == (None,):
                return None
            row = conn.execute(f"SELECT seq, hash FROM {TABLE} WHERE log = %s", (log_key(path),)).fetchone()
    except (OpsError, psycopg.Error):
        return None
    return Anchor(target.tier, target.dbname, int(row[0]), str(row[1])) if row else None
