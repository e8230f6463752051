"""The `db` invoke collection: argument parsing only. The logic lives in dbguard.cli.commands and below."""

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from dbguard.cli import commands

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


@task(help={**ENV, **DRY, **CONFIRM, "to": "target revision (default head); behind the current one: downgrade"})
def migrate(c: Context, env: str = "int", to: str = "", confirm: str = "", dry_run: bool = False) -> None:
    """Show pending revisions, then upgrade (or downgrade with --to); STG/PROD backed up first."""
    _exit(commands.run_migrate(env, to or None, confirm or None, dry_run))


SEEDING = {"scenario": "minimal, demo or load", "seed": "random seed (same seed, same rows)", "scale": "row multiplier"}


@task(help={**ENV, **DRY, **SEEDING, "append": "add rows to a database that already has some"})
def seed(
    c: Context,
    env: str = "int",
    scenario: str = "demo",
    seed: int = 1,
    scale: float = 1.0,
    append: bool = False,
    dry_run: bool = False,
) -> None:
    """Fill the database with Faker seed data for a scenario (never PROD)."""
    _exit(commands.run_seed(env, scenario, seed, scale, append, dry_run))


@task(help={**ENV, **DRY, **SEEDING, "no_seed": "leave the rebuilt schema empty"})
def reset(
    c: Context,
    env: str = "int",
    no_seed: bool = False,
    scenario: str = "demo",
    seed: int = 1,
    scale: float = 1.0,
    dry_run: bool = False,
) -> None:
    """Rebuild the schema from empty through Alembic and seed it, atomically (STG backed up first; never PROD)."""
    _exit(commands.run_reset(env, no_seed, scenario, seed, scale, dry_run))


@task(help={**ENV, **DRY, "message": "what the revision changes"})
def revision(c: Context, message: str = "", env: str = "int", dry_run: bool = False) -> None:
    """Autogenerate a migration by comparing the models with INT at head."""
    _exit(commands.run_revision(message, env, dry_run))


@task(help={**ENV, **DRY})
def backup(c: Context, env: str = "int", dry_run: bool = False) -> None:
    """pg_dump the tier's database (read-only session for PROD) with a manifest and checksum."""
    _exit(commands.run_backup(env, dry_run))


@task(help={**ENV, "tier": "only this tier's backups"})
def backups(c: Context, env: str = "int", tier: str = "") -> None:
    """List backups: time, tier, size, revision, verified or not."""
    _exit(commands.show_backups(env, tier or None))


@task(
    positional=["backup"],
    help={
        **ENV,
        "deep": "also restore into a throwaway database on INT's server and compare",
        "backup": "latest, or a backup file",
    },
)
def verify(c: Context, backup: str | None = None, env: str = "int", deep: bool = False) -> None:
    """Check a backup (latest or FILE): checksum and archive listing; --deep restores and compares."""
    _exit(commands.verify(backup or "latest", env, deep))


@task(
    help={
        **ENV,
        **DRY,
        **CONFIRM,
        "from_": "latest (of the target tier) or a backup file",
        "allow_prod_data": "allow restoring a PROD backup into INT/STG (unsanitized!)",
    }
)
def restore(
    c: Context,
    env: str = "int",
    from_: str = "latest",
    confirm: str = "",
    allow_prod_data: bool = False,
    dry_run: bool = False,
) -> None:
    """Restore a backup into a scratch database, check it, then swap it in (target backed up first)."""
    _exit(commands.run_restore(env, from_, confirm or None, allow_prod_data, dry_run))


@task(
    name="prune-backups",
    help={**ENV, "keep": "newest backups to keep per tier (default BACKUP_KEEP)", "yes": "really delete"},
)
def prune_backups(c: Context, env: str = "int", keep: int = 0, yes: bool = False) -> None:
    """Delete all but the newest N backups per tier (never a tier's only verified one); --yes to delete."""
    _exit(commands.prune_backups(env, keep or None, yes))


@task(name="refresh-staging", help={**ENV, **DRY, "undo": "put the previous STG back"})
def refresh_staging(c: Context, env: str = "stg", undo: bool = False, dry_run: bool = False) -> None:
    """Copy PROD into STG, sanitized inside PROD, verified, swapped in atomically (previous STG kept)."""
    _exit(commands.refresh_staging(env, undo, dry_run))


@task(name="sanitize-check", help=ENV)
def sanitize_check(c: Context, env: str = "prod") -> None:
    """Does the sanitizing policy cover PROD's live schema? Reads PROD's catalog only."""
    _exit(commands.sanitize_check(env))


@task(
    help={
        "report": "also write the results as JSON to this file",
        "apply_stg": "migrate STG itself after its clone passed",
    }
)
def ladder(c: Context, report: str = "", apply_stg: bool = False) -> None:
    """The migration ladder INT -> STG clone -> PROD check; a pass opens db.migrate --env prod."""
    _exit(commands.run_ladder(report or None, apply_stg))


db = Collection(
    "db",
    up,
    down,
    status,
    doctor,
    audit,
    stamp,
    migrate,
    seed,
    reset,
    revision,
    backup,
    backups,
    verify,
    restore,
    prune_backups,
    refresh_staging,
    sanitize_check,
    ladder,
)
namespace = Collection(db)
