"""Every `db` task declared once: name, one-line doc, body and options; nothing else repeats them.

The invoke collection (`dbguard.cli.tasks`) and the audit line's arguments are both derived from
`TASKS`. Importing this module costs nothing beyond the standard library: a task's body, and with it
Alembic, SQLAlchemy, Faker, psycopg or rich, is imported only when that task runs.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from dbguard.errors import Refused

if TYPE_CHECKING:
    from dbguard.cli.runner import TaskContext

Value = bool | int | float | str | None
RUNNER_OPTIONS = ("env", "dry_run", "confirm")  # handed to the runner, which audits them itself


@dataclass(frozen=True)
class Option:
    """One option. `name` is the Python name: `dry_run` is `--dry-run`, `from_` is `--from`.

    The option's type is its default's type (invoke's rule). `blank_is_none`: "" or 0 means "not
    given", and the body and the audit line see None. `audit` renames the option in the audit line.
    """

    name: str
    default: Value
    help: str
    blank_is_none: bool = False
    positional: bool = False
    audit: str = ""
    minimum: float | None = None
    maximum: float | None = None

    @property
    def audit_key(self) -> str:
        return self.audit or self.name.rstrip("_")

    @property
    def flag(self) -> str:
        return self.name if self.positional else "--" + self.name.rstrip("_").replace("_", "-")

    @property
    def parser_default(self) -> Value:
        """What invoke is told: numbers arrive as text, so a bad one is our one-line refusal, not
        invoke's traceback (invoke casts a value to its default's type while parsing)."""
        return (
            str(self.default)
            if isinstance(self.default, int | float) and not isinstance(self.default, bool)
            else (self.default)
        )

    def given(self, value: Value) -> Value:
        """The value as the body sees it: typed, checked against its range; Refused with the fix when bad."""
        value = self.typed(value)
        return None if self.blank_is_none and value in ("", 0) else value

    @property
    def fix(self) -> str:
        return f"pass {self.flag} {self.default}" if self.default not in (0, "") else f"leave out {self.flag}"

    def typed(self, value: Value) -> Value:
        kind = type(self.default)
        if kind not in (int, float) or isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            number: int | float = int(text) if kind is int else float(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise Refused(
                f"{self.flag} must be {what}, not {text[:40]!r}", f"pass {self.flag} {self.default}"
            ) from None
        if kind is float and not math.isfinite(number):
            raise Refused(f"{self.flag} must be a finite number, not {text[:40]!r}", f"pass {self.flag} {self.default}")
        given_zero = self.blank_is_none and number == 0
        if self.minimum is not None and number < self.minimum and not given_zero:
            raise Refused(
                f"{self.flag} must be at least {self.minimum:g}, not {number:g}", f"pass {self.flag} {self.default}"
            )
        if self.maximum is not None and number > self.maximum:
            raise Refused(
                f"{self.flag} {number:g} is more than the most it takes, {self.maximum:g}",
                f"pass {self.flag} {self.maximum:g} or less",
            )
        return number


@dataclass(frozen=True)
class TaskSpec:
    """One task. `body` is "module:function", called as `function(ctx, **options)` under the guard
    (`dbguard.cli.runner.run_task`); an unguarded body (`guarded=False`) is called as
    `function(**options)` and runs the guard itself. Either returns the exit code.
    """

    name: str
    doc: str
    body: str
    options: tuple[Option, ...]
    guarded: bool = True

    def load_body(self) -> Callable[..., int | None]:
        module, _, function = self.body.partition(":")
        body: Callable[..., int | None] = getattr(importlib.import_module(module), function)
        return body

    def run(self, values: Mapping[str, Value]) -> int:
        """Run the task with the options the command line gave (missing ones take their defaults).

        Values are checked inside the run, so a bad one is refused like any other: one line with
        its fix, exit 2, an audit line, and nothing touched.
        """
        raw = {o.name: values.get(o.name, o.default) for o in self.options}
        if not self.guarded:
            body = self.load_body()
            from dbguard.cli.console import Output  # noqa: PLC0415

            try:
                plain = {o.name: o.given(raw[o.name]) for o in self.options if o.name not in RUNNER_OPTIONS}
            except Refused as exc:
                Output(None).error(exc.one_line())
                return 2
            return body(**plain) or 0
        from dbguard.cli.runner import run_task  # noqa: PLC0415  # the guard's imports are paid only by a run

        audit_keys = {o.name: o.audit_key for o in self.options}
        own: dict[str, Value] = {}

        def check() -> None:
            own.update({o.name: o.given(raw[o.name]) for o in self.options if o.name not in RUNNER_OPTIONS})

        def guarded_body(ctx: TaskContext) -> int | None:
            return self.load_body()(ctx, **own)  # loaded inside the run: even a broken import is one line

        confirm = raw.get("confirm")
        return run_task(
            self.name,
            str(raw["env"]),
            {audit_keys[o.name]: raw[o.name] for o in self.options if o.name not in RUNNER_OPTIONS},
            guarded_body,
            confirm=str(confirm) if confirm else None,
            dry_run=bool(raw.get("dry_run", False)),
            check=check,
        )


ENV = Option("env", "int", "tier: int (default), stg or prod")
DRY = Option("dry_run", False, "print the plan, touch nothing")
CONFIRM = Option("confirm", "", "the database name, typed in advance (non-interactive runs only)", blank_is_none=True)
SCENARIO = Option("scenario", "demo", "minimal, demo or load")
SEED = Option("seed", 1, "random seed (same seed, same rows)", minimum=0)
SCALE = Option("scale", 1.0, "row multiplier", minimum=0.0001, maximum=1000)

TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "up",
        "Start the embedded local PostgreSQL and create the tier databases.",
        "dbguard.cluster.updown:up_task",
        (ENV, DRY),
    ),
    TaskSpec("down", "Stop the embedded local PostgreSQL.", "dbguard.cluster.updown:down_task", (ENV, DRY)),
    TaskSpec(
        "status",
        "Every tier at a glance: target, reachability, stamp, revision, size, connections.",
        "dbguard.cli.commands:status",
        (ENV,),
    ),
    TaskSpec(
        "doctor",
        "Run every safety check, each with its fix, and a score; non-zero exit on a required failure.",
        "dbguard.cli.commands:doctor",
        (ENV,),
    ),
    TaskSpec(
        "audit",
        "Show the audit log; --verify checks its hash chain.",
        "dbguard.audit.report:audit_task",
        (
            ENV,
            Option("verify", False, "prove no line was edited, removed or reordered"),
            Option("limit", 20, "lines to show", minimum=1, maximum=100_000),
        ),
    ),
    TaskSpec(
        "stamp",
        "Write or repair a database's tier stamp (guarded like a write).",
        "dbguard.guard.stamp_task:stamp_task",
        (ENV, Option("force", False, "replace an existing stamp of another tier"), CONFIRM, DRY),
    ),
    TaskSpec(
        "prod-reader",
        "Make or repair PROD's read-only role (PROD_DATABASE_URL's); --dry-run prints the SQL.",
        "dbguard.guard.prod_reader:prod_reader_task",
        (
            replace(ENV, default="prod"),
            Option("role", "", "the role's name (default: PROD_DATABASE_URL's user)", blank_is_none=True),
            DRY,
        ),
    ),
    TaskSpec(
        "migrate",
        "Show pending revisions, then upgrade (or downgrade with --to); STG/PROD backed up first.",
        "dbguard.migrations.migrate:migrate_task",
        (
            ENV,
            Option("to", "", "target revision (default head); behind the current one: downgrade", blank_is_none=True),
            Option(
                "ladder_report",
                "",
                "PROD: the ladder's report (nox -s migrations -- --report FILE) in place of this machine's record",
                blank_is_none=True,
            ),
            CONFIRM,
            DRY,
        ),
    ),
    TaskSpec(
        "seed",
        "Fill the database with Faker seed data for a scenario (never PROD).",
        "dbguard.cli.commands:seed",
        (ENV, SCENARIO, SEED, SCALE, Option("append", False, "add rows to a database that already has some"), DRY),
    ),
    TaskSpec(
        "import-sqlite",
        "Copy an app's SQLite file into the tier's schema at head, in one transaction (STG/PROD backed up first).",
        "dbguard.transfer.sqlite_import:import_sqlite_task",
        (
            ENV,
            Option("from_", "", "the SQLite file (.db)", blank_is_none=True),
            Option("skip_bad", False, "import the rows that fit and leave out (and list) the ones that do not"),
            CONFIRM,
            DRY,
        ),
    ),
    TaskSpec(
        "export-user",
        "Write one user's foreign-key closed slice to a private file (one snapshot; from PROD sanitized).",
        "dbguard.transfer.export:export_task",
        (
            ENV,
            Option("user", "", "the user's key ([tool.dbguard] user_key, default email)"),
            Option("out", "", "the file to write (default: BACKUP_DIR/exports/...)", blank_is_none=True),
            Option("raw", False, "PROD: the user's own rows unsanitized (a human at a terminal only)"),
            DRY,
        ),
    ),
    TaskSpec(
        "import-user",
        "Load a db.export-user file in one transaction: keys remapped, references rewired (STG/PROD backed up first).",
        "dbguard.transfer.import_user:import_task",
        (
            ENV,
            Option("from_", "", "the file db.export-user wrote"),
            Option("as_", "", "bring the user in under this new key", blank_is_none=True),
            CONFIRM,
            DRY,
        ),
    ),
    TaskSpec(
        "fill-standin",
        "Fill the embedded stand-in PROD (laptop set-up only) with seed data: a real PROD is never seeded.",
        "dbguard.cluster.standin:fill_standin_task",
        (replace(ENV, default="prod"), SCENARIO, SEED, SCALE, CONFIRM, DRY),
    ),
    TaskSpec(
        "reset",
        "Rebuild the schema from empty through Alembic and seed it, atomically (STG's old one kept as undo; not PROD).",
        "dbguard.cli.commands:reset",
        (ENV, Option("no_seed", False, "leave the rebuilt schema empty"), SCENARIO, SEED, SCALE, DRY),
    ),
    TaskSpec(
        "revision",
        "Autogenerate a migration by comparing the models with INT at head.",
        "dbguard.migrations.autogenerate:revision_task",
        (Option("message", "", "what the revision changes"), ENV, DRY),
    ),
    TaskSpec(
        "backup",
        "pg_dump the tier's database (read-only session for PROD) with a manifest and checksum.",
        "dbguard.cli.commands:backup",
        (ENV, DRY),
    ),
    TaskSpec(
        "backups",
        "List backups: time, tier, size, revision, verified or not.",
        "dbguard.cli.commands:backups",
        (ENV, Option("tier", "", "only this tier's backups", blank_is_none=True)),
    ),
    TaskSpec(
        "verify",
        "Check a backup (latest or FILE): checksum and archive listing; --deep restores and compares.",
        "dbguard.backup.verify:verify_task",
        (
            Option("backup", None, "latest, or a backup file", positional=True, audit="spec"),
            ENV,
            Option("deep", False, "also restore into a throwaway database on INT's server and compare"),
        ),
    ),
    TaskSpec(
        "restore",
        "Restore a backup into a scratch database, check it, then swap it in (target backed up first).",
        "dbguard.cli.commands:restore",
        (
            ENV,
            Option("from_", "latest", "latest (of the target tier) or a backup file"),
            CONFIRM,
            Option("allow_prod_data", False, "allow restoring a PROD backup into INT/STG (unsanitized!)"),
            DRY,
        ),
    ),
    TaskSpec(
        "prune-backups",
        "Delete all but the newest N backups per tier (never a tier's only verified one); --yes to delete.",
        "dbguard.cli.commands:prune_backups",
        (
            ENV,
            Option("keep", 0, "newest backups to keep per tier (default BACKUP_KEEP)", blank_is_none=True, minimum=1),
            Option("yes", False, "really delete"),
        ),
    ),
    TaskSpec(
        "refresh-staging",
        "Copy PROD into STG, sanitized inside PROD, verified, swapped in atomically (previous STG kept).",
        "dbguard.refresh.staging:refresh_task",
        (replace(ENV, default="stg"), Option("undo", False, "put the previous STG back"), DRY),
    ),
    TaskSpec(
        "sanitize-check",
        "Does the sanitizing policy cover PROD's live schema? Reads PROD's catalog only.",
        "dbguard.refresh.staging:sanitize_check_task",
        (replace(ENV, default="prod"),),
    ),
    TaskSpec(
        "ownership",
        "Print the ownership matrix: per table, the components that write it and those that only read it.",
        "dbguard.roles.show:ownership_task",
        (ENV, Option("markdown", False, "print it as a Markdown table (for the docs)")),
    ),
    TaskSpec(
        "roles",
        "Make the tier's roles and grants match the ownership matrix; shows the difference, applies only it.",
        "dbguard.roles.apply:roles_task",
        (ENV, CONFIRM, DRY),
    ),
    TaskSpec(
        "ladder",
        "The migration ladder INT -> STG clone -> PROD check; a pass opens db.migrate --env prod.",
        "dbguard.cli.commands:ladder",
        (
            Option("report", "", "also write the results as JSON to this file", blank_is_none=True),
            Option("apply_stg", False, "migrate STG itself after its clone passed"),
        ),
        guarded=False,
    ),
)
