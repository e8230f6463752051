"""nox sessions. Thin: each one calls a command or an importable function, nothing more.

Sessions run in the current environment (`pip install -e '.[dev]'` first): the project's tools
need no second copy of every dependency, and CI stays fast and offline.
"""

import nox

from app.ops import ladder

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict."""
    session.run("mypy", "app", "tests", "bench", "seeds", "migrations", "tasks.py", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite on throwaway PostgreSQL clusters."""
    session.run("pytest", *session.posargs)


@nox.session
def migrations(session: nox.Session) -> None:
    """The migration ladder INT -> STG -> PROD check; records a pass for db.migrate --env prod.

    nox -s migrations -- [--report ladder.json] [--apply-stg]
    """
    if ladder.main(session.posargs):
        session.error("the migration ladder failed")
