"""Run the tools as a user would: a child process, its own environment, output captured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.project import FIXTURE_ROOT
from tests.support.setup import base_environ


def cli_environment(env: dict[str, str], *, under_pytest: bool = False) -> dict[str, str]:
    """Only `env` (plus PATH/HOME), never our .env, no colour.

    The child is not "under pytest" unless asked: tests of STG/PROD behaviour run the tools as a
    user would, against throwaway clusters named explicitly in `env`.
    """
    full = base_environ() | {"DB_TOOLS_ENV_FILE": "/dev/null", "NO_COLOR": "1"} | env
    if under_pytest:
        full["PYTEST_CURRENT_TEST"] = "cli"
    return full


def module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_module(
    module: str,
    *args: str,
    env: dict[str, str],
    timeout: float = 600,
    stdin: str | None = None,
    under_pytest: bool = False,
    cwd: Path = FIXTURE_ROOT,
) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` in the project (invoke, alembic); the fixture app unless `cwd` says."""
    return subprocess.run(
        module_argv(module, *args),
        cwd=cwd,
        env=cli_environment(env, under_pytest=under_pytest),
        text=True,
        capture_output=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )


def invoke_cli(
    *args: str,
    env: dict[str, str],
    timeout: float = 600,
    stdin: str | None = None,
    under_pytest: bool = False,
    cwd: Path = FIXTURE_ROOT,
) -> subprocess.CompletedProcess[str]:
    """`invoke <args>` in the project (the fixture app unless `cwd` names another)."""
    return run_module("invoke", *args, env=env, timeout=timeout, stdin=stdin, under_pytest=under_pytest, cwd=cwd)
