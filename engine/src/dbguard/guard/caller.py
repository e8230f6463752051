"""Who is asking: a human at a terminal, a CI job, or an automated coding agent.

Read from the real process environment only (never from `.env`), so a file in the repository
cannot claim to be a human or supply a human's consent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

CONSENT_VARIABLE = "DB_HUMAN_CONSENT"

# Environment markers that coding agents set (the list Prisma and Vercel's detect-agent use).
AGENT_VARIABLES: tuple[tuple[str, str], ...] = (
    ("AI_AGENT", ""),  # the proposed common standard: its value names the agent
    ("CLAUDECODE", "claude-code"),
    ("CLAUDE_CODE", "claude-code"),
    ("CURSOR_AGENT", "cursor-agent"),
    ("CURSOR_TRACE_ID", "cursor"),
    ("GEMINI_CLI", "gemini-cli"),
    ("CODEX_SANDBOX", "codex"),
    ("CODEX_THREAD_ID", "codex"),
    ("REPL_ID", "replit"),
)
AGENT_PREFIXES: tuple[tuple[str, str], ...] = (("CLINE_", "cline"), ("CODEX_", "codex"))
DEVIN_MARKER = Path("/opt/.devin")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in {"", "0", "false", "no", "off"}


def detect_agent(environ: Mapping[str, str], devin_marker: Path = DEVIN_MARKER) -> str | None:
    """The name of the coding agent running us, if its markers are present."""
    for variable, name in AGENT_VARIABLES:
        if _truthy(environ.get(variable)):
            return name or str(environ[variable])
    for prefix, name in AGENT_PREFIXES:
        if any(k.startswith(prefix) for k in environ):
            return name
    if "amazonq" in environ.get("AWS_EXECUTION_ENV", "").lower():
        return "amazon-q"
    return "devin" if devin_marker.exists() else None


@dataclass(frozen=True)
class Caller:
    interactive: bool
    ci: bool
    agent: str | None
    consent: str | None
    prompt: Callable[[str], str] | None = None


def detect_caller(
    environ: Mapping[str, str] | None = None,
    *,
    stdin_tty: bool | None = None,
    stdout_tty: bool | None = None,
    devin_marker: Path = DEVIN_MARKER,
) -> Caller:
    env = os.environ if environ is None else environ
    ci = _truthy(env.get("CI"))
    in_tty = sys.stdin.isatty() if stdin_tty is None else stdin_tty
    out_tty = sys.stdout.isatty() if stdout_tty is None else stdout_tty
    interactive = in_tty and out_tty and not ci
    consent = (env.get(CONSENT_VARIABLE) or "").strip() or None
    return Caller(
        interactive=interactive,
        ci=ci,
        agent=detect_agent(env, devin_marker),
        consent=consent,
        prompt=input if interactive else None,
    )
