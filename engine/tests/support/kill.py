"""Start a task, freeze it at a failpoint, SIGKILL it: the atomicity tests' tool."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.cli import cli_environment, module_argv
from tests.support.project import FIXTURE_ROOT


def kill_at(failpoint: str, args: list[str], env: dict[str, str], tmp: Path, timeout: float = 120) -> None:
    """Run `invoke <args>` until it reaches `failpoint`, then SIGKILL it (and wait for it to be gone)."""
    marker = tmp / f"failpoint-{failpoint.replace(':', '_')}"
    marker.unlink(missing_ok=True)
    full = cli_environment(env | {"DB_TOOLS_FAILPOINT": failpoint, "DB_TOOLS_FAILPOINT_FILE": str(marker)})
    proc = subprocess.Popen(
        module_argv("invoke", *args),
        cwd=FIXTURE_ROOT,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the task ended before reaching {failpoint}:\n{proc.stdout.read()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the task never reached {failpoint}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_for_no_sessions(psql, dbname: str, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    """After a kill, the server notices the closed sockets and rolls back; wait until it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            psql(
                "postgres",
                f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' AND pid <> pg_backend_pid()",
            )
            == "0"
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"sessions on {dbname} did not end")
