"""db.audit: show the audit log's latest lines, and with --verify prove the chain is unbroken."""

from __future__ import annotations

from rich.text import Text

from dbguard.audit.log import AuditLog
from dbguard.cli.console import add_row, new_table
from dbguard.cli.runner import TaskContext

OUTCOME_STYLES = {"ok": "green", "dry-run": "cyan", "refused": "yellow", "failed": "red", "interrupted": "red"}


def audit_task(ctx: TaskContext, *, verify: bool = False, limit: int = 20) -> int:
    log = AuditLog(ctx.settings.audit_log)
    lines = log.read()
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
            Text(outcome, OUTCOME_STYLES.get(outcome, "")),
            str(line.get("error") or ""),
        )
    ctx.out.table(table)
    if not verify:
        return 0
    result = log.verify()
    if result.ok:
        ctx.out.ok(f"audit log intact: {result.lines} lines, hash chain unbroken")
        return 0
    for problem in result.problems:
        ctx.out.error(problem)
    ctx.out.error(f"audit log tampered with: {len(result.problems)} problem(s) in {result.lines} lines")
    return 1
