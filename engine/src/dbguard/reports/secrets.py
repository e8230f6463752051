"""The doctor's secret checks alone, for a pre-commit hook: `python -m dbguard.reports.secrets`.

`.env` must not be tracked by git, and `.env.example` must hold placeholders only. Each failure is
one line with its fix; the exit code is 1 when any fails. No database is touched.
"""

from __future__ import annotations

import sys

from dbguard.errors import OpsError
from dbguard.guard.config import Finding, env_example_findings, env_tracked_finding
from dbguard.settings import Settings, load_settings


def secret_findings(settings: Settings) -> list[Finding]:
    return [env_tracked_finding(settings), env_example_findings(settings)]


def main() -> int:
    try:
        settings = load_settings()
    except OpsError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    failed = [f for f in secret_findings(settings) if not f.ok and f.required]
    for finding in failed:
        print(f"error: {finding.check}: {finding.message} -> {finding.fix}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
