"""A refresh step that failed, said as what happened and the next step that can help.

What must always hold: "run the refresh again" is offered only where running again can succeed (a lost
connection, a lock or statement timeout, a serialization failure or deadlock, a server starting or shutting
down, too many clients); a broken constraint names the table, the column and its rule and points at
`invoke db.sanitize-check` (running again would break it again); nothing a refresh says mentions a
restore. STG is untouched in every case: the copy is a scratch database, dropped on the way out.
"""

from __future__ import annotations

import re

from dbguard.errors import Failed
from dbguard.refresh.rules import Coverage, LiveTable

RETRYABLE = (
    "could not serialize access",
    "deadlock detected",
    "lock timeout",
    "statement timeout",
    "terminating connection",
    "server closed the connection",
    "connection to server",
    "could not connect",
    "no connection to the server",
    "could not receive data",
    "could not send data",
    "connection reset",
    "broken pipe",
    "ssl syscall",
    "the database system is",  # starting up, shutting down, in recovery mode
    "too many clients",
    "remaining connection slots",
)
_NOT_NULL = re.compile(r'null value in column "(?P<column>[^"]+)" of relation "(?P<table>[^"]+)"')
_NAMED = re.compile(
    r'(?:unique constraint|unique index|check constraint|foreign key constraint) "(?P<name>[^"]+)"'
    r'|constraint "(?P<other>[^"]+)"'
)
_BROKEN = (
    "violates not-null constraint",
    "violates unique constraint",
    "could not create unique index",
    "violates check constraint",
    "violates foreign key constraint",
    "value too long for type",
    "invalid input syntax",
    "out of range",
)
RETRY_FIX = "run the refresh again"
OTHER_FIX = "STG is untouched; the PROD and STG server logs say more (invoke db.doctor checks the setup)"


def refresh_failed(step: str, line: str, tables: list[LiveTable], coverage: Coverage) -> Failed:
    """The Failed for `step` (e.g. 'writing public.users into the copy') whose tool said `line`."""
    line = line[line.index("ERROR:") :] if "ERROR:" in line else line  # the server's words, not the tool's prefix
    lower = line.lower()
    if any(marker in lower for marker in RETRYABLE):
        return Failed(f"{step} failed: {line}; STG is untouched", RETRY_FIX)
    if any(marker in lower for marker in _BROKEN):
        culprits = _culprits(line, tables, coverage)
        where = f" ({culprits})" if culprits else ""
        return Failed(
            f"{step} failed: {line}; the sanitized values break a constraint of PROD's schema{where}; STG is untouched",
            "change that rule (the SANITIZE_POLICY file or the column's PII class); "
            "check with: invoke db.sanitize-check",
        )
    return Failed(f"{step} failed: {line}", OTHER_FIX)


def _culprits(line: str, tables: list[LiveTable], coverage: Coverage) -> str:
    """'schema.table.column: rule' for each column the broken constraint reads."""
    found: list[tuple[LiveTable, str]] = []
    if match := _NOT_NULL.search(line):
        found = [(t, match["column"]) for t in tables if t.name == match["table"]]
    elif match := _NAMED.search(line):
        name = match["name"] or match["other"]
        found = [(t, c) for t in tables for k in t.constraints if k.name == name for c in k.columns]
    parts = []
    for table, column in found:
        rule = coverage.rules.get(table.qualified, {}).get(column)
        parts.append(f"{table.qualified}.{column}: rule '{rule}'" if rule else f"{table.qualified}.{column}")
    return ", ".join(dict.fromkeys(parts))
