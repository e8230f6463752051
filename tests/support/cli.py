"""Run `invoke` as a user would: a child process, its own environment, output captured."""

from __future__ import annotations

import subprocess
import sys

from app.settings import PROJECT_ROOT
from tests.support.setup import base_environ


def invoke_cli(
    *args: str, env: dict[str, str], timeout: float = 600, stdin: str | None = None, under_pytest: bool = False
) -> subprocess.CompletedProcess[str]:
    """`invoke <args>` in the project. The child sees only `env` (plus PATH/HOME), never our .env.

    The child is not "under pytest" unless asked: tests of STG/PROD behaviour run the tools as a
    user would, against throwaway clusters named explicitly in `env`.
    """
    full = base_environ() | {"DB_TOOLS_ENV_FILE": "/dev/null", "NO_COLOR": "1"} | env
    if under_pytest:
        full["PYTEST_CURRENT_TEST"] = "cli"
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=PROJECT_ROOT,
        env=full,
        text=True,
        capture_output=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )
