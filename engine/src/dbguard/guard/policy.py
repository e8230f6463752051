"""The operation x tier policy, kept as data: a new operation is one row.

This is DESIGN.md's table. The guard reads it; nothing else decides what a tier allows, which other
databases an operation may open besides its own target (`also`), or what re-stamping a database takes.
A step a task finds it must take beyond its own cell (a PROD downgrade, deleting PROD backups, stamping
a database that holds data, restoring PROD's data into a lower tier) is a row too, checked by
`dbguard.guard.door.authorize_step`. A PROD cell that writes (not `read_only`) opens PROD with the PROD
write credential, except one whose writes go through a component's own login role (`component_login`:
the app's runtime); every other PROD cell with PROD_DATABASE_URL's read-only role
(`dbguard.guard.credentials`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from dbguard.guard.tiers import Tier


class Confirm(Enum):
    NONE = "none"
    TYPED = "typed"  # type the database name, or pass --confirm <dbname> when not interactive
    INTERACTIVE = "interactive"  # type the database name at a terminal; no flag can stand in


@dataclass(frozen=True)
class Grant:
    """Another database an operation opens besides its own target, cleared under its own policy cell.

    The guard puts the grant's tier through every check the cell `POLICY[operation][tier]` asks for
    (configuration, stamp, policy, caller), together with the operation's own target and before
    anything is started, created or written. The operation reaches it as `clearance.db(purpose)`.
    """

    purpose: str
    tier: Tier
    operation: str
    when: str = ""  # the option of the run that asks for it ("" = always), e.g. the ladder's apply_stg
    optional: bool = False  # unset or unreachable: the run goes on and is told why (the ladder skips that rung)


@dataclass(frozen=True)
class Rule:
    allowed: bool
    read_only: bool = False  # every session and tool run on the database is read-only, enforced by the server
    backup_first: bool = False
    confirm: Confirm = Confirm.NONE
    needs_ladder: bool = False
    needs_database: bool = True  # False: nothing is checked or opened (a report may still read, read-only)
    checks_stamp: bool = True  # False only for db.stamp, which applies the 're-stamp' row itself
    scratch: bool = False  # may make scratch databases on the server (and swap one in for a writable target)
    also: tuple[Grant, ...] = ()
    reason: str = ""
    agent_consent: bool = False  # a coding agent needs a human's consent below PROD too (PROD always needs it)
    bootstraps_reader: bool = False  # db.prod-reader: PROD_DATABASE_URL's role may be missing or able to write
    standin_only: bool = False  # only the embedded stand-in PROD of a laptop set-up, never a PROD reached by URL
    component_login: bool = False  # writes only as a component's login role (dbguard.runtime): never PROD's owner

    @property
    def needs_human(self) -> bool:
        return self.confirm is not Confirm.NONE


YES = Rule(True)
READ = Rule(True, read_only=True)
BACKUP_FIRST = Rule(True, backup_first=True)
NO_DATABASE = Rule(True, needs_database=False)
REPORT = Rule(True, read_only=True, needs_database=False)  # reads every tier itself, read-only sessions only
SCRATCH_ONLY = Rule(True, read_only=True, scratch=True)  # reads the database; writes only its own scratch ones


def never(reason: str) -> Rule:
    return Rule(False, reason=reason)


# the purposes of the grants below: what an operation asks the clearance for
SOURCE = "source"  # refresh-staging: PROD, read-only
DEEP_CHECK = "deep-check"  # db.verify --deep: a scratch database on INT's server
CLONE = "clone"  # the ladder: STG, read-only, cloned into a scratch database on its server
PROD_CHECK = "prod-check"  # the ladder: PROD, read-only
APPLY_STG = "apply-stg"  # the ladder with --apply-stg: STG itself, migrated

STAMP_OVER_DATA = Rule(True, confirm=Confirm.INTERACTIVE, checks_stamp=False, agent_consent=True)
PROD_DATA_BELOW = Rule(True, confirm=Confirm.INTERACTIVE, agent_consent=True)

DEEP_VERIFY = (Grant(DEEP_CHECK, Tier.INT, "verify-deep", when="deep"),)
VERIFY = Rule(True, needs_database=False, also=DEEP_VERIFY)

POLICY: dict[str, dict[Tier, Rule]] = {
    # reporting
    "status": {Tier.INT: REPORT, Tier.STG: REPORT, Tier.PROD: REPORT},
    "doctor": {Tier.INT: REPORT, Tier.STG: REPORT, Tier.PROD: REPORT},
    "report": {Tier.INT: REPORT, Tier.STG: REPORT, Tier.PROD: REPORT},  # one tier read by status, doctor, pytest
    "audit": {Tier.INT: REPORT, Tier.STG: REPORT, Tier.PROD: REPORT},  # reads the anchors, read-only
    "up": {Tier.INT: NO_DATABASE, Tier.STG: NO_DATABASE, Tier.PROD: NO_DATABASE},
    "down": {Tier.INT: NO_DATABASE, Tier.STG: NO_DATABASE, Tier.PROD: NO_DATABASE},
    # the stamp itself: the guard reads it for db.stamp but leaves judging it to the 're-stamp' row
    "stamp": {
        Tier.INT: Rule(True, checks_stamp=False),
        Tier.STG: Rule(True, checks_stamp=False),
        Tier.PROD: Rule(True, confirm=Confirm.TYPED, checks_stamp=False),
    },
    # replacing a stamp of another tier (db.stamp --force), by the tier the database carries now: turning a
    # PROD database into anything else is the one unlock that could open PROD to resets
    "re-stamp": {
        Tier.INT: Rule(True, checks_stamp=False),
        Tier.STG: Rule(True, checks_stamp=False),
        Tier.PROD: Rule(True, confirm=Confirm.INTERACTIVE, checks_stamp=False),
    },
    # writing a stamp into a database that already holds rows, on any tier: it may be PROD reached by another
    # name (a copied URL, a hostaddr), and the stamp would open it to resets
    "stamp-over-data": {
        Tier.INT: STAMP_OVER_DATA,
        Tier.STG: STAMP_OVER_DATA,
        Tier.PROD: STAMP_OVER_DATA,
    },
    # PROD's read-only role (PROD_DATABASE_URL), made or repaired with the PROD write credential
    "prod-reader": {
        Tier.INT: never("the read-only role is PROD's"),
        Tier.STG: never("the read-only role is PROD's"),
        Tier.PROD: Rule(True, confirm=Confirm.INTERACTIVE, bootstraps_reader=True),
    },
    # schema and data
    "migrate": {
        Tier.INT: YES,
        Tier.STG: BACKUP_FIRST,
        Tier.PROD: Rule(True, backup_first=True, confirm=Confirm.TYPED, needs_ladder=True),
    },
    # db.migrate --to <older revision>: dropping PROD's tables is never a flag's decision
    "downgrade": {Tier.INT: YES, Tier.STG: YES, Tier.PROD: Rule(True, confirm=Confirm.INTERACTIVE)},
    "seed": {Tier.INT: YES, Tier.STG: YES, Tier.PROD: never("PROD is never seeded: no flag opens it")},
    # seed data into the embedded stand-in PROD (no real data, no credentials), so refresh, backup, restore and
    # the ladder's rehearsal can be tried on one laptop; a PROD reached through PROD_DATABASE_URL stays never seeded
    "fill-standin": {
        Tier.INT: never("db.fill-standin fills the embedded stand-in PROD only (INT: invoke db.seed)"),
        Tier.STG: never("db.fill-standin fills the embedded stand-in PROD only (STG: invoke db.seed --env stg)"),
        Tier.PROD: Rule(True, backup_first=True, confirm=Confirm.TYPED, standin_only=True),
    },
    # an app's SQLite file copied into the tier's schema (db.import-sqlite): written like a seed, but real data
    "import-sqlite": {
        Tier.INT: YES,
        Tier.STG: BACKUP_FIRST,
        Tier.PROD: Rule(True, backup_first=True, confirm=Confirm.TYPED, agent_consent=True),
    },
    # one user's slice (db.export-user): read in one read-only snapshot; from PROD sanitized like a refresh
    "export-user": {Tier.INT: READ, Tier.STG: READ, Tier.PROD: READ},
    # db.export-user --raw on PROD: the user's own rows unsanitized; a human at a terminal only
    "export-raw": {
        Tier.INT: YES,
        Tier.STG: YES,
        Tier.PROD: Rule(True, confirm=Confirm.INTERACTIVE, agent_consent=True),
    },
    # one user's slice loaded into a tier (db.import-user): guarded like a write
    "import-user": {
        Tier.INT: YES,
        Tier.STG: BACKUP_FIRST,
        Tier.PROD: Rule(True, backup_first=True, confirm=Confirm.TYPED, agent_consent=True),
    },
    # a --raw PROD export imported into a lower tier carries a real person's data there, unsanitized
    "import-prod-data": {
        Tier.INT: PROD_DATA_BELOW,
        Tier.STG: PROD_DATA_BELOW,
        Tier.PROD: YES,
    },
    # an export signed on another machine (transfer/signing.py): its manifest's claims cannot be checked
    "import-foreign-file": {
        Tier.INT: PROD_DATA_BELOW,
        Tier.STG: PROD_DATA_BELOW,
        Tier.PROD: PROD_DATA_BELOW,
    },
    "reset": {
        Tier.INT: YES,
        Tier.STG: Rule(True, backup_first=True, scratch=True),  # built beside STG; the old one kept as its undo point
        Tier.PROD: never("PROD is never reset: no flag opens it"),
    },
    "revision": {
        Tier.INT: SCRATCH_ONLY,  # compares the models with a scratch database built from empty at head
        Tier.STG: never("revisions are autogenerated against INT only"),
        Tier.PROD: never("revisions are autogenerated against INT only"),
    },
    # backups
    "backup": {Tier.INT: YES, Tier.STG: YES, Tier.PROD: READ},
    "backups": {Tier.INT: REPORT, Tier.STG: REPORT, Tier.PROD: REPORT},  # lists files, changes nothing
    "verify": {Tier.INT: VERIFY, Tier.STG: VERIFY, Tier.PROD: VERIFY},
    "verify-deep": {
        Tier.INT: SCRATCH_ONLY,
        Tier.STG: never("backups are test-restored on INT's server only"),
        Tier.PROD: never("backups are test-restored on INT's server only"),
    },
    "prune-backups": {Tier.INT: NO_DATABASE, Tier.STG: NO_DATABASE, Tier.PROD: NO_DATABASE},
    # deleting backup files, by the tier they hold: a PROD backup may be all that is left of PROD's data
    "delete-backups": {
        Tier.INT: NO_DATABASE,
        Tier.STG: NO_DATABASE,
        Tier.PROD: Rule(True, needs_database=False, confirm=Confirm.INTERACTIVE),
    },
    "restore": {
        Tier.INT: Rule(True, scratch=True),
        Tier.STG: Rule(True, backup_first=True, scratch=True),
        Tier.PROD: Rule(True, backup_first=True, confirm=Confirm.INTERACTIVE, scratch=True),
    },
    # a PROD backup restored into INT or STG carries real people's data there, unsanitized
    "restore-prod-data": {
        Tier.INT: PROD_DATA_BELOW,
        Tier.STG: PROD_DATA_BELOW,
        Tier.PROD: never("a PROD backup restored into PROD is a plain db.restore"),
    },
    # staging refresh: STG is the target, PROD only ever the read-only source
    "refresh-staging": {
        Tier.INT: never("INT is not part of a staging refresh"),
        Tier.STG: Rule(True, backup_first=True, scratch=True, also=(Grant(SOURCE, Tier.PROD, "refresh-source"),)),
        Tier.PROD: never("PROD is only ever the read-only source of a refresh, never its target"),
    },
    "refresh-source": {
        Tier.INT: never("only PROD is a refresh source"),
        Tier.STG: never("only PROD is a refresh source"),
        Tier.PROD: READ,
    },
    "sanitize-check": {
        Tier.INT: never("sanitize-check reads PROD's live schema"),
        Tier.STG: never("sanitize-check reads PROD's live schema"),
        Tier.PROD: READ,
    },
    # the migration ladder runs from INT (scratch databases only) and reaches STG and PROD through grants
    "ladder": {
        Tier.INT: Rule(
            True,
            read_only=True,
            scratch=True,
            also=(
                Grant(CLONE, Tier.STG, "ladder-clone", optional=True),
                Grant(APPLY_STG, Tier.STG, "migrate", when="apply_stg"),
                Grant(PROD_CHECK, Tier.PROD, "ladder-check", optional=True),
            ),
        ),
        Tier.STG: never("the ladder runs from INT"),
        Tier.PROD: never("the ladder runs from INT"),
    },
    "ladder-clone": {
        Tier.INT: never("the ladder clones STG only"),
        Tier.STG: SCRATCH_ONLY,
        Tier.PROD: never("the ladder never copies PROD's data"),
    },
    "ladder-check": {
        Tier.INT: never("the ladder's PROD check reads PROD only"),
        Tier.STG: never("the ladder's PROD check reads PROD only"),
        Tier.PROD: READ,
    },
    # the ownership matrix: db.ownership prints it; db.roles makes each tier's roles and grants match it
    # (STG: the role and grant state saved first; PROD: typed name, saved first, through the write credential)
    "ownership": {Tier.INT: NO_DATABASE, Tier.STG: NO_DATABASE, Tier.PROD: NO_DATABASE},
    "roles": {Tier.INT: YES, Tier.STG: BACKUP_FIRST, Tier.PROD: Rule(True, backup_first=True, confirm=Confirm.TYPED)},
    # the app's own runtime connection (dbguard.runtime): PROD needs the name typed, or allowed for the process
    # and connects as the component's login role, so PROD is checked through the read-only role, never the owner's
    "app-connect": {Tier.INT: YES, Tier.STG: YES, Tier.PROD: Rule(True, confirm=Confirm.TYPED, component_login=True)},
    # the pytest plugin: a template and a clone per test, on INT's server
    "test-databases": {
        Tier.INT: SCRATCH_ONLY,
        Tier.STG: never("tests make their databases on INT's server only"),
        Tier.PROD: never("tests make their databases on INT's server only"),
    },
}


def rule_for(operation: str, tier: Tier) -> Rule:
    return POLICY[operation][tier]
