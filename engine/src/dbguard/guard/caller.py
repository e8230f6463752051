"""Who is asking: a human at a terminal, a CI job, or an automated coding agent.

Read from the real process environment only (never from `.env`), so a file in the repository
cannot claim to be a human or supply a human's consent.

These checks are the soft layer; a process that controls its own environment can get past them
with effort (docs/operations.md says how, and why the PROD write credential is the hard boundary).
What they make harder, where the machine lets us see it (Linux /proc):
- `env -u CLAUDECODE invoke ...` or `script -qec ...`: the shells and wrappers that started us
  (bash, sh, env, script, timeout, ...) and the program that started them (the agent itself, a
  terminal) are looked at too, each with the environment it was started with; an agent's marker in
  any of them makes the caller an agent;
- `DB_HUMAN_CONSENT=... invoke ...` typed by the agent: consent counts only when those wrappers were
  started with it too, i.e. when a human put it into the agent's environment, not the agent into one
  command's;
- a name fed into a (pseudo-)terminal before the question was asked: pending input is discarded
  before each prompt, so only an answer typed after the question counts.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
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
# programs that only pass a command on: the environment they were started with is the caller's too
WRAPPERS = frozenset(
    {
        "bash",
        "sh",
        "dash",
        "zsh",
        "ksh",
        "fish",
        "env",
        "script",
        "setsid",
        "timeout",
        "nohup",
        "nice",
        "stdbuf",
        "sudo",
        "su",
        "doas",
        "xargs",
        "time",
        "unbuffer",
        "expect",
        "tclsh",
        "runuser",
        "chrt",
        "ionice",
        "taskset",
    }
)
# programs (by name prefix) that start the tools on purpose, with an environment they chose: the walk ends there
LAUNCHERS = ("python", "pytest", "nox", "invoke", "uv", "tox", "pipx", "poetry", "hatch", "pdm")
MAX_ANCESTORS = 32


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
    secret_prompt: Callable[[str], str] | None = None  # asks for a password without echoing it (getpass)
    consent_note: str = ""  # why a DB_HUMAN_CONSENT that was set does not count ("" when none was refused)


def _environ_of(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _parent_of(pid: int) -> tuple[int, str] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    try:
        ppid = int(fields.get("PPid", "0").strip())
    except ValueError:
        return None
    if ppid <= 1:
        return None
    try:
        name = Path(f"/proc/{ppid}/comm").read_text().strip()
    except OSError:
        return None
    return ppid, name


def wrapper_environments(pid: int | None = None) -> Iterator[Mapping[str, str]]:
    """The environments the programs that started us were started with, nearest first (Linux only).

    Walks up through shells and pass-through launchers (WRAPPERS), and reads the first other program too
    (an agent's own process, a terminal, sshd), then stops. A Python program (pytest, nox, a script) that
    starts the tools ends the walk unread: it chose the environment it passed on.
    """
    current = os.getpid() if pid is None else pid
    for _ in range(MAX_ANCESTORS):
        parent = _parent_of(current)
        if parent is None or parent[1].startswith(LAUNCHERS):
            return
        environ = _environ_of(parent[0])
        if environ is not None:
            yield environ
        if parent[1] not in WRAPPERS:
            return
        current = parent[0]


def ask(question: str) -> str:
    """Ask at the terminal, discarding whatever was fed in before the question was shown."""
    try:
        import termios  # noqa: PLC0415 -- POSIX only

        termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)
    except (ImportError, OSError, ValueError):
        pass
    try:
        return input(question)
    except EOFError:
        return ""


def ask_secret(question: str) -> str:
    try:
        return getpass.getpass(question)
    except EOFError:
        return ""


def detect_caller(
    environ: Mapping[str, str] | None = None,
    *,
    stdin_tty: bool | None = None,
    stdout_tty: bool | None = None,
    devin_marker: Path = DEVIN_MARKER,
    wrappers: Sequence[Mapping[str, str]] | None = None,
) -> Caller:
    """The caller, from `environ` and the environments of the wrappers that started us (`wrappers`:
    given by tests; read from /proc otherwise)."""
    env = os.environ if environ is None else environ
    around = list(wrapper_environments()) if wrappers is None else list(wrappers)
    ci = _truthy(env.get("CI"))
    in_tty = sys.stdin.isatty() if stdin_tty is None else stdin_tty
    out_tty = sys.stdout.isatty() if stdout_tty is None else stdout_tty
    interactive = in_tty and out_tty and not ci
    agent = detect_agent(env, devin_marker) or next(
        (found for outer in around if (found := detect_agent(outer, Path("/nonexistent")))), None
    )
    consent = (env.get(CONSENT_VARIABLE) or "").strip() or None
    note = ""
    if consent and any((outer.get(CONSENT_VARIABLE) or "").strip() != consent for outer in around):
        consent, note = None, f"{CONSENT_VARIABLE} was set for this one command, not in the agent's environment"
    return Caller(
        interactive=interactive,
        ci=ci,
        agent=agent,
        consent=consent,
        prompt=ask if interactive else None,
        secret_prompt=ask_secret if interactive else None,
        consent_note=note,
    )
