"""nox sessions for this app. Thin, and it imports nothing from the project.

The sessions run in the environment the README's commands installed (venv_backend "none"): the
tools need no second copy of every dependency, and CI stays fast and offline. To give each
session its own virtualenv instead, drop `venv_backend="none"` and add `session.install(...)`.
"""

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "tests"]

TYPED = ["app", "seeds", "migrations", "tests", "tasks.py", "noxfile.py"]
TYPED += ["engine/src", "engine/tests", "engine/bench", "scaffold"]  # the template repository only


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.run("ruff", "check", *(session.posargs or ["."]))
    session.run("ruff", "format", "--check", *(session.posargs or ["."]))


@nox.session(venv_backend="none")
def typecheck(session: nox.Session) -> None:
    """mypy, strict."""
    session.run("mypy", *(session.posargs or TYPED))


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The whole test suite on throwaway PostgreSQL clusters."""
    session.run("pytest", *session.posargs)


@nox.session(venv_backend="none")
def migrations(session: nox.Session) -> None:
    """The migration ladder INT -> STG clone -> PROD check (the same as `invoke db.ladder`).

    nox -s migrations -- [--report ladder.json] [--apply-stg]
    """
    session.run("invoke", "db.ladder", *session.posargs)


@nox.session(venv_backend="none")
def template(session: nox.Session) -> None:
    """The template tests itself: renders new apps and runs their README commands, tests and ladder.

    nox -s template -- [with_example|blank|shaped ...] [--keep]
    """
    session.run("python", "-m", "scaffold.build", "--check")
    session.run("python", "-m", "scaffold.selftest", *session.posargs)
