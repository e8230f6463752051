"""db.audit: show the audit log's latest lines, and with --verify prove the chain is unbroken."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from dbguard.audit.anchor import Anchor, read_anchor
from dbguard.audit.log import AuditLog
from dbguard.cli.console import add_row, new_table
from dbguard.cli.runner import TaskContext
from dbguard.errors import OpsError
from dbguard.guard.config import target_for
from dbguard.guard.door import report_target
from dbguard.guard.tiers import Tier
from dbguard.settings import Settings

OUTCOME_STYLES = {
    "ok": "green",
    "dry-run": "cyan",
    "refused": "yellow",
    "failed": "red",
    "interrupted": "red",
    "started": "magenta",
}
UNFINISHED = "started, never ended"


def runs(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per run: its outcome line, or its `started` line where the run never ended (killed)."""
    ended = {line.get("run") for line in lines if line.get("outcome") != "started" and line.get("run")}
    shown = []
    for line in lines:
        if line.get("outcome") != "started":
            shown.append(line)
        elif line.get("run") not in ended:
            shown.append({**line, "outcome": UNFINISHED})
    return shown


def tier_anchors(settings: Settings, log: AuditLog) -> tuple[list[Anchor], list[str]]:
    """The anchors this log left in the tier databases (read-only), and the tiers that could not be read."""
    found, unread = [], []
    for tier in Tier:
        try:
            anchor = read_anchor(report_target(settings, target_for(settings, tier)), log.path)
        except OpsError:
            unread.append(tier.value.upper())
            continue
        if anchor is not None:
            found.append(anchor)
    return found, unread


def audit_task(ctx: TaskContext, *, verify: bool = False, limit: int = 20) -> int:
    log = AuditLog(ctx.settings.audit_log)
    lines = runs(log.read())
    table = new_table(
        f"audit log {log.path} (last {min(limit, len(lines))} of {len(lines)})",
        "seq",
        "time (UTC)",
        "user",
        "task",
        "tier",
        "outcome",
        "error",
    )
    for line in lines[-limit:]:
        outcome = str(line.get("outcome"))
        add_row(
            table,
            str(line.get("seq")),
            str(line.get("ts", ""))[:19],
            str(line.get("user", "")),
            str(line.get("task", "")),
            str(line.get("tier", "")),
            Text(outcome, OUTCOME_STYLES.get(outcome, "magenta")),
            str(line.get("error") or ""),
        )
    ctx.out.table(table)
    if not verify:
        return 0
    anchors, unread = tier_anchors(ctx.settings, log)
    result = log.verify(anchors)
    if result.ok:
        against = ", ".join(f"{a.tier.value.upper()} (line {a.seq})" for a in anchors) or "no database anchor yet"
        ctx.out.ok(f"audit log intact: {result.lines} lines, hash chain unbroken, matches {against}")
        if unread:
            ctx.out.warn(f"not checked against {', '.join(unread)}: not reachable")
        return 0
    for problem in result.problems:
        ctx.out.error(problem)
    ctx.out.error(f"audit log tampered with: {len(result.problems)} problem(s) in {result.lines} lines")
    return 1
