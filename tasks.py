"""invoke tasks: argument parsing only. The logic lives in app/ops (see app/ops/commands.py)."""

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from app.ops import commands

ENV = {"env": "tier: int (default), stg or prod"}
DRY = {"dry_run": "print the plan, touch nothing"}
CONFIRM = {"confirm": "the database name, typed in advance (non-interactive runs only)"}


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


@task(help={**ENV, **DRY})
def up(c: Context, env: str = "int", dry_run: bool = False) -> None:
    """Start the embedded local PostgreSQL and create the tier databases."""
    _exit(commands.up(env, dry_run))


@task(help={**ENV, **DRY})
def down(c: Context, env: str = "int", dry_run: bool = False) -> None:
    """Stop the embedded local PostgreSQL."""
    _exit(commands.down(env, dry_run))


@task(help=ENV)
def status(c: Context, env: str = "int") -> None:
    """Every tier at a glance: target, reachability, stamp, revision, size, connections."""
    _exit(commands.show_status(env))


@task(help=ENV)
def doctor(c: Context, env: str = "int") -> None:
    """Run every safety check, each with its fix, and a score; non-zero exit on a required failure."""
    _exit(commands.run_doctor(env))


@task(help={**ENV, "verify": "prove no line was edited, removed or reordered", "limit": "lines to show"})
def audit(c: Context, env: str = "int", verify: bool = False, limit: int = 20) -> None:
    """Show the audit log; --verify checks its hash chain."""
    _exit(commands.show_audit(env, verify, limit))


@task(help={**ENV, **DRY, **CONFIRM, "force": "replace an existing stamp of another tier"})
def stamp(c: Context, env: str = "int", force: bool = False, confirm: str = "", dry_run: bool = False) -> None:
    """Write or repair a database's tier stamp (guarded like a write)."""
    _exit(commands.stamp(env, force, confirm or None, dry_run))


db = Collection("db", up, down, status, doctor, audit, stamp)
namespace = Collection(db)
